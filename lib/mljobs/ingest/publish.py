"""Put the checked rows in place: create or check the table, publish partitions (or swap
in a new unpartitioned table), and replace the input files' quarantined rows."""
from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mljobs import tables
from mljobs.errors import MljobsError
from mljobs.ingest.config import IngestConfig
from mljobs.ingest.stage import STATUS
from mljobs.io import InputFile
from mljobs.readers import RAW, REASON, SOURCE

QUARANTINE_COLUMNS = "source_file string, reason string, raw_line string, run_id string, ingested_at timestamp, source_id bigint"


def read_staged(spark: SparkSession, staging: str, staged_schema, status: str) -> DataFrame:
    """The staged rows of one status. Read back with the staged schema: partition values
    must keep their types, not be re-inferred from directory names ("01" would become 1)."""
    return spark.read.schema(staged_schema).parquet(f"{staging}/{STATUS}={status}")


def create_table(spark: SparkSession, cfg: IngestConfig, accepted: DataFrame, meta: dict) -> None:
    parts = cfg.partition_by
    partition_clause = f" PARTITIONED BY ({', '.join(f'`{p}`' for p in parts)})" if parts else ""
    spark.sql(f"CREATE TABLE {cfg.full_name} ({tables.column_ddl(accepted)}) USING parquet{partition_clause}"
              + tables.tblproperties_clause(meta))


def check_same_schema(spark: SparkSession, cfg: IngestConfig, accepted: DataFrame) -> None:
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


def replace_unpartitioned(spark: SparkSession, cfg: IngestConfig, accepted: DataFrame, progress) -> None:
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


def publish(spark: SparkSession, cfg: IngestConfig, accepted: DataFrame, staging: str, partitions: list[dict], progress) -> None:
    """The accepted rows into the table: partition by partition, or as a new table."""
    if cfg.partition_by:
        progress(f"publishing {len(partitions)} partition(s) into {cfg.full_name}")
        tables.publish_partitions(spark, cfg.full_name, f"{staging}/{STATUS}=accepted", partitions, f"{staging}/_replaced")
    else:
        replace_unpartitioned(spark, cfg, accepted, progress)
