"""Real, human-rated review snippets for the text jobs, from the vaderSentiment 3.3.2 source
archive on PyPI (MIT licence; Hutto & Gilbert, ICWSM 2014). No download at run time: the
archive is fetched once, during set-up, through pip from the package registry
(``scripts/bootstrap.sh`` runs ``fetch``), checked against its pinned sha256 and cached
outside git (``~/.cache/mljobs/datasets`` or ``$MLJOBS_DATASET_CACHE``). The files are read
straight out of the tar.gz (it nests ``additional_resources/hutto_ICWSM_2014.tar.gz``).

Command line::

    python -m mljobs.datasets.reviews fetch                 # prints the cached archive's path
    python -m mljobs.datasets.reviews export DIR [--corpus amazon|movies|all] [--force]

``export`` writes ``DIR/<corpus>_reviews.csv`` (RFC 4180: quoted where needed, quotes doubled,
UTF-8) with columns ``id, text, rating, label`` and prints one JSON line. ``rating`` is the
snippet's mean rating by 10-20 people on a -4 .. +4 scale; ``label`` is ``positive`` when
the rating is > 0, ``negative`` when < 0 and empty (no label) when it is exactly 0: a
snippet its raters found neutral on average belongs to neither class, and a job reading the
table excludes it as an unlabelled row.

amazon: 3,708 snippets of Amazon product reviews, 2,128 positive, 1,482 negative, 98 at 0.
movies: 10,605 snippets of movie reviews (rottentomatoes), 5,242 positive, 5,326 negative, 37 at 0.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from mljobs.errors import MljobsError

PACKAGE, VERSION = "vaderSentiment", "3.3.2"
SDIST = f"{PACKAGE}-{VERSION}.tar.gz"
SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
_INNER = f"{PACKAGE}-{VERSION}/additional_resources/hutto_ICWSM_2014.tar.gz"
FILES = {"amazon": "hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt",
         "movies": "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"}
COUNTS = {"amazon": {"rows": 3708, "positive": 2128, "negative": 1482, "unlabelled": 98},
          "movies": {"rows": 10605, "positive": 5242, "negative": 5326, "unlabelled": 37}}
COLUMNS = ("id", "text", "rating", "label")


def cache_dir() -> Path:
    return Path(os.environ.get("MLJOBS_DATASET_CACHE", Path.home() / ".cache" / "mljobs" / "datasets"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch() -> Path:
    """The cached sdist (fetched through pip from the package registry when absent), sha256-checked."""
    target = cache_dir() / SDIST
    if target.exists() and _sha256(target) == SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
               "-q", "-d", tmp, f"{PACKAGE}=={VERSION}"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / SDIST
        if done.returncode != 0 or not got.exists():
            raise MljobsError(f"pip download {PACKAGE}=={VERSION} failed: {(done.stderr or done.stdout).strip()[-300:]}")
        if _sha256(got) != SHA256:
            raise MljobsError(f"{SDIST}: sha256 {_sha256(got)} is not the pinned {SHA256}")
        os.replace(got, target)
    return target


def archive() -> Path:
    """The cached sdist, without fetching: set-up (scripts/bootstrap.sh) fetches it."""
    target = cache_dir() / SDIST
    if not target.exists():
        raise MljobsError(f"{target} is missing: run `python -m mljobs.datasets.reviews fetch` "
                          "(scripts/bootstrap.sh does) to get it from PyPI")
    if _sha256(target) != SHA256:
        raise MljobsError(f"{target}: sha256 is not the pinned {SHA256}; delete it and fetch again")
    return target


def label_of(rating: float) -> str | None:
    """positive (> 0), negative (< 0), None at exactly 0 (neutral: no class)."""
    return "positive" if rating > 0 else "negative" if rating < 0 else None


def load(corpus: str = "amazon", path: Path | None = None) -> list[dict]:
    """The corpus's rows, in file order: {id, text, rating, label}."""
    if corpus not in FILES:
        raise MljobsError(f"unknown corpus {corpus!r}; valid: {', '.join(FILES)}")
    with tarfile.open(path or archive()) as outer:
        inner = outer.extractfile(_INNER).read()
    with tarfile.open(fileobj=io.BytesIO(inner)) as tf:
        text = tf.extractfile(FILES[corpus]).read().decode("utf-8")
    rows = []
    for line in text.split("\r\n"):
        if not line:
            continue
        rid, rating, snippet = line.split("\t")
        r = float(rating)
        rows.append({"id": rid, "text": snippet, "rating": r, "label": label_of(r)})
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    """RFC 4180 CSV (quotes doubled, fields with a delimiter, quote or newline quoted), UTF-8."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([r["id"], r["text"], repr(r["rating"]), r["label"] or ""])


def export(out_dir: Path, corpus: str = "amazon", force: bool = False) -> dict:
    t0 = time.time()
    out_dir = Path(out_dir)
    names = list(FILES) if corpus == "all" else [corpus]
    targets = [out_dir / f"{c}_reviews.csv" for c in names]
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise MljobsError(f"{out_dir} exists and is not empty (use --force)")
    if force and out_dir.exists():
        for p in out_dir.glob("*_reviews.csv"):
            p.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for c, target in zip(names, targets):
        rows = load(c)
        write_csv(rows, target)
        counts[c] = {"rows": len(rows), "positive": sum(r["label"] == "positive" for r in rows),
                     "negative": sum(r["label"] == "negative" for r in rows),
                     "unlabelled": sum(r["label"] is None for r in rows)}
    return {"files": [str(t) for t in targets], "counts": counts, "source": f"{SDIST} sha256:{SHA256}",
            "seconds": round(time.time() - t0, 3)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mljobs.datasets.reviews", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch", help="get the vaderSentiment sdist through pip (set-up), check its sha256, cache it")
    e = sub.add_parser("export", help="write DIR/<corpus>_reviews.csv (id, text, rating, label)")
    e.add_argument("dir", type=Path)
    e.add_argument("--corpus", choices=[*FILES, "all"], default="amazon")
    e.add_argument("--force", action="store_true", help="replace *_reviews.csv in a non-empty DIR")
    args = p.parse_args(argv)
    try:
        if args.cmd == "fetch":
            print(fetch())
        else:
            print(json.dumps(export(args.dir, args.corpus, args.force)))
    except MljobsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
