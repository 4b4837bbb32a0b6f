"""The sql job: the query's first --limit rows as a printed table, then the summary."""
from __future__ import annotations

from pyspark.sql import SparkSession

from mljobs.gpu import Known, UNSUPPORTED_CLASS, DRIVER_ROWS
from mljobs.sql.config import SqlConfig

NAME = "sql"
CONFIG = SqlConfig
EMR_STEP = None
GPU_FALLBACKS = [
    Known("CollectLimitExec", "disabled by default", "sql/job.py: take(--limit + 1)",
          "the plugin leaves a collect with a limit on the CPU by default (its own note: on the GPU it can be "
          "slower); it only hands the first --limit + 1 rows of the GPU result to the driver"),
    Known("RDDScanExec", UNSUPPORTED_CLASS, "sql/job.py: the rows shown",
          "the query's first --limit rows, collected once and turned back into a DataFrame to print them; "
          + DRIVER_ROWS),
]


def run(spark: SparkSession, cfg: SqlConfig, progress) -> dict:
    df = spark.sql(cfg.query)
    rows = df.take(cfg.limit + 1)
    shown = spark.createDataFrame(rows[: cfg.limit], df.schema) if rows else df.limit(0)
    # The table, then (from run_job) the JSON summary as the last line, like every job.
    print(shown._jdf.showString(cfg.limit, cfg.truncate, False), end="", flush=True)
    return {"rows_shown": min(len(rows), cfg.limit), "more": len(rows) > cfg.limit, "columns": df.columns}
