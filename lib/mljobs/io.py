"""Input discovery (through mljobs.fs, Hadoop's FileSystem API), so local paths, globs, directories,
s3:// (EMRFS) and s3a:// behave the same."""
from __future__ import annotations

import re
from dataclasses import dataclass

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from mljobs import fs
from mljobs.errors import InputError, MljobsError
from mljobs.uris import normalize_path

FORMATS = ("csv", "parquet")
_GLOB_CHARS = re.compile(r"[*?\[{]")
_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".txt", ".txt.gz", ".gz", ".bz2")


@dataclass(frozen=True)
class InputFile:
    path: str  # fully qualified (file:/..., s3a://...), as Spark reads it
    size: int
    format: str
    uri: str  # URI-encoded, as source_file() reports it for rows of this file


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


def list_input_files(spark: SparkSession, paths: list[str], fmt: str = "auto", env: str = "local") -> list[InputFile]:
    """Expand files, directories (recursively) and globs; fail clearly on anything missing."""
    if fmt not in ("auto",) + FORMATS:
        raise MljobsError(f"unknown format {fmt!r}; valid: auto, {', '.join(FORMATS)}")
    if not paths:
        raise InputError("no input given: pass --input PATH [PATH ...]")
    found: dict[str, InputFile] = {}
    for raw in paths:
        path = normalize_path(raw, env)
        for top, st in fs.list_files(spark, path, glob=bool(_GLOB_CHARS.search(path))):
            full = st.getPath().toString()
            file_fmt = format_of(full) if fmt == "auto" else fmt
            if file_fmt is None:
                if top.isDirectory():
                    continue  # stray files in a data directory (README, _SUCCESS ...)
                raise InputError(f"cannot tell the format of {full}; pass --format csv|parquet")
            found[full] = InputFile(full, st.getLen(), file_fmt, st.getPath().toUri().toString())
    if not found:
        raise InputError(f"no input files found under: {' '.join(paths)}")
    if len({f.format for f in found.values()}) > 1:
        raise InputError("inputs mix CSV and Parquet files; ingest them in separate runs or pass --format")
    return sorted(found.values(), key=lambda f: f.path)
