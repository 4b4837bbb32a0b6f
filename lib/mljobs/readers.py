"""Reading CSV/Parquet with an explicit schema; every malformed row kept with a reason.

CSV files are grouped by their header line, so files with the same columns in another
order (or with extra columns) are each read with the right schema. Spark's PERMISSIVE
parser keeps the raw line of every row it cannot parse (bad value, too few or too many
fields, broken quoting) in ``_corrupt_record``; we classify that line with plain SQL
string functions, which the RAPIDS Accelerator can run (no Python UDFs).
"""
from __future__ import annotations

import csv
import os
import re
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, StringType, StructField, StructType

from mljobs.config import parse_table_name
from mljobs.errors import InputError
from mljobs.fs import read_first_line
from mljobs.io import InputFile, format_of, list_input_files
from mljobs.session import env_of
from mljobs.errors import error_text

CORRUPT = "_corrupt_record"
SOURCE = "_source_file"
REASON = "_malformed"
RAW = "_raw"
_NAME_OK = re.compile(r"[^A-Za-z0-9_]")


def parse_header(line: str, delimiter: str = ",") -> list[str]:
    """Column names of a header line; blank names (BTS ends lines with a comma) become _cN."""
    names = next(csv.reader([line], delimiter=delimiter))
    out, seen = [], set()
    for i, name in enumerate(names):
        name = name.strip() or f"_c{i}"
        if name in seen:
            raise InputError(f"duplicate column {name!r} in header: {line[:200]}")
        seen.add(name)
        out.append(name)
    return out


def sanitize_name(name: str) -> str:
    """A Hive-safe column name: letters, digits, underscores."""
    clean = _NAME_OK.sub("_", name.strip())
    return clean if clean and not clean[0].isdigit() else f"c_{clean}"


def csv_headers(spark: SparkSession, files: list[InputFile], delimiter: str = ",") -> dict[tuple[str, ...], list[str]]:
    """Group CSV files by header; empty files are an error naming them."""
    groups: dict[tuple[str, ...], list[str]] = {}
    empty = []
    for f in files:
        line = read_first_line(spark, f.path)
        if line is None or not line.strip():
            empty.append(f.path)
            continue
        groups.setdefault(tuple(parse_header(line, delimiter)), []).append(f.path)
    if empty:
        raise InputError(f"empty input file(s), not even a header: {', '.join(empty[:10])}")
    return groups


def safe_cast(spark: SparkSession, name: str, type_name: str) -> Column:
    """Cast a column that yields NULL for bad values: plain cast (the RAPIDS Accelerator
    runs it; try_cast it does not) unless the session has ANSI mode on."""
    if spark.conf.get("spark.sql.ansi.enabled", "false").lower() == "true":
        return F.expr(f"try_cast(`{name}` AS {type_name})")
    return F.col(f"`{name}`").cast(type_name)


def malformed_reason(header: list[str], types: dict[str, DataType], delimiter: str = ",") -> Column:
    """Why Spark flagged a row: broken quoting, wrong token count or which value failed."""
    raw = F.col(CORRUPT)
    quotes = F.length(raw) - F.length(F.regexp_replace(raw, '"', ""))
    unquoted = F.regexp_replace(raw, '"[^"]*"', "")
    tokens = F.length(unquoted) - F.length(F.regexp_replace(unquoted, re.escape(delimiter), "")) + 1
    parts = F.split(raw, re.escape(delimiter))
    bad_values = [
        F.when(F.col(f"`{name}`").isNull() & (F.trim(F.element_at(parts, i + 1)) != ""), F.lit(name))
        for i, name in enumerate(header)
        if not isinstance(types.get(name, StringType()), StringType)
    ]
    which = F.concat_ws(", ", *bad_values) if bad_values else F.lit("")
    n = len(header)
    return (
        F.when(raw.isNull(), F.lit(None).cast("string"))
        .when(quotes % 2 == 1, F.lit("broken quoting"))
        .when(tokens != n, F.concat(F.lit("wrong token count: "), tokens.cast("string"), F.lit(f" (expected {n})")))
        .when(which != "", F.concat(F.lit("unparseable value in "), which))
        .otherwise(F.lit("malformed row"))
    )


def csv_options(multiline: bool = False) -> dict[str, str]:
    """Spark CSV options. ``multiline`` (free text): RFC 4180 files whose quoted fields may hold
    line breaks, with the quote itself as the escape (Spark's default escape, a backslash, splits
    a field such as "a \\"b" wrongly). Otherwise Spark's defaults (a backslash escapes a quote
    inside a quoted field; a field such as "a""b" is kept as typed, quotes and all), which the
    RAPIDS CSV scan runs on the GPU (it supports neither a modified escape
    nor multi-line records, so free-text files are read on the CPU there)."""
    return {"escape": '"', "multiLine": "true"} if multiline else {}


def read_csv(
    spark: SparkSession,
    groups: dict[tuple[str, ...], list[str]],
    types: dict[str, DataType],
    delimiter: str = ",",
    rename: dict[str, str] | None = None,
    multiline: bool = False,
) -> DataFrame:
    """Read CSV files (grouped by header, see csv_headers) with explicit types.

    A quote inside a quoted field is escaped by a backslash (Spark's default; mljobs.arrowcsv
    reads the same way). ``multiline`` (free text): RFC 4180 exactly (a
    backslash is an ordinary character) and a quoted field may hold line breaks; each file is
    then parsed by one task, since a record may start anywhere.

    The frame has every header column (renamed by ``rename``, typed when listed in
    ``types``, else string), ``_malformed`` (NULL for good rows) and ``_raw`` (the raw
    line of rows Spark could not parse).
    """
    rename = rename or {}
    frames = []
    for header, paths in groups.items():
        names = [rename.get(h, h) for h in header]
        typed = {n: types.get(n, StringType()) for n in names}
        schema = StructType(
            [StructField(h, typed[n], True) for h, n in zip(header, names)]
            + [StructField(CORRUPT, StringType(), True)]
        )
        df = (
            spark.read.schema(schema)
            .option("header", True)
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT)
            .option("sep", delimiter)
            .option("enforceSchema", True)
            .options(**csv_options(multiline))
            .csv(paths)
        )
        frames.append(
            df.select(
                *[F.col(f"`{h}`").alias(n) for h, n in zip(header, names)],
                malformed_reason(names, typed, delimiter).alias(REASON),
                F.col(CORRUPT).alias(RAW),
            )
        )
    return reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), frames)


def read_parquet(spark: SparkSession, files: list[InputFile], types: dict[str, DataType]) -> DataFrame:
    """Read Parquet files and cast to the expected types; values that do not cast are
    reported like CSV parse failures (``_raw`` stays NULL: the row is kept as JSON)."""
    try:
        df = spark.read.option("mergeSchema", "true").parquet(*[f.path for f in files])
    except Exception as exc:
        raise InputError(f"cannot read Parquet input: {error_text(exc)}") from None
    original = df.columns
    casts = {}
    for name in original:
        want = types.get(name)
        if want is not None and df.schema[name].dataType != want:
            casts[name] = safe_cast(spark, name, want.simpleString())
    failed = [
        F.when(F.col(f"`{name}`").isNotNull() & expr.isNull(), F.lit(name)) for name, expr in casts.items()
    ]
    which = F.concat_ws(", ", *failed) if failed else F.lit("")
    reason = F.when(which != "", F.concat(F.lit("unparseable value in "), which))
    out = df.select(
        *[casts.get(c, F.col(f"`{c}`")).alias(c) for c in original],
        reason.alias(REASON),
        F.lit(None).cast("string").alias(RAW),
    )
    return out


def is_path(source: str) -> bool:
    """A path (file, directory, glob, URI) rather than a table name."""
    return (
        "/" in source or "\\" in source or "://" in source
        or format_of(source) is not None or os.path.exists(source)
    )


def read_source(spark: SparkSession, source: str, what: str) -> DataFrame:
    """A table or CSV/Parquet path as a DataFrame with ``_malformed`` and ``_raw``
    (CSV lines Spark could not parse), every column kept as read (CSV: strings)."""
    if is_path(source):
        env = env_of(spark)
        files = list_input_files(spark, [source], "auto", env)
        if files[0].format == "csv":
            return read_csv(spark, csv_headers(spark, files), {}, ",")
        return read_parquet(spark, files, {})
    try:
        db, name = parse_table_name(source)
    except Exception:
        raise InputError(f"{what} {source!r} is neither a path nor a valid table name (DB.NAME)") from None
    if not spark.catalog.tableExists(f"{db}.{name}"):
        raise InputError(f"{what} table {db}.{name} does not exist (pass a CSV/Parquet path or an existing table)")
    df = spark.table(f"{db}.{name}")
    return df.select("*", F.lit(None).cast("string").alias(REASON), F.lit(None).cast("string").alias(RAW))
