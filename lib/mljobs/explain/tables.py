"""Output tables, written in two phases so that a run replaces all of them or none.

Each table is first written in full as ``<name>__mljobs_new``; only when every table
of the run is written (and the additivity check passed) are they swapped in by rename
(``commit``). A run that fails before the commit leaves the previous tables untouched
and drops its half-written ones.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from mljobs.tables import NEW, column_ddl, quoted, swap_in, tblproperties_clause


def stage(spark: SparkSession, db: str, name: str, df: DataFrame, props: dict[str, str] | None = None) -> str:
    """Write ``df`` as ``db.<name>__mljobs_new`` (Parquet); returns that table's name."""
    new = quoted(db, name + NEW)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {new.split('.')[0]}")
    spark.sql(f"DROP TABLE IF EXISTS {new}")
    spark.sql(f"CREATE TABLE {new} ({column_ddl(df)}) USING parquet{tblproperties_clause(props)}")
    df.write.insertInto(f"{db}.{name}{NEW}", overwrite=True)
    return f"{db}.{name}{NEW}"


def commit(spark: SparkSession, db: str, names: list[str]) -> list[str]:
    """Swap every staged table in (old ones dropped); returns the final names."""
    return [swap_in(spark, db, name) for name in names]


def discard(spark: SparkSession, db: str, names: list[str]) -> None:
    """Drop the staged tables of a failed run (best effort: the run is failing anyway)."""
    for name in names:
        try:
            spark.sql(f"DROP TABLE IF EXISTS {quoted(db, name + NEW)}")
        except Exception:  # noqa: BLE001 - keep the original error
            pass
