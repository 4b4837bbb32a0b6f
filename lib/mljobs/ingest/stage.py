"""Parse the input files and tag every row accepted / quarantined / excluded, with a reason."""
from __future__ import annotations

from typing import Callable

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, DecimalType, DoubleType, FloatType, IntegerType, LongType, ShortType, ByteType

from mljobs.errors import InputError
from mljobs.gpu import rapids_configured
from mljobs.ingest import airline, arrowstage, schema
from mljobs.ingest.config import IngestConfig
from mljobs import uris
from mljobs.io import InputFile, source_file
from mljobs.readers import RAW, REASON, SOURCE, csv_headers, csv_options, read_csv, read_parquet, sanitize_name
from mljobs.session import current_env, env_of

STATUS = arrowstage.STATUS


def choose_reader(spark: SparkSession, cfg: IngestConfig, files: list[InputFile]) -> str:
    """arrow or spark (see IngestConfig.reader); an explicit arrow it cannot honour is an error."""
    if cfg.reader == "spark" or cfg.mode != "airline":
        return "spark"
    big = [f.path for f in files if f.size > arrowstage.MAX_FILE_BYTES]
    if cfg.reader == "arrow":
        if files[0].format != "csv":
            raise InputError("--reader arrow reads CSV files; these inputs are Parquet (leave --reader auto)")
        if big:
            raise InputError(f"--reader arrow parses each file in one task, up to {arrowstage.MAX_FILE_BYTES >> 20} MiB; "
                             f"bigger: {', '.join(big[:5])} (use --reader spark, which splits them)")
        return "arrow"
    conf = spark.sparkContext.getConf()
    gpu = current_env(conf) == "emr-gpu" or rapids_configured(conf)  # the GPU's CSV scan
    return "arrow" if files[0].format == "csv" and not big and not gpu else "spark"


def stage_frame(spark: SparkSession, cfg: IngestConfig, files: list[InputFile],
                reader: str = "spark") -> tuple[DataFrame, list[str], dict, Callable[[str], list | None]]:
    """Parse the input and tag each row accepted / quarantined / excluded with a reason: the
    staged rows, the table's columns and properties, and what writes the rows to a staging path
    (returning their counts where it has them)."""
    if reader == "arrow":
        return _airline_arrow(spark, cfg, files)
    build = _airline if cfg.mode == "airline" else _byod
    df, raw_columns, quarantine, excluded, columns, out_cols, meta = build(spark, cfg, files)
    staged = partitioned_if_accepted(tag_rows(df, quarantine, excluded, raw_columns, out_cols), cfg.partition_by)
    return staged, columns, meta, spark_writer(staged, cfg.partition_by)


def spark_writer(staged: DataFrame, partition_by: list[str]) -> Callable[[str], list | None]:
    """Spark's partitioned write of the staged rows (by status, then the partition columns);
    it returns no counts (checks.count_staged reads them back)."""
    return lambda staging: staged.write.mode("overwrite").partitionBy(STATUS, *partition_by).parquet(staging)


def tag_rows(df: DataFrame, quarantine: Column, excluded: Column, raw_columns: list[str], out_cols: list[Column]) -> DataFrame:
    """The output columns plus the row's source file, reason, raw line and status
    (quarantined before excluded before accepted)."""
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
    return df.select(*out_cols, source_file().alias(SOURCE), reason.alias(REASON), raw.alias(RAW), status.alias(STATUS))


def partitioned_if_accepted(staged: DataFrame, partition_by: list[str]) -> DataFrame:
    """Partition values only on accepted rows: the others need no partition layout, and a
    NULL value puts them in one directory per task instead of one per month (half the
    files of the staging write)."""
    accepted = F.col(STATUS) == "accepted"
    return staged.select(*[F.when(accepted, F.col(c)).alias(c) if c in partition_by else F.col(c) for c in staged.columns])


def _airline_arrow(spark: SparkSession, cfg: IngestConfig, files: list[InputFile]):
    """The airline rows parsed by pyarrow in the Python workers (mljobs.ingest.arrowstage)."""
    groups = csv_headers(spark, files, cfg.delimiter)
    for header, paths in groups.items():
        _require(schema.missing_required(header), paths)
    staged = partitioned_if_accepted(arrowstage.staged_frame(spark, files, groups, cfg.delimiter), cfg.partition_by)
    local = env_of(spark) == "local"

    def write(staging: str) -> list | None:
        if local and uris.local_path(staging):  # the Python workers write the files themselves
            return arrowstage.write_staged_locally(spark, files, groups, cfg.delimiter, staging, cfg.partition_by)
        return spark_writer(staged, cfg.partition_by)(staging)

    return staged, list(schema.OUTPUT_TYPES), _AIRLINE_META, write


_AIRLINE_META = {"mljobs.label": schema.LABEL, "mljobs.features": ",".join(schema.FEATURES)}


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
    return df, raw_columns, quarantine, excluded, list(schema.OUTPUT_TYPES), airline.output_columns(df), _AIRLINE_META


def _byod(spark: SparkSession, cfg: IngestConfig, files: list[InputFile]):
    df, columns, out_cols, meta = _byod_frame(spark, cfg, files)
    raw_columns = [c for c in df.columns if c not in (REASON, RAW)]
    return df, raw_columns, byod_quarantine_reason(cfg.partition_by), byod_exclusion_reason(cfg.label), columns, out_cols, meta


def byod_quarantine_reason(partition_by: list[str]) -> Column:
    """The parse failure, else the first partition column without a value."""
    quarantine = F.col(REASON)
    for col in partition_by:
        quarantine = F.coalesce(quarantine, F.when(F.col(col).isNull(), F.lit(f"missing value in {col}")))
    return quarantine


def byod_exclusion_reason(label: str) -> Column:
    return F.when(F.col(label).isNull(), F.lit("missing_label"))


def _require(missing: list[str], paths: list[str]) -> None:
    if missing:
        shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
        raise InputError(f"missing required column(s) {', '.join(missing)} in {shown}")


_NUMERIC_WIDEN: dict[type, DataType] = {
    ByteType: LongType(), ShortType: LongType(), IntegerType: LongType(), LongType: LongType(),
    FloatType: DoubleType(), DoubleType: DoubleType(), DecimalType: DoubleType(),
}


def infer_types(spark: SparkSession, paths: list[str], delimiter: str, rename: dict[str, str],
                multiline: bool = False) -> dict[str, DataType]:
    """Types inferred once from a sample of the first files (integers widened to bigint,
    decimals to double); afterwards they are enforced and misfits quarantined."""
    sample = paths[:3]
    inferred = (
        spark.read.option("header", True).option("inferSchema", True).option("sep", delimiter)
        .option("samplingRatio", 0.2).options(**csv_options(multiline)).csv(sample).schema
    )
    return {rename.get(f.name, f.name): _NUMERIC_WIDEN.get(type(f.dataType), f.dataType) for f in inferred}


def _byod_frame(spark, cfg: IngestConfig, files: list[InputFile]):
    df, columns_in = _byod_read(spark, cfg, files)
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


def _byod_read(spark, cfg: IngestConfig, files: list[InputFile]) -> tuple[DataFrame, list[str]]:
    """The input with SQL-safe column names, typed like the existing table (else inferred)."""
    existing = _table_types(spark, cfg.full_name)
    if files[0].format == "csv":
        groups = csv_headers(spark, files, cfg.delimiter)
        rename = {h: sanitize_name(h) for header in groups for h in header}
        # Free text (quoted line breaks) is allowed in byod files, whatever they hold.
        types = existing or infer_types(spark, next(iter(groups.values())), cfg.delimiter, rename, multiline=True)
        df = read_csv(spark, groups, types, cfg.delimiter, rename, multiline=True)
        return df, [c for c in df.columns if c not in (REASON, RAW)]
    df = read_parquet(spark, files, existing or {})
    columns_in = [c for c in df.columns if c not in (REASON, RAW)]
    bad = [c for c in columns_in if sanitize_name(c) != c]
    if bad:
        df = df.select(*[F.col(f"`{c}`").alias(sanitize_name(c)) if c in bad else F.col(c) for c in df.columns])
        columns_in = [sanitize_name(c) for c in columns_in]
    return df, columns_in


def _table_types(spark: SparkSession, full_name: str) -> dict[str, DataType]:
    if not spark.catalog.tableExists(full_name):
        return {}
    return {f.name: f.dataType for f in spark.table(full_name).schema}
