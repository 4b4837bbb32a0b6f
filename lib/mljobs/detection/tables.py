"""Writing result tables so that a re-run replaces them and a failed run leaves the
previous ones in place: each table is written in full under a new name and swapped in
by rename (the pattern of ``ingest.pipeline._replace_unpartitioned``)."""
from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from mljobs.config import validate_identifier


def staging_path(spark: SparkSession, run_id: str, name: str) -> str:
    warehouse = spark.conf.get("spark.sql.warehouse.dir")
    return f"{warehouse.rstrip('/')}/_mljobs_staging/{run_id}/{name}"


def remove_path(spark: SparkSession, path: str) -> None:
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if fs.exists(hpath):
        fs.delete(hpath, True)


def ddl(df: DataFrame) -> str:
    return ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in df.schema)


def replace_table(spark: SparkSession, db: str, name: str, df: DataFrame, props: dict[str, str] | None = None,
                  comment: str | None = None) -> str:
    """Write ``df`` as ``db.name`` (Parquet, unpartitioned), replacing any previous table
    only once the new one is complete. Returns the full name."""
    validate_identifier(db, "database name")
    validate_identifier(name, "table name")
    full = f"`{db}`.`{name}`"
    new, old = f"`{db}`.`{name}__mljobs_new`", f"`{db}`.`{name}__mljobs_old`"
    spark.sql(f"CREATE DATABASE IF NOT EXISTS `{db}`")
    spark.sql(f"DROP TABLE IF EXISTS {new}")
    spark.sql(f"DROP TABLE IF EXISTS {old}")
    clauses = ""
    if comment:
        clauses += " COMMENT '" + comment.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if props:
        body = ", ".join(
            f"'{k}'='" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'" for k, v in sorted(props.items())
        )
        clauses += f" TBLPROPERTIES ({body})"
    spark.sql(f"CREATE TABLE {new} ({ddl(df)}) USING parquet{clauses}")
    df.write.insertInto(new.replace("`", ""), overwrite=True)
    if spark.catalog.tableExists(f"{db}.{name}"):
        spark.sql(f"ALTER TABLE {full} RENAME TO {old}")
        spark.sql(f"ALTER TABLE {new} RENAME TO {full}")
        spark.sql(f"DROP TABLE {old}")
    else:
        spark.sql(f"ALTER TABLE {new} RENAME TO {full}")
    return f"{db}.{name}"
