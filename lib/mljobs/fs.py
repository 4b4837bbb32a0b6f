"""Job outputs (models, plots, reports) anywhere Hadoop can write: local paths, s3:// (EMRFS
on EMR, the s3a connector elsewhere), s3a://, hdfs://.

The files themselves are produced by libraries that only write local files (xgboost,
matplotlib, json), so a remote destination is staged in a local temporary directory and
copied with Hadoop's FileSystem API when the step succeeds; a failed step uploads nothing.
Reading (a model directory) copies the files down to a temporary directory first.
"""
from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pyspark.sql import SparkSession

from mljobs.errors import InputError, MljobsError

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def is_uri(path: str | os.PathLike | None) -> bool:
    """True for a remote location (s3://, s3a://, hdfs://, ...); file:// and plain paths are local."""
    m = _SCHEME.match(str(path or ""))
    return bool(m) and m.group(1).lower() != "file"


def local_of(path: str | os.PathLike) -> Path:
    """A local path, with a file:// prefix removed."""
    s = str(path)
    return Path(s[len("file://"):] if s.startswith("file://") else s)


def join(base: str | os.PathLike, *parts: str) -> str | Path:
    """base/parts..., keeping a URI a URI (Path('s3://b') would collapse the //)."""
    if is_uri(base):
        return "/".join([str(base).rstrip("/"), *[p.strip("/") for p in parts]])
    return local_of(base).joinpath(*parts)


def _session(spark: SparkSession | None) -> SparkSession:
    spark = spark or SparkSession.getActiveSession()
    if spark is None:
        raise MljobsError("reading or writing a remote location needs an active SparkSession")
    return spark


def _hadoop_path(spark: SparkSession, uri: str):
    from mljobs.io import normalize_path
    from mljobs.session import current_env

    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(normalize_path(str(uri), current_env(spark.sparkContext.getConf())))
    try:
        fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    except Exception as exc:  # unknown scheme, missing connector jars
        why = java_message(exc)
        raise InputError(f"cannot open {uri}: {why}{_S3A_HINT if 'scheme' in why else ''}") from None
    return jvm, fs, path


_S3A_HINT = ("; off EMR, s3:// and s3a:// need the hadoop-aws jars: ./spark-submit.sh adds them when an argument "
             "or --conf names S3, a notebook session needs spark.jars=$(python -m mljobs.jars fetch s3a)")


def java_message(exc: BaseException) -> str:
    """The Java exception's own message for a Py4J error (its first line otherwise)."""
    java = getattr(exc, "java_exception", None)
    text = java.toString() if java is not None else str(exc)
    first = text.splitlines()[0] if text else type(exc).__name__
    return first if len(first) <= 400 else first[:400] + " ..."


def check_location(spark: SparkSession | None, dest: str | os.PathLike | None, what: str) -> None:
    """Before any work: a remote destination's file system opens and answers (bucket exists,
    credentials work), so a long job does not fail at its last step."""
    if not dest or not is_uri(dest):
        return
    spark = _session(spark)
    jvm, fs, path = _hadoop_path(spark, str(dest))
    try:
        fs.exists(path)
    except Exception as exc:
        raise InputError(f"{what} {dest} is not reachable: {java_message(exc)}") from None


def upload_tree(spark: SparkSession | None, local_dir: Path, dest: str, last: tuple[str, ...] = ()) -> list[str]:
    """Copy every file under local_dir to dest (same relative names, overwriting); the names in
    ``last`` go after all others (a marker file readers check, like metadata.json)."""
    spark = _session(spark)
    jvm, fs, root = _hadoop_path(spark, dest)
    files = sorted(p for p in Path(local_dir).rglob("*") if p.is_file())
    files.sort(key=lambda p: p.relative_to(local_dir).as_posix() in last)
    written = []
    for p in files:
        rel = p.relative_to(local_dir).as_posix()
        target = jvm.org.apache.hadoop.fs.Path(root, rel)
        fs.copyFromLocalFile(False, True, jvm.org.apache.hadoop.fs.Path(p.resolve().as_uri()), target)
        written.append(str(join(dest, rel)))
    return written


def download_tree(spark: SparkSession | None, src: str, local_dir: Path) -> Path:
    """Copy the files under src into local_dir; InputError when src does not exist."""
    spark = _session(spark)
    jvm, fs, root = _hadoop_path(spark, src)
    if not fs.exists(root):
        raise InputError(f"not found: {src}")
    base = fs.getFileStatus(root).getPath().toUri().getPath().rstrip("/")
    it = fs.listFiles(root, True)
    while it.hasNext():
        st = it.next()
        rel = st.getPath().toUri().getPath()[len(base):].lstrip("/")
        target = Path(local_dir) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        fs.copyToLocalFile(False, st.getPath(), jvm.org.apache.hadoop.fs.Path(target.resolve().as_uri()), True)
    return Path(local_dir)


def temp_dir(prefix: str) -> Path:
    """A local temporary directory removed when the process exits."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, d, True)
    return d


class Output:
    """Where a step writes files: ``.local`` to write into, ``.final(p)`` the published name."""

    def __init__(self, dest: str | os.PathLike, local: Path):
        self.dest = str(dest)
        self.local = local

    def final(self, path: str | os.PathLike) -> str:
        if not is_uri(self.dest):
            return str(path)
        return str(join(self.dest, Path(path).resolve().relative_to(self.local.resolve()).as_posix()))


@contextmanager
def output_dir(spark: SparkSession | None, dest: str | os.PathLike, last: tuple[str, ...] = ()) -> Iterator[Output]:
    """A directory to write into. Local: dest itself (created). Remote: a local stage,
    uploaded to dest when the block succeeds and removed either way."""
    if not is_uri(dest):
        local = local_of(dest)
        local.mkdir(parents=True, exist_ok=True)
        yield Output(local, local)
        return
    stage = Path(tempfile.mkdtemp(prefix="mljobs-out-"))
    try:
        yield Output(dest, stage)
        upload_tree(spark, stage, str(dest), last)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
