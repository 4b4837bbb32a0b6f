"""Input discovery through Hadoop's FileSystem API, so local paths, globs, directories,
s3:// (EMRFS) and s3a:// behave the same."""
from __future__ import annotations

import re
from dataclasses import dataclass

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from mljobs.errors import InputError, MljobsError

FORMATS = ("csv", "parquet")
_GLOB_CHARS = re.compile(r"[*?\[{]")
_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".txt", ".txt.gz", ".gz", ".bz2")


@dataclass(frozen=True)
class InputFile:
    path: str  # fully qualified (file:/..., s3a://...), as Spark reads it
    size: int
    format: str
    uri: str  # URI-encoded, as source_file() reports it for rows of this file


def normalize_path(path: str, env: str) -> str:
    """s3:// is EMRFS on EMR; elsewhere Hadoop only has the s3a connector."""
    if env == "local" and path.startswith("s3://"):
        return "s3a://" + path[len("s3://"):]
    return path


def format_of(path: str) -> str | None:
    low = path.lower()
    if low.endswith(".parquet") or low.endswith(".parq"):
        return "parquet"
    if low.endswith(_CSV_SUFFIXES):
        return "csv"
    return None


def source_file() -> Column:
    """The file a row came from; equal to InputFile.uri (Hadoop's Path.toUri())."""
    return F.input_file_name()


def _hidden(name: str) -> bool:
    return name.startswith(("_", "."))


def list_input_files(spark: SparkSession, paths: list[str], fmt: str = "auto", env: str = "local") -> list[InputFile]:
    """Expand files, directories (recursively) and globs; fail clearly on anything missing."""
    if fmt not in ("auto",) + FORMATS:
        raise MljobsError(f"unknown format {fmt!r}; valid: auto, {', '.join(FORMATS)}")
    if not paths:
        raise InputError("no input given: pass --input PATH [PATH ...]")
    jvm = spark.sparkContext._jvm
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    found: dict[str, InputFile] = {}
    for raw in paths:
        path = normalize_path(raw, env)
        hpath = jvm.org.apache.hadoop.fs.Path(path)
        try:
            fs = hpath.getFileSystem(hconf)
        except Exception as exc:  # unknown scheme, missing connector
            raise InputError(f"cannot open {raw}: {str(exc).splitlines()[0]}") from None
        if _GLOB_CHARS.search(path):
            statuses = fs.globStatus(hpath) or []
            if not statuses:
                raise InputError(f"input glob matches no files: {raw}")
        else:
            if not fs.exists(hpath):
                raise InputError(f"input not found: {raw}")
            statuses = [fs.getFileStatus(hpath)]
        for status in statuses:
            for st in _walk(fs, status):
                name = st.getPath().getName()
                if _hidden(name):
                    continue
                full = st.getPath().toString()
                file_fmt = format_of(full) if fmt == "auto" else fmt
                if file_fmt is None:
                    if status.isDirectory():
                        continue  # stray files in a data directory (README, _SUCCESS ...)
                    raise InputError(f"cannot tell the format of {full}; pass --format csv|parquet")
                uri = st.getPath().toUri().toString()
                found[full] = InputFile(full, st.getLen(), file_fmt, uri)
    if not found:
        raise InputError(f"no input files found under: {' '.join(paths)}")
    formats = {f.format for f in found.values()}
    if len(formats) > 1:
        raise InputError("inputs mix CSV and Parquet files; ingest them in separate runs or pass --format")
    return sorted(found.values(), key=lambda f: f.path)


def _walk(fs, status):
    if not status.isDirectory():
        yield status
        return
    for child in fs.listStatus(status.getPath()):
        if _hidden(child.getPath().getName()):
            continue
        yield from _walk(fs, child)


def read_first_line(spark: SparkSession, path: str) -> str | None:
    """The first line of a (possibly compressed) text file, or None when it is empty."""
    jvm = spark.sparkContext._jvm
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(hconf)
    stream = fs.open(hpath)
    try:
        codec = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(hconf).getCodec(hpath)
        if codec is not None:
            stream = codec.createInputStream(stream)
        reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8"))
        line = reader.readLine()
    except Exception as exc:
        raise InputError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    finally:
        stream.close()
    if line is None:
        return None
    return line.lstrip("\ufeff").rstrip("\r")
