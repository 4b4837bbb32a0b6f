"""Writing result tables so that a re-run replaces them and a failed run leaves the
previous ones in place: each table is written in full under a new name and swapped in
by rename (the pattern of ``ingest.pipeline._replace_unpartitioned``)."""
from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from mljobs.tables import NEW, OLD, column_ddl, quoted, swap_in, tblproperties_clause


def staging_path(spark: SparkSession, run_id: str, name: str) -> str:
    warehouse = spark.conf.get("spark.sql.warehouse.dir")
    return f"{warehouse.rstrip('/')}/_mljobs_staging/{run_id}/{name}"


def replace_table(spark: SparkSession, db: str, name: str, df: DataFrame, props: dict[str, str] | None = None,
                  comment: str | None = None) -> str:
    """Write ``df`` as ``db.name`` (Parquet, unpartitioned), replacing any previous table
    only once the new one is complete. Returns the full name."""
    new, old = quoted(db, name + NEW), quoted(db, name + OLD)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {new.split('.')[0]}")
    spark.sql(f"DROP TABLE IF EXISTS {new}")
    spark.sql(f"DROP TABLE IF EXISTS {old}")
    clauses = ""
    if comment:
        clauses += " COMMENT '" + comment.replace("\\", "\\\\").replace("'", "\\'") + "'"
    clauses += tblproperties_clause(props)
    spark.sql(f"CREATE TABLE {new} ({column_ddl(df)}) USING parquet{clauses}")
    df.write.insertInto(new.replace("`", ""), overwrite=True)
    swap_in(spark, db, name)
    return f"{db}.{name}"
