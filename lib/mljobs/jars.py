"""Jars from Maven Central, cached outside git (~/.cache/mljobs/jars or $MLJOBS_JAR_CACHE)
and checked against Maven's SHA-1 before use.

    python -m mljobs.jars fetch rapids   # prints the jar's path
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import urllib.request
from pathlib import Path

MAVEN = os.environ.get("MLJOBS_MAVEN_URL", "https://repo1.maven.org/maven2")
# The newest rapids-4-spark on Maven Central here; its shims cover Spark 3.2.0-3.5.5.
RAPIDS = ("com.nvidia", "rapids-4-spark_2.12", "25.04.0")
ARTIFACTS = {"rapids": RAPIDS}


def cache_dir() -> Path:
    return Path(os.environ.get("MLJOBS_JAR_CACHE", Path.home() / ".cache" / "mljobs" / "jars"))


def jar_path(name: str) -> Path:
    group, artifact, version = ARTIFACTS[name]
    return cache_dir() / f"{artifact}-{version}.jar"


def cached(name: str) -> Path | None:
    """The verified jar if it is already in the cache, else None (no download)."""
    p = jar_path(name)
    return p if p.exists() and p.with_suffix(".jar.ok").exists() else None


def fetch(name: str) -> Path:
    group, artifact, version = ARTIFACTS[name]
    target = jar_path(name)
    if cached(name):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    url = f"{MAVEN}/{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}.jar"
    print(f"[jars] downloading {url}", file=sys.stderr, flush=True)
    with urllib.request.urlopen(url + ".sha1", timeout=60) as r:
        want = r.read().decode().split()[0].strip()
    part = target.with_suffix(".jar.part")
    sha = hashlib.sha1()
    with urllib.request.urlopen(url, timeout=600) as r, open(part, "wb") as out:
        while chunk := r.read(1 << 20):
            sha.update(chunk)
            out.write(chunk)
    if sha.hexdigest() != want:
        part.unlink()
        raise RuntimeError(f"checksum mismatch for {url}: got {sha.hexdigest()}, Maven says {want}")
    part.replace(target)
    target.with_suffix(".jar.ok").write_text(want + "\n")
    return target


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mljobs.jars")
    p.add_argument("action", choices=["fetch", "path"])
    p.add_argument("name", choices=sorted(ARTIFACTS))
    a = p.parse_args(argv)
    path = fetch(a.name) if a.action == "fetch" else jar_path(a.name)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
