"""The ingest job: files -> staged rows (accepted / quarantined / excluded) -> Hive.

Everything is staged first (one pass over the input, written as Parquet under the
warehouse), counted, and checked; only then are the tables touched. Partitioned tables
are replaced partition by partition (mljobs.tables.publish_partitions: the previous
partition stays until the new one is complete), an unpartitioned table is swapped in
whole, so a failed run leaves the previous table in place and a re-run replaces, never
duplicates.
"""
from __future__ import annotations

import time
import uuid

from pyspark.sql import DataFrame, SparkSession

from mljobs import fs, tables
from mljobs.emr import EmrStep
from mljobs.ingest.checks import check_counts, count_staged, staged_partitions
from mljobs.ingest.config import IngestConfig  # noqa: F401  (also imported from here by the notebook)
from mljobs.ingest.publish import check_same_schema, create_table, publish, read_staged, write_quarantine
from mljobs.ingest.stage import STATUS, choose_reader, stage_frame
from mljobs.io import InputFile, list_input_files
from mljobs.session import StageProgress, env_of


def run(spark: SparkSession, cfg: IngestConfig, progress=print) -> dict:
    """Ingest cfg.inputs into cfg.table; returns the job summary."""
    t0 = time.monotonic()
    files = list_inputs(spark, cfg, progress)
    reader = choose_reader(spark, cfg, files)
    progress(f"CSV parsed by the {reader} reader" if files[0].format == "csv" else "reading Parquet")
    staged, columns, meta, write = stage_frame(spark, cfg, files, reader)
    existed = check_target(spark, cfg, staged.select(*columns))
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    staging = tables.staging_path(spark, cfg.db, f"{cfg.name}-{run_id}")
    created = False
    try:
        counts = write_staging(spark, cfg, staged.schema, write, staging, progress)
        summary = check_counts(counts, files, cfg.max_bad_fraction)
        partitions = staged_partitions(spark, staging, cfg.partition_by, counts)
        report_counts(summary, progress)
        accepted = read_staged(spark, staging, staged.drop(STATUS).schema, "accepted").select(*columns)
        if not existed:
            create_table(spark, cfg, accepted, meta)
            created = True
        publish(spark, cfg, accepted, staging, partitions, progress)
        quarantined = read_staged(spark, staging, staged.drop(STATUS).schema, "quarantined") if summary["rows_quarantined"] else None
        write_quarantine(spark, cfg, quarantined, files, run_id)
    except BaseException:
        if created:
            spark.sql(f"DROP TABLE IF EXISTS {cfg.full_name}")
        raise
    finally:
        fs.remove(spark, staging)
    summary.update(
        table=cfg.full_name,
        quarantine_table=cfg.quarantine_name,
        mode=cfg.mode,
        reader=reader,
        files=len(files),
        partitions_written=len(partitions) if cfg.partition_by else 1,
        run_id=run_id,
        seconds=round(time.monotonic() - t0, 3),
    )
    return summary


def list_inputs(spark: SparkSession, cfg: IngestConfig, progress) -> list[InputFile]:
    """The input files (fails clearly on anything missing or empty)."""
    env = env_of(spark)
    files = list_input_files(spark, cfg.inputs, cfg.format, env)
    progress(f"{len(files)} input file(s), {sum(f.size for f in files) / 1e6:.1f} MB, format {files[0].format}")
    return files


def check_target(spark: SparkSession, cfg: IngestConfig, rows: DataFrame) -> bool:
    """Whether the table exists; if it does, it must take these rows as they are."""
    spark.sql(f"CREATE DATABASE IF NOT EXISTS `{cfg.db}`")
    existed = spark.catalog.tableExists(cfg.full_name)
    if existed:
        check_same_schema(spark, cfg, rows)
    return existed


def write_staging(spark: SparkSession, cfg: IngestConfig, staged_schema, write, staging: str, progress) -> list:
    """One pass over the input, written as Parquet by status and partition; its counts."""
    progress(f"parsing and staging rows under {staging}")
    with StageProgress(spark, progress):
        counts = write(staging)
    return counts if counts is not None else count_staged(spark, staging, staged_schema, cfg.partition_by)


def report_counts(summary: dict, progress) -> None:
    progress(
        f"read {summary['rows_read']:,} rows: {summary['rows_accepted']:,} accepted, "
        f"{summary['rows_quarantined']:,} quarantined, {sum(summary['rows_excluded'].values()):,} excluded"
    )


run_ingest = run  # the name the notebook, bench/ingest.py and the tests use

# ---- what the rest of the system knows about this job (see mljobs.registry)
NAME = "ingest"
CONFIG = IngestConfig
EMR_STEP = EmrStep(needs=("input", "table"), args=lambda p: ["--input", *p.input, "--table", p.table],
                   label=lambda p: p.table)
GPU_FALLBACKS: list = []  # none of its own (tests/test_gpu_readiness.py)
