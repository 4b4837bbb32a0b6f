"""The Arrow reader of airline-mode CSV: stage_frame's rows, made in the Python workers.

Each task gets whole files: their bytes read by Spark (``binaryFile``, so any file system
Spark reads works) or, where the files are local, by the worker itself. Each file is parsed
by mljobs.arrowcsv (Spark's CSV rules at pyarrow's speed) and the airline rules of
mljobs.ingest.airline are applied to whole Arrow columns with numpy. The rows are the ones
stage.py's SQL produces — same values, same reasons, same raw lines — and are staged in the
same layout: written by Spark, or, where the staging directory is local (the local env), by
the workers themselves, which also return the counts (write_staged_locally). Counts, checks
and publish are then the same for both readers (tests/test_ingest_arrow.py compares them on
randomly corrupted files).
"""
from __future__ import annotations

import os
import re
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from pyspark.sql import DataFrame, SparkSession

from mljobs import arrowcsv, uris
from mljobs.ingest.schema import LABEL, OUTPUT_TYPES, PARSE_TYPES
from mljobs.io import InputFile
from mljobs.readers import RAW, REASON, SOURCE

STATUS = "_status"  # as mljobs.ingest.stage.STATUS (stage imports this module)
ARROW_TYPES = {"int": pa.int32(), "double": pa.float64(), "string": pa.string(), "date": pa.date32()}
_PARSE_ARROW = {name: ARROW_TYPES[t.simpleString()] if t.simpleString() in ARROW_TYPES else pa.string()
                for name, t in PARSE_TYPES.items()}
# FlightDate is text to Spark (cast to a date by airline.prepare): pyarrow may read it as a date
# where every value is 'yyyy-mm-dd' (which the cast reads alike); otherwise spark_dates does.
_PARSE_ARROW["FlightDate"] = pa.date32()
STAGED_DDL = ", ".join(f"`{n}` {t}" for n, t in OUTPUT_TYPES.items()) + \
    f", {SOURCE} string, {REASON} string, {RAW} string, {STATUS} string"
MAX_FILE_BYTES = 1 << 30  # binaryFile hands a task each file whole
_DATE = re.compile(r"([+-]?\d{4,7})(?:-(\d{1,2})(?:-(\d{1,2})(?:[T ].*)?)?)?", re.ASCII | re.DOTALL)
_EPOCH = date(1970, 1, 1).toordinal()


def staged_frame(spark: SparkSession, files: list[InputFile], groups: dict[tuple[str, ...], list[str]],
                 delimiter: str) -> DataFrame:
    """Every row of the files with its output columns, source, reason, raw line and status."""
    parse = _parser(files, groups, delimiter)

    def stage(batches):
        for path, data in _contents(batches):
            yield from parse(path, data).to_batches(max_chunksize=200_000)

    return _contents_frame(spark, files).mapInArrow(stage, STAGED_DDL)


def write_staged_locally(spark: SparkSession, files: list[InputFile], groups: dict[tuple[str, ...], list[str]],
                         delimiter: str, staging: str, partition_by: list[str]) -> list:
    """The staged rows written by the Python workers themselves, as Spark would write them
    (``staging/_status=S/<partition>=V/...parquet``), when the staging directory is local:
    the rows never pass through the JVM, and local input files are read by the workers too.
    A file's output files are named after it, so a task run again replaces them. Returns the
    counts checks.count_staged would (by source, status, reason and partition)."""
    parse = _parser(files, groups, delimiter)
    index_of = {f.path: i for i, f in enumerate(files)}
    root = uris.local_path(staging)
    os.makedirs(root, exist_ok=True)
    keys = [SOURCE, STATUS, REASON, *partition_by]

    def stage(batches):
        for path, data in _contents(batches):
            table = partitioned_if_accepted(parse(path, data), partition_by)
            write_partitioned(table, root, f"part-{index_of[path]:05d}", partition_by)
            counts = table.group_by(keys, use_threads=False).aggregate([(STATUS, "count", pc.CountOptions("all"))])
            names = ["count" if c == f"{STATUS}_count" else c for c in counts.column_names]
            yield from counts.rename_columns(names).select([*keys, "count"]).to_batches()

    schema = ", ".join(f"`{k}` {OUTPUT_TYPES.get(k, 'string')}" for k in keys) + ", count bigint"
    return _contents_frame(spark, files).mapInArrow(stage, schema).collect()


def partitioned_if_accepted(table: pa.Table, partition_by: list[str]) -> pa.Table:
    """stage.partitioned_if_accepted on an Arrow table: partition values only on accepted rows."""
    accepted = pc.equal(table.column(STATUS), "accepted")
    for col in partition_by:
        i = table.schema.get_field_index(col)
        table = table.set_column(i, col, pc.if_else(accepted, table.column(col), pa.scalar(None, table.schema.field(i).type)))
    return table


def _parser(files: list[InputFile], groups: dict[tuple[str, ...], list[str]], delimiter: str):
    header_of = {path: list(header) for header, paths in groups.items() for path in paths}
    uri_of = {f.path: f.uri for f in files}
    return lambda path, data: staged_table(arrowcsv.parse_file(data, header_of[path], _PARSE_ARROW, delimiter), uri_of[path])


def _contents_frame(spark: SparkSession, files: list[InputFile]) -> DataFrame:
    """Each file's path and bytes: read by Spark (any file system it reads), or, where every
    file is local, by the workers themselves (the bytes never pass through the JVM)."""
    if all(uris.local_path(f.path) for f in files):
        bins = _balanced(files, spark.sparkContext.defaultParallelism)
        paths = spark.sparkContext.parallelize(range(len(bins)), len(bins)).flatMap(lambda i: [(p,) for p in bins[i]])
        return spark.createDataFrame(paths, "path string")
    return spark.read.format("binaryFile").load([f.path for f in files]).select("path", "content")


def _balanced(files: list[InputFile], slots: int) -> list[list[str]]:
    """The files' paths in one bin per task slot, biggest first onto the lightest bin: a task
    per slot (not per file) saves Spark's per-task round trip (~0.15 s a file on 2 cores)."""
    bins: list[list[str]] = [[] for _ in range(max(1, min(slots, len(files))))]
    load = [0] * len(bins)
    for f in sorted(files, key=lambda f: -f.size):
        i = load.index(min(load))
        bins[i].append(f.path)
        load[i] += f.size
    return bins


def _contents(batches):
    """(path, decompressed bytes) of each file, one file in memory at a time where they are local."""
    for batch in batches:
        paths = batch.column("path").to_pylist()
        given = batch.column("content") if "content" in batch.schema.names else None
        for i, path in enumerate(paths):
            content = given[i].as_py() if given is not None else _read_local(path)
            yield path, arrowcsv.decompress(content, path)


def _read_local(path: str) -> bytes:
    with open(uris.local_path(path), "rb") as f:
        return f.read()


# Spark's ExternalCatalogUtils.escapePathName: the characters it writes as %XX in partition directories.
_ESCAPED = set('"#%\'*/:=?\\\x7f{[]^') | {chr(c) for c in range(1, 32)}


def partition_text(value) -> str | None:
    """A partition value as Spark names its directory (None: Hive's default partition)."""
    if value is None:
        return None
    text = arrowcsv.java_double_text(value) if isinstance(value, float) else \
        value.isoformat() if isinstance(value, date) else str(value)
    return "".join(f"%{ord(c):02X}" if c in _ESCAPED else c for c in text) or None


def write_partitioned(table: pa.Table, root: str, name: str, partition_by: list[str]) -> None:
    """``table`` (partition values already NULL but on accepted rows) under ``root`` as Spark's
    partitioned write lays it out, files ``<name>-<i>.parquet``."""
    keys = {STATUS: table.column(STATUS)}
    for col in partition_by:
        values = table.column(col)
        distinct = pc.unique(values).to_pylist()
        index = pc.index_in(values, value_set=pa.array(distinct, values.type))
        keys[col] = pc.take(pa.array([partition_text(v) for v in distinct], pa.string()), index)
    data = table.drop_columns([STATUS, *partition_by])
    for col, key in keys.items():
        data = data.append_column(col, key)
    ds.write_dataset(
        data, root, format="parquet", basename_template=name + "-{i}.parquet", use_threads=False,
        partitioning=ds.HivePartitioning(pa.schema([(k, pa.string()) for k in keys]), segment_encoding="none"),
        existing_data_behavior="overwrite_or_ignore", max_rows_per_group=1 << 20,
    )


def staged_table(parsed: arrowcsv.Parsed, uri: str) -> pa.Table:
    """airline.prepare, invalid_reason, exclusion_reason and stage.tag_rows over whole columns."""
    n = len(parsed)
    cols = prepared(parsed.columns, n)
    invalid, excluded = invalid_codes(cols, n), exclusion_codes(cols, n)
    malformed = np.zeros(n, dtype=bool)
    malformed[list(parsed.malformed)] = True
    checked = (invalid > 0) & ~malformed
    quarantined = malformed | checked
    labels = list(INVALID) + list(EXCLUDED) + sorted(set(parsed.malformed.values()))
    reason = np.where(excluded > 0, len(INVALID) + excluded - 1, -1)
    reason = np.where(invalid > 0, invalid - 1, reason)
    for r, why in parsed.malformed.items():
        reason[r] = labels.index(why)
    status = np.where(quarantined, 2, np.where(excluded > 0, 1, 0))
    raw = {r: parsed.lines.text(parsed.line_of_row[r]) for r in parsed.malformed}
    raw.update({int(r): fields_text(parsed, cols, int(r)) for r in np.flatnonzero(checked)})
    out = {name: _as(cols[name], ARROW_TYPES[t]) for name, t in OUTPUT_TYPES.items()}
    out.update({SOURCE: _labels(np.zeros(n, dtype=np.int32), [uri]), REASON: _labels(reason, labels),
                RAW: _sparse(raw, n), STATUS: _labels(status, ["accepted", "excluded", "quarantined"])})
    return pa.table(out)


def _labels(codes: np.ndarray, labels: list[str]) -> pa.Array:
    """A string column from codes into labels (-1 = NULL), built through a dictionary."""
    missing = codes < 0
    return pa.DictionaryArray.from_arrays(
        pa.array(np.where(missing, 0, codes).astype(np.int32), mask=missing if missing.any() else None),
        pa.array(labels, pa.string())).cast(pa.string())


def _sparse(values: dict[int, str], n: int) -> pa.Array:
    """A string column that is NULL but for the given rows."""
    if not values:
        return pa.nulls(n, pa.string())
    rows = np.fromiter(values, dtype=np.int64, count=len(values))
    index = np.full(n, -1, dtype=np.int64)
    index[rows] = np.arange(rows.size)
    return pa.array(list(values.values()), pa.string()).take(pa.array(index, mask=index < 0))


def _as(col: pa.Array, kind: pa.DataType) -> pa.Array:
    return col if col.type == kind else col.cast(kind)


# ---------------------------------------------------------------- airline.prepare


def prepared(columns: dict[str, pa.Array], n: int) -> dict[str, pa.Array]:
    """FlightDate as a date, Quarter and DayOfWeek when absent, the delay flags filled in."""
    cols = dict(columns)
    if "FlightDate" in cols:
        if cols["FlightDate"].type != pa.date32():
            cols["FlightDate"] = spark_dates(cols["FlightDate"])
    else:
        cols["FlightDate"] = made_dates(cols["Year"], cols["Month"], cols["DayofMonth"])
    if "Quarter" not in cols:
        cols["Quarter"] = _int_array(np.floor((_num(cols["Month"]) - 1) / 3) + 1)
    if "DayOfWeek" not in cols:
        days = _num(cols["FlightDate"].cast(pa.int32()))
        # Spark's dayofweek (1 = Sunday; 1970-01-01 a Thursday) is (days + 4) % 7 + 1; BTS counts
        # from Monday: (dayofweek + 5) % 7 + 1, which is:
        cols["DayOfWeek"] = _int_array((days + 3) % 7 + 1)
    for flag, delay in (("DepDel15", "DepDelay"), (LABEL, "ArrDelay")):
        cols[flag] = _coalesce(_flag(cols.get(flag), n), _del15(cols.get(delay), n))
    return cols


def _valid(col: pa.Array) -> np.ndarray:
    return col.is_valid().to_numpy(zero_copy_only=False)


def _flag(col: pa.Array | None, n: int) -> pa.Array:
    """CAST(flag AS INT) without ANSI: truncated, NaN -> 0, clamped to int's range."""
    if col is None:
        return pa.nulls(n, pa.int32())
    x = np.nan_to_num(col.fill_null(0).to_numpy(zero_copy_only=False).astype(float), nan=0.0, posinf=np.inf, neginf=-np.inf)
    return pa.array(np.clip(np.trunc(x), *arrowcsv.INT32).astype(np.int32), mask=~_valid(col))


def _del15(col: pa.Array | None, n: int) -> pa.Array:
    """CAST(delay >= 15 AS INT); NaN is above every number in Spark's ordering."""
    if col is None:
        return pa.nulls(n, pa.int32())
    x = col.fill_null(0).to_numpy(zero_copy_only=False).astype(float)
    return pa.array(((x >= 15) | np.isnan(x)).astype(np.int32), mask=~_valid(col))


def _coalesce(first: pa.Array, second: pa.Array) -> pa.Array:
    return pa.array(np.where(_valid(first), first.fill_null(0).to_numpy(zero_copy_only=False),
                             second.fill_null(0).to_numpy(zero_copy_only=False)).astype(np.int32),
                    mask=~(_valid(first) | _valid(second)))


def _num(col: pa.Array) -> np.ndarray:
    """A column without NaN values (ints, dates) as float64, NaN for NULL."""
    return col.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)


def _int_array(values: np.ndarray) -> pa.Array:
    """Whole numbers as int32, NaN as NULL."""
    nan = np.isnan(values)
    return pa.array(np.where(nan, 0, values).astype(np.int32), mask=nan)


def spark_dates(text: pa.Array) -> pa.Array:
    """CAST(string AS DATE): 'yyyy[-m[m][-d[d][T... or ' '...]]]', surrounding spaces trimmed;
    NULL where invalid. 'yyyy-mm-dd' is done vectorised, anything else per value."""
    fast = pc.fill_null(pc.match_substring_regex(text, r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"), False)
    part = lambda a, b: pc.cast(pc.utf8_slice_codeunits(pc.if_else(fast, text, "0000-00-00"), a, b), pa.int64()).to_numpy()
    y, m, d = part(0, 4), part(5, 7), part(8, 10)
    month = ((y - 1970) * 12 + np.clip(m, 1, 12) - 1).astype("datetime64[M]")
    first = month.astype("datetime64[D]")
    length = ((month + 1).astype("datetime64[D]") - first).astype(np.int64)
    ok = fast.to_numpy(zero_copy_only=False) & (m >= 1) & (m <= 12) & (d >= 1) & (d <= length)
    days = (first.astype(np.int64) + d - 1).astype(object)
    days[~ok] = None
    for i in np.flatnonzero(~fast.to_numpy(zero_copy_only=False) & _valid(text)):
        days[i] = _spark_date(text[int(i)].as_py())
    return pa.array(days, pa.int32()).cast(pa.date32())


def _spark_date(text: str) -> int | None:
    m = _DATE.fullmatch(text.strip(arrowcsv.JAVA_SPACE))
    if not m:
        return None
    year, month, day = int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1)
    try:
        return date(year, month, day).toordinal() - _EPOCH
    except ValueError:
        return None


def made_dates(year: pa.Array, month: pa.Array, day: pa.Array) -> pa.Array:
    """make_date(Year, Month, DayofMonth) without ANSI: NULL where not a date."""
    out = []
    for y, m, d in zip(year.to_pylist(), month.to_pylist(), day.to_pylist()):
        try:
            out.append(None if None in (y, m, d) else date(y, m, d).toordinal() - _EPOCH)
        except ValueError:
            out.append(None)
    return pa.array(out, pa.int32()).cast(pa.date32())


# ---------------------------------------------------------------- checks


INVALID = ("missing value in Year", "invalid Month", "invalid FlightDate", "negative Distance")
EXCLUDED = ("cancelled", "diverted", "missing_arrival")


def invalid_codes(cols: dict[str, pa.Array], n: int) -> np.ndarray:
    """airline.invalid_reason: 1 + the index in INVALID of each row's first failed check, else 0."""
    month = _num(cols["Month"])
    distance = cols["Distance"].fill_null(0).to_numpy(zero_copy_only=False)
    return _first([~_valid(cols["Year"]), np.isnan(month) | (month < 1) | (month > 12),
                   ~_valid(cols["FlightDate"]), distance < 0])


def exclusion_codes(cols: dict[str, pa.Array], n: int) -> np.ndarray:
    """airline.exclusion_reason (cancelled, diverted, missing arrival; NaN = 1 is false), as codes."""
    flag = lambda name: (cols[name].fill_null(0).to_numpy(zero_copy_only=False) == 1) if name in cols else np.zeros(n, bool)
    return _first([flag("Cancelled"), flag("Diverted"), ~_valid(cols[LABEL])])


def _first(conditions: list[np.ndarray]) -> np.ndarray:
    """CASE WHEN ...: 1 + the index of each row's first true condition, else 0."""
    out = np.zeros(conditions[0].size, dtype=np.int64)
    for k in range(len(conditions), 0, -1):
        out[conditions[k - 1]] = k
    return out


def fields_text(parsed: arrowcsv.Parsed, cols: dict[str, pa.Array], r: int) -> str:
    """stage.tag_rows's raw text of a row that parsed but failed a check: 'name=value' pairs
    of the file's columns, values as Spark casts them to string."""
    fields = parsed.fields(r)
    return ", ".join(f"{name}={_text(cols[name][r].as_py() if name in cols else fields[j])}"
                     for j, name in enumerate(parsed.header))


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return arrowcsv.java_double_text(value)
    return value.isoformat() if isinstance(value, date) else str(value)
