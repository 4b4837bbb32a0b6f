"""Hive table helpers the jobs share: quoting, TBLPROPERTIES, and the swap-in by rename that
lets a job replace a table only once its new version is complete."""
from __future__ import annotations

from pyspark.sql import SparkSession

from mljobs.config import validate_identifier

NEW, OLD = "__mljobs_new", "__mljobs_old"


def quoted(db: str, name: str) -> str:
    return f"`{validate_identifier(db, 'database name')}`.`{validate_identifier(name, 'table name')}`"


def column_ddl(df) -> str:
    """The column list of CREATE TABLE for a DataFrame's schema."""
    return ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in df.schema)


def tblproperties_clause(props: dict[str, str] | None) -> str:
    """' TBLPROPERTIES (...)' with the values escaped, or '' when there are none."""
    if not props:
        return ""
    body = ", ".join(f"'{k}'='" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'"
                     for k, v in sorted(props.items()))
    return f" TBLPROPERTIES ({body})"


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
