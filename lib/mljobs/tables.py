"""Hive tables, written so that a job replaces them only once their new version is complete.

One convention for every job:

- **Staging folder**: files a run writes before they are published live under
  ``<database location>/_mljobs_staging/<run_id>/`` (``staging_path``), on the file system
  of the tables they become (a rename cannot cross file systems), removed at the end.
- **Unpartitioned tables** (and sets of tables that must change together) are written in
  full as ``<name>__mljobs_new`` (``stage``) and swapped in by rename (``commit``); a run
  that fails before the commit drops its staged tables (``discard``) and leaves the old ones.
  ``replace_table`` is the three in one for a single table.
- **Files already written** (Parquet a job staged with the table's columns, and maybe more,
  which the table does not declare) become ``<name>__mljobs_new`` by moving them into its
  location (``stage_files``), not by reading and writing every byte again; ``commit`` as above.
- **Partitioned tables** are published partition by partition: each staged partition
  directory is moved into the table's location, replacing the old one (the rename-based
  commit of Spark's dynamic partition overwrite, minus a second full write), then registered
  (``publish_partitions``).
"""
from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, SparkSession

from mljobs import fs
from mljobs.config import parse_table_name, validate_identifier
from mljobs.errors import InputError, error_text

NEW, OLD = "__mljobs_new", "__mljobs_old"
STAGING = "_mljobs_staging"


def quoted(db: str, name: str) -> str:
    return f"`{validate_identifier(db, 'database name')}`.`{validate_identifier(name, 'table name')}`"


def column_ddl(df) -> str:
    """The column list of CREATE TABLE for a DataFrame's schema."""
    return ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in df.schema)


def _escaped(value) -> str:
    return str(value).replace("\\", "\\\\").replace("'", "\\'")


def tblproperties_clause(props: dict[str, str] | None) -> str:
    """' TBLPROPERTIES (...)' with the values escaped, or '' when there are none."""
    if not props:
        return ""
    body = ", ".join(f"'{k}'='{_escaped(v)}'" for k, v in sorted(props.items()))
    return f" TBLPROPERTIES ({body})"


def staging_path(spark: SparkSession, db: str, run_id: str, name: str = "") -> str:
    """<location of db>/_mljobs_staging/<run_id>[/<name>]: where a run stages its files
    (the database is created if needed)."""
    spark.sql(f"CREATE DATABASE IF NOT EXISTS `{validate_identifier(db, 'database name')}`")
    root = database_location(spark, db).rstrip("/")
    return "/".join(p for p in (root, STAGING, run_id, name) if p)


def stage(spark: SparkSession, db: str, name: str, df: DataFrame, props: dict[str, str] | None = None,
          comment: str | None = None, partition_by: list[str] = (), rows: bool = True) -> str:
    """Write ``df`` in full as ``db.<name>__mljobs_new`` (Parquet, partitioned by the
    ``partition_by`` columns, which move to the end); returns that table's name. ``rows``
    False: the caller knows ``df`` is empty; the table is created without a write job."""
    new = quoted(db, name + NEW)
    if partition_by:
        df = df.select(*[f"`{c}`" for c in df.columns if c not in partition_by], *[f"`{c}`" for c in partition_by])
    spark.sql(f"CREATE DATABASE IF NOT EXISTS `{db}`")
    spark.sql(f"DROP TABLE IF EXISTS {new}")
    spark.sql(f"DROP TABLE IF EXISTS {quoted(db, name + OLD)}")
    clauses = f" COMMENT '{_escaped(comment)}'" if comment else ""
    if partition_by:
        clauses += " PARTITIONED BY (" + ", ".join(f"`{c}`" for c in partition_by) + ")"
    spark.sql(f"CREATE TABLE {new} ({column_ddl(df)}) USING parquet{clauses}{tblproperties_clause(props)}")
    if rows:
        df.write.insertInto(f"{db}.{name}{NEW}", overwrite=True)
    return f"{db}.{name}{NEW}"


def stage_files(spark: SparkSession, db: str, name: str, columns: str, files_dir: str,
                props: dict[str, str] | None = None, comment: str | None = None) -> str:
    """Make the Parquet files under ``files_dir`` (same file system as the database) the whole
    content of ``db.<name>__mljobs_new`` (``columns``: its column DDL, each a column of the
    files) by moving them into the new table's location; returns that table's name."""
    new = quoted(db, name + NEW)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS `{db}`")
    spark.sql(f"DROP TABLE IF EXISTS {new}")
    spark.sql(f"DROP TABLE IF EXISTS {quoted(db, name + OLD)}")
    clauses = f" COMMENT '{_escaped(comment)}'" if comment else ""
    spark.sql(f"CREATE TABLE {new} ({columns}) USING parquet{clauses}{tblproperties_clause(props)}")
    location = table_location(spark, f"{db}.{name}{NEW}").rstrip("/")
    for _, st in fs.list_files(spark, files_dir):
        fs.move(spark, st.getPath().toString(), f"{location}/{st.getPath().getName()}")
    spark.sql(f"REFRESH TABLE {new}")
    return f"{db}.{name}{NEW}"


def stage_all(spark: SparkSession, db: str, frames: dict[str, DataFrame], props: dict[str, str] | None = None,
              empty: tuple[str, ...] = ()) -> None:
    """``stage`` every ``name -> DataFrame`` of ``frames`` (those named in ``empty``: known to
    have no rows); when one fails, every staged one is dropped and the error raised.
    ``commit`` then swaps them in together. (Staging them in parallel threads measured no
    faster on 2 cores: the metastore calls take turns.)"""
    try:
        for name, df in frames.items():
            stage(spark, db, name, df, props, rows=name not in empty)
    except BaseException:
        discard(spark, db, list(frames))
        raise


def swap_in(spark: SparkSession, db: str, name: str) -> str:
    """Replace db.name by the complete db.<name>__mljobs_new (the old table is dropped)."""
    full, new, old = quoted(db, name), quoted(db, name + NEW), quoted(db, name + OLD)
    spark.sql(f"DROP TABLE IF EXISTS {old}")
    if spark.catalog.tableExists(f"{db}.{name}"):
        spark.sql(f"ALTER TABLE {full} RENAME TO {old}")
        spark.sql(f"ALTER TABLE {new} RENAME TO {full}")
        spark.sql(f"DROP TABLE {old}")
    else:
        spark.sql(f"ALTER TABLE {new} RENAME TO {full}")
    return f"{db}.{name}"


def commit(spark: SparkSession, db: str, names: list[str]) -> list[str]:
    """Swap every staged table in (old ones dropped); returns the final names."""
    return [swap_in(spark, db, name) for name in names]


def stage_around(spark: SparkSession, db: str, name: str, df: DataFrame, props: dict[str, str] | None,
                 comment: str | None, write):
    """Stage ``df`` as db.name, run ``write()`` (e.g. save the model the table describes), then
    swap the table in; when either fails, the staged table is dropped and the old one stays.
    Returns what ``write()`` returned."""
    stage(spark, db, name, df, props, comment=comment)
    try:
        out = write()
        commit(spark, db, [name])
    except BaseException:
        discard(spark, db, [name])
        raise
    return out


def discard(spark: SparkSession, db: str, names: list[str]) -> None:
    """Drop the staged tables of a failed run (best effort: the run is failing anyway)."""
    for name in names:
        try:
            spark.sql(f"DROP TABLE IF EXISTS {quoted(db, name + NEW)}")
        except Exception:  # noqa: BLE001 - keep the original error
            pass


def replace_table(spark: SparkSession, db: str, name: str, df: DataFrame, props: dict[str, str] | None = None,
                  comment: str | None = None) -> str:
    """Write ``df`` as ``db.name`` (Parquet, unpartitioned), replacing any previous table
    only once the new one is complete. Returns the full name."""
    try:
        stage(spark, db, name, df, props, comment)
    except BaseException:
        discard(spark, db, [name])
        raise
    return swap_in(spark, db, name)


def read_table(spark: SparkSession, table: str, where: str | None = None) -> DataFrame:
    """The table DB.NAME, filtered by a --where clause analysed now: a missing table or a bad
    clause is a clear error before any work."""
    db, name = parse_table_name(table)
    full = f"{db}.{name}"
    if not spark.catalog.tableExists(full):
        raise InputError(f"table {full} does not exist (ingest it first: ./spark-submit.sh ingest ...)")
    df = spark.table(full)
    if where:
        try:
            df = df.where(where)
            df.schema
        except Exception as exc:  # ParseException / AnalysisException: Spark's message is the useful part
            raise InputError(f"--where {where!r} is not valid SQL for {full}: {error_text(exc)}") from None
    return df


def partition_columns(spark: SparkSession, full_name: str) -> list[str]:
    """The table's partition columns, in order ([] when it has none)."""
    return [c.name for c in spark.catalog.listColumns(full_name) if c.isPartition]


def mljobs_properties(spark: SparkSession, full_name: str) -> dict[str, str]:
    """The table's ``mljobs.*`` TBLPROPERTIES (label, features ...)."""
    rows = spark.sql(f"SHOW TBLPROPERTIES {full_name}").collect()
    return {r.key: r.value for r in rows if r.key.startswith("mljobs.")}


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
    return f"'{_escaped(value)}'"


def publish_partitions(
    spark: SparkSession, full_name: str, staged_dir: str, partitions: list[dict], trash_dir: str
) -> None:
    """Move each staged partition directory into the table, replacing the old one, then
    register the new partitions. ``partitions`` holds the values of each partition and the
    relative directory Spark wrote it to (``Year=2013/Month=1``)."""
    location = table_location(spark, full_name).rstrip("/")
    for part in partitions:
        rel = part["dir"]
        if fs.exists(spark, f"{location}/{rel}"):
            fs.move(spark, f"{location}/{rel}", f"{trash_dir}/{rel}")
        fs.move(spark, f"{staged_dir}/{rel}", f"{location}/{rel}")
    specs = " ".join(
        "PARTITION (" + ", ".join(f"`{k}` = {sql_literal(v)}" for k, v in part["values"].items()) + ")"
        for part in partitions
    )
    if specs:
        spark.sql(f"ALTER TABLE {full_name} ADD IF NOT EXISTS {specs}")
    spark.sql(f"REFRESH TABLE {full_name}")
