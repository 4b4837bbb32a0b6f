"""Publishing staged partitions into a Hive table without rewriting them.

The ingest writes every row once, as Parquet under a staging directory next to the
table, laid out by status and partition (``_status=accepted/Year=2013/Month=1``). After
the counts pass the checks, each accepted partition directory is moved into the table's
location, replacing the old one (the same rename-based commit Spark's dynamic partition
overwrite does, minus a second full write), and registered in the metastore.
"""
from __future__ import annotations

import datetime as dt

from pyspark.sql import SparkSession


def _fs(spark: SparkSession, path: str):
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    return hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), hpath


def remove_path(spark: SparkSession, path: str) -> None:
    fs, hpath = _fs(spark, path)
    if fs.exists(hpath):
        fs.delete(hpath, True)


def path_exists(spark: SparkSession, path: str) -> bool:
    fs, hpath = _fs(spark, path)
    return bool(fs.exists(hpath))


def _describe_location(rows) -> str:
    for r in rows:
        if str(r[0]).strip().lower() == "location":
            return str(r[1]).strip()
    raise RuntimeError("no Location in the metastore description")


def database_location(spark: SparkSession, db: str) -> str:
    return _describe_location(spark.sql(f"DESCRIBE DATABASE `{db}`").collect())


def table_location(spark: SparkSession, full_name: str) -> str:
    return _describe_location(spark.sql(f"DESCRIBE TABLE EXTENDED {full_name}").collect())


def sql_literal(value) -> str:
    """A partition value as a SQL literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP'{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE'{value.isoformat()}'"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def publish_partitions(
    spark: SparkSession, full_name: str, staged_dir: str, partitions: list[dict], trash_dir: str
) -> None:
    """Move each staged partition directory into the table, replacing the old one, then
    register the new partitions. ``partitions`` holds the values of each partition and the
    relative directory Spark wrote it to (``Year=2013/Month=1``)."""
    location = table_location(spark, full_name).rstrip("/")
    jvm = spark.sparkContext._jvm
    for part in partitions:
        rel = part["dir"]
        fs, src = _fs(spark, f"{staged_dir}/{rel}")
        dst = jvm.org.apache.hadoop.fs.Path(f"{location}/{rel}")
        if fs.exists(dst):
            old = jvm.org.apache.hadoop.fs.Path(f"{trash_dir}/{rel}")
            fs.mkdirs(old.getParent())
            if not fs.rename(dst, old):
                raise RuntimeError(f"could not move the old partition {dst} aside")
        fs.mkdirs(dst.getParent())
        if not fs.rename(src, dst):
            raise RuntimeError(f"could not move the staged partition {src} to {dst}")
    specs = " ".join(
        "PARTITION (" + ", ".join(f"`{k}` = {sql_literal(v)}" for k, v in part["values"].items()) + ")"
        for part in partitions
    )
    if specs:
        spark.sql(f"ALTER TABLE {full_name} ADD IF NOT EXISTS {specs}")
    spark.sql(f"REFRESH TABLE {full_name}")
