"""Jars from Maven Central, cached outside git (~/.cache/mljobs/jars or $MLJOBS_JAR_CACHE)
and checked against Maven's SHA-1 before use.

    python -m mljobs.jars fetch rapids   # prints the jar's path
    python -m mljobs.jars fetch s3a      # hadoop-aws + the AWS SDK bundle it was built with,
                                         # for the Hadoop inside the installed PySpark (comma-separated)

EMR has EMRFS (s3://) and its own connectors; these are for s3a:// everywhere else.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import urllib.request
from pathlib import Path

from mljobs.errors import MljobsError

MAVEN = os.environ.get("MLJOBS_MAVEN_URL", "https://repo1.maven.org/maven2")
# The newest rapids-4-spark on Maven Central here; its shims cover Spark 3.2.0-3.5.5.
RAPIDS = ("com.nvidia", "rapids-4-spark_2.12", "25.04.0")
# hadoop-aws must be the exact version of the Hadoop client Spark bundles, with the AWS SDK
# bundle that Hadoop release was built against (hadoop-project's aws-java-sdk*.version).
AWS_SDK_FOR_HADOOP = {
    "3.3.4": ("com.amazonaws", "aws-java-sdk-bundle", "1.12.262"),  # PySpark 3.5.x
    "3.4.1": ("software.amazon.awssdk", "bundle", "2.24.6"),  # PySpark 4.0.x
}
# Derby's network server and client, for the local shared metastore (mljobs.metastore): the
# version of the derby jar inside the installed PySpark, so both open the same database.
DERBY_PARTS = ("derbynet", "derbyclient", "derbytools")
NAMES = ("rapids", "s3a", "derby")


def bundled_hadoop_version() -> str:
    """The Hadoop client version inside the installed PySpark (hadoop-client-api-X.jar)."""
    found = sorted(spark_jars_dir().glob("hadoop-client-api-*.jar"))
    if not found:
        raise MljobsError("cannot tell the Hadoop version: no hadoop-client-api jar in the installed PySpark")
    return found[0].name[len("hadoop-client-api-"):-len(".jar")]


def spark_jars_dir() -> Path:
    """The jars/ of the running Spark ($SPARK_HOME under spark-submit, where pyspark is a zip),
    else of the installed PySpark."""
    home = os.environ.get("SPARK_HOME")
    if home and (Path(home) / "jars").is_dir():
        return Path(home) / "jars"
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


def bundled_derby_version() -> str:
    """The Derby version inside the installed PySpark (derby-X.jar)."""
    found = sorted(spark_jars_dir().glob("derby-*.jar"))
    if not found:
        raise MljobsError("cannot tell the Derby version: no derby jar in the installed PySpark")
    return found[0].name[len("derby-"):-len(".jar")]


def coordinates(name: str) -> list[tuple[str, str, str]]:
    if name == "rapids":
        return [RAPIDS]
    if name == "s3a":
        hadoop = bundled_hadoop_version()
        if hadoop not in AWS_SDK_FOR_HADOOP:
            raise MljobsError(f"no known AWS SDK bundle for Hadoop {hadoop}; known: {', '.join(AWS_SDK_FOR_HADOOP)}")
        return [("org.apache.hadoop", "hadoop-aws", hadoop), AWS_SDK_FOR_HADOOP[hadoop]]
    if name == "derby":
        return [("org.apache.derby", part, bundled_derby_version()) for part in DERBY_PARTS]
    raise MljobsError(f"unknown jar set {name!r}; valid: {', '.join(NAMES)}")


def cache_dir() -> Path:
    return Path(os.environ.get("MLJOBS_JAR_CACHE", Path.home() / ".cache" / "mljobs" / "jars"))


def _jar_file(coord: tuple[str, str, str]) -> Path:
    group, artifact, version = coord
    return cache_dir() / f"{artifact}-{version}.jar"


def jar_paths(name: str) -> list[Path]:
    return [_jar_file(c) for c in coordinates(name)]


def jar_path(name: str) -> Path:
    return jar_paths(name)[0]


def _verified(p: Path) -> bool:
    return p.exists() and p.with_suffix(".jar.ok").exists()


def cached(name: str) -> Path | None:
    """The (first) verified jar if the whole set is already in the cache, else None (no download)."""
    paths = jar_paths(name)
    return paths[0] if all(_verified(p) for p in paths) else None


def fetch(name: str) -> Path:
    """Download (once) every jar of the set; the first one's path."""
    return fetch_all(name)[0]


def fetch_all(name: str) -> list[Path]:
    return [_fetch_one(c) for c in coordinates(name)]


def _fetch_one(coord: tuple[str, str, str]) -> Path:
    group, artifact, version = coord
    target = _jar_file(coord)
    if _verified(target):
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
    p.add_argument("name", choices=NAMES)
    a = p.parse_args(argv)
    try:
        paths = fetch_all(a.name) if a.action == "fetch" else jar_paths(a.name)
    except MljobsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(",".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
