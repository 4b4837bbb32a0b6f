"""Hadoop FileSystem access, in one module: listing inputs, reading a first line, moving and
removing staged files, and job outputs (models, plots, reports) anywhere Hadoop can write:
local paths, s3:// (EMRFS on EMR, the s3a connector elsewhere), s3a://, hdfs://.

The files themselves are produced by libraries that only write local files (xgboost,
matplotlib, json), so a remote destination is staged in a local temporary directory and
copied with Hadoop's FileSystem API when the step succeeds; a failed step uploads nothing.
Reading (a model directory) copies the files down to a temporary directory first.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pyspark.sql import SparkSession

from mljobs.errors import InputError, MljobsError, error_text
from mljobs.uris import is_uri, join, local_of, normalize_path  # noqa: F401 (is_uri, join, local_of: re-exported)


def hadoop_path(spark: SparkSession, uri: str):
    """(jvm, FileSystem, Path) for any location Hadoop can open: the one place we reach
    Hadoop's FileSystem API (s3:// is mapped to s3a:// off EMR)."""
    from mljobs.session import env_of

    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(normalize_path(str(uri), env_of(spark)))
    try:
        fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    except Exception as exc:  # unknown scheme, missing connector jars
        why = error_text(exc)
        raise InputError(f"cannot open {uri}: {why}{_S3A_HINT if 'scheme' in why else ''}") from None
    return jvm, fs, path


_S3A_HINT = ("; off EMR, s3:// and s3a:// need the hadoop-aws jars: ./spark-submit.sh adds them when an argument "
             "or --conf names S3, a notebook session needs spark.jars=$(python -m mljobs.jars fetch s3a)")


def _session(spark: SparkSession | None) -> SparkSession:
    spark = spark or SparkSession.getActiveSession()
    if spark is None:
        raise MljobsError("reading or writing a remote location needs an active SparkSession")
    return spark


def qualified(spark: SparkSession, path: str) -> str:
    """``path`` as Hadoop names what it lists under it (``file:/a/b``, ``s3a://bucket/p``), no
    trailing slash: the prefix of the ``path`` column of Spark's file sources."""
    _, fs, hpath = hadoop_path(spark, path)
    return str(fs.makeQualified(hpath).toString()).rstrip("/")


def exists(spark: SparkSession, path: str) -> bool:
    _, fs, hpath = hadoop_path(spark, path)
    return bool(fs.exists(hpath))


def remove(spark: SparkSession, path: str) -> None:
    """Delete a file or a directory tree, if it exists."""
    _, fs, hpath = hadoop_path(spark, path)
    if fs.exists(hpath):
        fs.delete(hpath, True)


def move(spark: SparkSession, src: str, dst: str) -> None:
    """Rename src to dst (same file system), creating dst's parent; an error when it fails."""
    jvm, fs, s = hadoop_path(spark, src)
    d = jvm.org.apache.hadoop.fs.Path(dst)
    fs.mkdirs(d.getParent())
    if not fs.rename(s, d):
        raise RuntimeError(f"could not move {src} to {dst}")


def hidden(name: str) -> bool:
    """Names Spark's listings skip (_SUCCESS, .crc, ...)."""
    return name.startswith(("_", "."))


def list_files(spark: SparkSession, path: str, glob: bool = False):
    """(top status, file status) for every visible file under path (a file, a directory walked
    recursively, or a glob); names starting with _ or . are skipped. InputError when nothing
    is there."""
    _, fs, hpath = hadoop_path(spark, path)
    if glob:
        # globStatus names local files file:/x, the rest of Hadoop (and input_file_name) file:///x
        tops = [fs.getFileStatus(st.getPath()) for st in fs.globStatus(hpath) or []]
        if not tops:
            raise InputError(f"input glob matches no files: {path}")
    elif not fs.exists(hpath):
        raise InputError(f"input not found: {path}")
    else:
        tops = [fs.getFileStatus(hpath)]
    for top in tops:
        for st in _walk(fs, top):
            if not hidden(st.getPath().getName()):
                yield top, st


def _walk(fs, status):
    if not status.isDirectory():
        yield status
        return
    for child in fs.listStatus(status.getPath()):
        if not hidden(child.getPath().getName()):
            yield from _walk(fs, child)


def read_first_line(spark: SparkSession, path: str) -> str | None:
    """The first line of a (possibly compressed) text file, or None when it is empty."""
    jvm, fs, hpath = hadoop_path(spark, path)
    stream = fs.open(hpath)
    try:
        codec = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(
            spark.sparkContext._jsc.hadoopConfiguration()).getCodec(hpath)
        if codec is not None:
            stream = codec.createInputStream(stream)
        line = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8")).readLine()
    except Exception as exc:
        raise InputError(f"cannot read {path}: {error_text(exc)}") from None
    finally:
        stream.close()
    if line is None:
        return None
    return line.lstrip("\ufeff").rstrip("\r")


def read_text(spark: SparkSession | None, path: str | os.PathLike) -> str | None:
    """A small UTF-8 text file's content (local or a URI), None when it does not exist."""
    if not is_uri(path):
        local = local_of(path)
        return local.read_text() if local.is_file() else None
    jvm, fs, hpath = hadoop_path(_session(spark), str(path))
    if not fs.exists(hpath):
        return None
    stream = fs.open(hpath)
    try:
        return jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    except Exception as exc:
        raise InputError(f"cannot read {path}: {error_text(exc)}") from None
    finally:
        stream.close()


def check_location(spark: SparkSession | None, dest: str | os.PathLike | None, what: str) -> None:
    """Before any work: a remote destination's file system opens and answers (bucket exists,
    credentials work), so a long job does not fail at its last step."""
    if not dest or not is_uri(dest):
        return
    spark = _session(spark)
    jvm, fs, path = hadoop_path(spark, str(dest))
    try:
        fs.exists(path)
    except Exception as exc:
        raise InputError(f"{what} {dest} is not reachable: {error_text(exc)}") from None


def upload_tree(spark: SparkSession | None, local_dir: Path, dest: str, last: tuple[str, ...] = ()) -> list[str]:
    """Copy every file under local_dir to dest (same relative names, overwriting); the names in
    ``last`` go after all others (a marker file readers check, like metadata.json)."""
    spark = _session(spark)
    jvm, fs, root = hadoop_path(spark, dest)
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
    jvm, fs, root = hadoop_path(spark, src)
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


def model_and_plot_dirs(spark: SparkSession, model_dir: str | None, plots_dir: str | None, name: str,
                        kind: str) -> tuple[str, str]:
    """A training job's model and plot locations: the flags' values, else
    ``<results root>/models/<name>`` and ``<results root>/plots/<kind>/<name>``; checked reachable."""
    from mljobs.session import results_root

    model_dir = str(model_dir or join(results_root(spark), "models", name))
    plots_dir = str(plots_dir or join(results_root(spark), "plots", kind, name))
    check_location(spark, model_dir, "model directory")
    check_location(spark, plots_dir, "plot directory")
    return model_dir, plots_dir
