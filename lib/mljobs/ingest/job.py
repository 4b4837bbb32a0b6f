"""The ingest pipeline: files -> staged rows (accepted / quarantined / excluded) -> Hive.

Everything is staged first (one pass over the input, written as Parquet under the
warehouse), counted, and checked; only then are the tables touched. Partitioned tables
are replaced partition by partition with Spark's dynamic partition overwrite, whose
commit protocol keeps the previous partitions until the new files are complete, so a
failed run leaves the previous table in place and a re-run replaces, never duplicates.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, DecimalType, DoubleType, FloatType, IntegerType, LongType, ShortType, ByteType

from mljobs.emr import EmrStep
from mljobs.config import parse_table_name, validate_identifier
from mljobs.errors import BadDataError, InputError, MljobsError
from mljobs.ingest import airline, schema
from mljobs import fs, tables
from mljobs.readers import RAW, REASON, SOURCE, csv_headers, read_csv, read_parquet, sanitize_name
from mljobs.io import InputFile, list_input_files, source_file
from mljobs.session import StageProgress, current_env

MODES = ("airline", "byod")
STATUS = "_status"
EXCLUDED = "_excluded"
QUARANTINE_COLUMNS = "source_file string, reason string, raw_line string, run_id string, ingested_at timestamp, source_id bigint"


@dataclass
class IngestConfig:
    """What to ingest and where; validated before any Spark work."""

    inputs: list[str]
    table: str
    mode: str = "airline"
    format: str = "auto"
    label: str | None = None
    features: list[str] | None = None
    partition_by: list[str] | None = None
    max_bad_fraction: float = 0.01
    delimiter: str = ","
    db: str = field(init=False, default="")
    name: str = field(init=False, default="")

    def validate(self) -> "IngestConfig":
        if not self.inputs:
            raise MljobsError("no input given: pass --input PATH [PATH ...]")
        self.db, self.name = parse_table_name(self.table)
        validate_identifier(self.name + "_quarantine", "quarantine table name")
        if self.mode not in MODES:
            raise MljobsError(f"unknown mode {self.mode!r}; valid: {', '.join(MODES)}")
        if self.format not in ("auto", "csv", "parquet"):
            raise MljobsError(f"unknown format {self.format!r}; valid: auto, csv, parquet")
        if not (0.0 <= float(self.max_bad_fraction) <= 1.0):
            raise MljobsError(f"--max-bad-fraction must be within [0, 1], got {self.max_bad_fraction}")
        if len(self.delimiter) != 1:
            raise MljobsError(f"--delimiter must be one character, got {self.delimiter!r}")
        if self.mode == "byod" and not self.label:
            raise MljobsError("bring-your-own-data mode needs --label COL")
        if self.mode == "airline" and self.features:
            raise MljobsError("--features applies to byod mode; airline mode has a fixed feature set")
        if self.partition_by is None:
            self.partition_by = list(schema.PARTITION_BY) if self.mode == "airline" else []
        for col in self.partition_by:
            validate_identifier(col, "partition column")
        return self

    @property
    def full_name(self) -> str:
        return f"{self.db}.{self.name}"

    @property
    def quarantine_name(self) -> str:
        return f"{self.db}.{self.name}_quarantine"


def run_ingest(spark: SparkSession, cfg: IngestConfig, progress=print) -> dict:
    """Ingest cfg.inputs into cfg.table; returns the job summary."""
    t0 = time.monotonic()
    cfg.validate()
    env = current_env(spark.sparkContext.getConf())
    files = list_input_files(spark, cfg.inputs, cfg.format, env)
    progress(f"{len(files)} input file(s), {sum(f.size for f in files) / 1e6:.1f} MB, format {files[0].format}")
    staged, columns, meta = stage_frame(spark, cfg, files)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS `{cfg.db}`")
    existed = spark.catalog.tableExists(cfg.full_name)
    if existed:
        _check_same_schema(spark, cfg, staged.select(*columns))

    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    staging = tables.staging_path(spark, cfg.db, f"{cfg.name}-{run_id}")
    created = False
    try:
        progress(f"parsing and staging rows under {staging}")
        with StageProgress(spark, progress):
            staged.write.mode("overwrite").partitionBy(STATUS, *cfg.partition_by).parquet(staging)
        counts = count_staged(spark, staging, staged.schema, cfg.partition_by)
        summary = check_counts(counts, files, cfg.max_bad_fraction)
        partitions = _partitions(spark, staging, cfg.partition_by, counts)
        progress(
            f"read {summary['rows_read']:,} rows: {summary['rows_accepted']:,} accepted, "
            f"{summary['rows_quarantined']:,} quarantined, {sum(summary['rows_excluded'].values()):,} excluded"
        )
        accepted_dir = f"{staging}/{STATUS}=accepted"
        # Read back with the staged schema: partition values must keep their types, not be
        # re-inferred from directory names ("01" would become 1).
        accepted = spark.read.schema(staged.drop(STATUS).schema).parquet(accepted_dir).select(*columns)
        if not existed:
            _create_table(spark, cfg, accepted, meta)
            created = True
        if cfg.partition_by:
            progress(f"publishing {len(partitions)} partition(s) into {cfg.full_name}")
            tables.publish_partitions(spark, cfg.full_name, accepted_dir, partitions, f"{staging}/_replaced")
        else:
            _replace_unpartitioned(spark, cfg, accepted, progress)
        quarantined_dir = f"{staging}/{STATUS}=quarantined"
        quarantined = spark.read.schema(staged.drop(STATUS).schema).parquet(quarantined_dir) if summary["rows_quarantined"] else None
        write_quarantine(spark, cfg, quarantined, files, run_id)
    except BaseException:
        if created and not existed:
            spark.sql(f"DROP TABLE IF EXISTS {cfg.full_name}")
        raise
    finally:
        fs.remove(spark, staging)
    summary.update(
        table=cfg.full_name,
        quarantine_table=cfg.quarantine_name,
        mode=cfg.mode,
        files=len(files),
        partitions_written=len(partitions) if cfg.partition_by else 1,
        run_id=run_id,
        seconds=round(time.monotonic() - t0, 3),
    )
    return summary


def _partitions(spark: SparkSession, staging: str, partition_by: list[str], counts: list) -> list[dict]:
    """The accepted partitions: their values and the directory Spark wrote each to."""
    if not partition_by:
        return []
    values = sorted({tuple(r[p] for p in partition_by) for r in counts if r[STATUS] == "accepted"}, key=str)
    root = f"{staging}/{STATUS}=accepted"
    jvm = spark.sparkContext._jvm
    # Spark escapes partition values in directory names; ask Spark for the same escaping.
    escape = jvm.org.apache.spark.sql.catalyst.catalog.ExternalCatalogUtils.escapePathName
    out = []
    for vals in values:
        rel = "/".join(f"{escape(p)}={escape(_path_value(v))}" for p, v in zip(partition_by, vals))
        if not fs.exists(spark, f"{root}/{rel}"):
            raise RuntimeError(f"staged partition directory missing: {root}/{rel}")
        out.append({"values": dict(zip(partition_by, vals)), "dir": rel})
    return out


def _path_value(v) -> str:
    return v.isoformat() if hasattr(v, "isoformat") else str(v)


def stage_frame(spark: SparkSession, cfg: IngestConfig, files: list[InputFile]) -> tuple[DataFrame, list[str], dict]:
    """Parse the input and tag each row accepted / quarantined / excluded with a reason."""
    build = _airline if cfg.mode == "airline" else _byod
    df, raw_columns, quarantine, excluded, columns, out_cols, meta = build(spark, cfg, files)
    status = F.when(quarantine.isNotNull(), "quarantined").when(excluded.isNotNull(), "excluded").otherwise("accepted")
    reason = F.coalesce(quarantine, excluded)
    # Rows Spark could not parse keep their raw line; rows that parsed but failed a check
    # keep their parsed fields as "name=value" pairs (to_json would not run on the GPU).
    # Both sit inside the CASE, so only quarantined rows pay for them. input_file_name()
    # is taken only here: it is non-deterministic, which would stop Spark from collapsing
    # the projections below.
    fields = F.concat_ws(
        ", ", *[F.concat(F.lit(f"{c}="), F.coalesce(F.col(f"`{c}`").cast("string"), F.lit(""))) for c in raw_columns]
    )
    raw = F.when(quarantine.isNotNull(), F.coalesce(F.col(RAW), fields))
    staged = df.select(
        *out_cols,
        source_file().alias(SOURCE),
        reason.alias(REASON),
        raw.alias(RAW),
        status.alias(STATUS),
    )
    # Rows that are not accepted need no partition layout: a NULL partition value puts them
    # in one directory per task instead of one per month, half the files of the staging write.
    accepted = F.col(STATUS) == "accepted"
    staged = staged.select(
        *[F.when(accepted, F.col(c)).alias(c) if c in cfg.partition_by else F.col(c) for c in staged.columns]
    )
    return staged, columns, meta


def _airline(spark: SparkSession, cfg: IngestConfig, files: list[InputFile]):
    types = schema.PARSE_TYPES
    if files[0].format == "csv":
        groups = csv_headers(spark, files, cfg.delimiter)
        for header, paths in groups.items():
            _require(schema.missing_required(header), paths)
        df = read_csv(spark, groups, types, cfg.delimiter)
    else:
        df = read_parquet(spark, files, types)
        _require(schema.missing_required(df.columns), [f.path for f in files])
    raw_columns = [c for c in df.columns if c not in (REASON, RAW)]
    df = airline.prepare(df)
    quarantine = F.coalesce(F.col(REASON), airline.invalid_reason(df))
    excluded = airline.exclusion_reason(df)
    meta = {"mljobs.label": schema.LABEL, "mljobs.features": ",".join(schema.FEATURES)}
    return df, raw_columns, quarantine, excluded, list(schema.OUTPUT_TYPES), airline.output_columns(df), meta


def _byod(spark: SparkSession, cfg: IngestConfig, files: list[InputFile]):
    df, columns, out_cols, meta = _byod_frame(spark, cfg, files)
    quarantine = F.col(REASON)
    for col in cfg.partition_by:
        quarantine = F.coalesce(quarantine, F.when(F.col(col).isNull(), F.lit(f"missing value in {col}")))
    excluded = F.when(F.col(cfg.label).isNull(), F.lit("missing_label"))
    raw_columns = [c for c in df.columns if c not in (REASON, RAW)]
    return df, raw_columns, quarantine, excluded, columns, out_cols, meta


def _require(missing: list[str], paths: list[str]) -> None:
    if missing:
        shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
        raise InputError(f"missing required column(s) {', '.join(missing)} in {shown}")


_NUMERIC_WIDEN: dict[type, DataType] = {
    ByteType: LongType(), ShortType: LongType(), IntegerType: LongType(), LongType: LongType(),
    FloatType: DoubleType(), DoubleType: DoubleType(), DecimalType: DoubleType(),
}


def infer_types(spark: SparkSession, paths: list[str], delimiter: str, rename: dict[str, str]) -> dict[str, DataType]:
    """Types inferred once from a sample of the first files (integers widened to bigint,
    decimals to double); afterwards they are enforced and misfits quarantined."""
    sample = paths[:3]
    inferred = (
        spark.read.option("header", True).option("inferSchema", True).option("sep", delimiter)
        .option("samplingRatio", 0.2).csv(sample).schema
    )
    return {rename.get(f.name, f.name): _NUMERIC_WIDEN.get(type(f.dataType), f.dataType) for f in inferred}


def _byod_frame(spark, cfg: IngestConfig, files: list[InputFile]):
    existing = _table_types(spark, cfg.full_name)
    if files[0].format == "csv":
        groups = csv_headers(spark, files, cfg.delimiter)
        rename = {h: sanitize_name(h) for header in groups for h in header}
        types = existing or infer_types(spark, next(iter(groups.values())), cfg.delimiter, rename)
        df = read_csv(spark, groups, types, cfg.delimiter, rename)
        columns_in = [c for c in df.columns if c not in (REASON, RAW)]
    else:
        types = existing or {}
        df = read_parquet(spark, files, types)
        columns_in = [c for c in df.columns if c not in (REASON, RAW)]
        bad = [c for c in columns_in if sanitize_name(c) != c]
        if bad:
            df = df.select(*[F.col(f"`{c}`").alias(sanitize_name(c)) if c in bad else F.col(c) for c in df.columns])
            columns_in = [sanitize_name(c) for c in columns_in]
    label = cfg.label
    if label not in columns_in:
        raise InputError(f"label column {label!r} not in the input; columns: {', '.join(columns_in)}")
    features = cfg.features or [c for c in columns_in if c != label and c not in cfg.partition_by]
    unknown = [c for c in features + cfg.partition_by if c not in columns_in]
    if unknown:
        raise InputError(f"column(s) {', '.join(unknown)} not in the input; columns: {', '.join(columns_in)}")
    ordered = [c for c in features if c not in cfg.partition_by] + [label] + list(cfg.partition_by)
    out_cols = [F.col(c) for c in ordered]
    meta = {"mljobs.label": label, "mljobs.features": ",".join(features)}
    return df, ordered, out_cols, meta


def _table_types(spark: SparkSession, full_name: str) -> dict[str, DataType]:
    if not spark.catalog.tableExists(full_name):
        return {}
    return {f.name: f.dataType for f in spark.table(full_name).schema}


def count_staged(spark: SparkSession, staging: str, schema, partition_by: list[str]) -> list:
    """Row counts by file, status, reason and partition: one small aggregation."""
    staged = spark.read.schema(schema).parquet(staging)
    return staged.groupBy(SOURCE, STATUS, REASON, *partition_by).count().collect()


def check_counts(counts: list, files: list[InputFile], max_bad_fraction: float) -> dict:
    """Totals by status and reason; abort (nothing written yet) on header-only files,
    no accepted rows, or too many malformed rows."""
    per_file: dict[str, dict[str, int]] = {}
    excluded: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for row in counts:
        f = per_file.setdefault(row[SOURCE], {"read": 0, "quarantined": 0})
        f["read"] += row["count"]
        if row[STATUS] == "quarantined":
            f["quarantined"] += row["count"]
            key = row[REASON].split(" (expected")[0] if row[REASON].startswith("wrong token") else row[REASON]
            reasons[key] = reasons.get(key, 0) + row["count"]
        elif row[STATUS] == "excluded":
            excluded[row[REASON]] = excluded.get(row[REASON], 0) + row["count"]
    read = sum(f["read"] for f in per_file.values())
    quarantined = sum(f["quarantined"] for f in per_file.values())
    accepted = read - quarantined - sum(excluded.values())
    header_only = [f.path for f in files if f.format == "csv" and f.uri not in per_file]
    if header_only:
        raise InputError(f"input file(s) with a header but no data rows: {', '.join(header_only[:10])}")
    if read == 0:
        raise InputError("the input has no rows")
    fraction = quarantined / read
    if fraction > max_bad_fraction:
        worst = sorted(per_file.items(), key=lambda kv: (-kv[1]["quarantined"] / kv[1]["read"], kv[0]))[:5]
        named = "; ".join(f"{p}: {v['quarantined']}/{v['read']} bad" for p, v in worst if v["quarantined"])
        top = ", ".join(f"{k} ({v})" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
        raise BadDataError(
            f"{quarantined:,} of {read:,} rows are malformed ({fraction:.2%} > --max-bad-fraction "
            f"{max_bad_fraction:.2%}); nothing was written. Worst files: {named}. Reasons: {top}"
        )
    if accepted == 0:
        raise InputError(f"no rows accepted out of {read:,} (excluded: {excluded}); nothing was written")
    return {
        "rows_read": read,
        "rows_accepted": accepted,
        "rows_quarantined": quarantined,
        "rows_excluded": dict(sorted(excluded.items())),
        "quarantine_reasons": dict(sorted(reasons.items())),
        "bad_fraction": round(fraction, 6),
    }


def _create_table(spark: SparkSession, cfg: IngestConfig, accepted: DataFrame, meta: dict) -> None:
    parts = cfg.partition_by
    partition_clause = f" PARTITIONED BY ({', '.join(f'`{p}`' for p in parts)})" if parts else ""
    spark.sql(f"CREATE TABLE {cfg.full_name} ({tables.column_ddl(accepted)}) USING parquet{partition_clause}"
              + tables.tblproperties_clause(meta))


def _check_same_schema(spark: SparkSession, cfg: IngestConfig, accepted: DataFrame) -> None:
    have = [(f.name.lower(), f.dataType.simpleString()) for f in spark.table(cfg.full_name).schema]
    want = [(f.name.lower(), f.dataType.simpleString()) for f in accepted.schema]
    if have != want:
        raise MljobsError(
            f"table {cfg.full_name} exists with another schema ({', '.join(' '.join(x) for x in have)}); "
            f"this input gives ({', '.join(' '.join(x) for x in want)}). Ingest into a new table or drop it first."
        )
    parts = [c.name.lower() for c in spark.catalog.listColumns(cfg.full_name) if c.isPartition]
    if parts != [p.lower() for p in cfg.partition_by]:
        raise MljobsError(
            f"table {cfg.full_name} is partitioned by ({', '.join(parts) or 'nothing'}), not "
            f"({', '.join(cfg.partition_by) or 'nothing'}); pass the same --partition-by or use a new table."
        )


def _replace_unpartitioned(spark: SparkSession, cfg: IngestConfig, accepted: DataFrame, progress) -> None:
    """Write a new table and swap it in by rename, so a failure keeps the old one."""
    progress(f"writing {cfg.full_name} (unpartitioned: new table swapped in at the end)")
    tables.replace_table(spark, cfg.db, cfg.name, accepted, tables.mljobs_properties(spark, cfg.full_name))


def write_quarantine(
    spark: SparkSession, cfg: IngestConfig, quarantined: DataFrame | None, files: list[InputFile], run_id: str
) -> None:
    """<table>_quarantine, partitioned by a hash of the source file: re-ingesting a file
    replaces its quarantined rows, other files' rows stay."""
    q = cfg.quarantine_name
    spark.sql(f"CREATE TABLE IF NOT EXISTS {q} ({QUARANTINE_COLUMNS}) USING parquet PARTITIONED BY (source_id)")
    existing = {r[0].split("=", 1)[1] for r in spark.sql(f"SHOW PARTITIONS {q}").collect()}
    if existing:
        ids = spark.createDataFrame([(f.uri,) for f in files], "p string").select(F.xxhash64("p").alias("id"))
        for row in ids.collect():
            if str(row.id) in existing:
                spark.sql(f"ALTER TABLE {q} DROP IF EXISTS PARTITION (source_id={int(row.id)})")
    if quarantined is None:
        return
    rows = quarantined.select(
        F.col(SOURCE).alias("source_file"),
        F.col(REASON).alias("reason"),
        F.col(RAW).alias("raw_line"),
        F.lit(run_id).alias("run_id"),
        F.current_timestamp().alias("ingested_at"),
        F.xxhash64(SOURCE).alias("source_id"),
    )
    rows.write.insertInto(q, overwrite=False)


# ---- what the rest of the system knows about this job (see mljobs.registry)
NAME = "ingest"
CONFIG = IngestConfig
run = run_ingest
EMR_STEP = EmrStep(needs=("input", "table"), args=lambda p: ["--input", *p.input, "--table", p.table],
                   label=lambda p: p.table)
GPU_FALLBACKS: list = []  # none of its own (tests/test_gpu_readiness.py)
