"""`<db>.tuning_trials`: one row per trial, a projection of the Optuna study, queryable from SQL.

Partitioned by study; each write replaces the study's partition only (dynamic partition
overwrite), so studies never clobber each other and a rerun never duplicates rows.
Every hyperparameter is a column of its own (added with ALTER TABLE when a study brings
a new one) and all of them are also in `params_json`.
"""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone

from pyspark.errors import AnalysisException
from pyspark.sql import types as T

from mljobs.config import validate_identifier
from mljobs.tables import column_ddl, quoted, sql_literal
from mljobs.studies.study import trial_state

BASE_COLUMNS = [
    ("trial_number", "bigint"), ("family", "string"), ("strategy", "string"), ("mode", "string"),
    ("state", "string"), ("metric", "string"), ("direction", "string"), ("value", "double"), ("value_std", "double"),
    ("fold_values", "array<double>"), ("folds_done", "int"), ("params_json", "string"), ("error", "string"),
    ("started_at", "timestamp"), ("finished_at", "timestamp"), ("seconds", "double"), ("rows", "bigint"),
    ("source_table", "string"), ("run_id", "string"),
]
_SQL_TO_SPARK = {"bigint": T.LongType(), "double": T.DoubleType(), "string": T.StringType(), "int": T.IntegerType(),
                 "boolean": T.BooleanType(), "timestamp": T.TimestampType(), "array<double>": T.ArrayType(T.DoubleType())}


def trial_rows(study, cfg, mode: str, rows: int, run_id: str) -> list[dict]:
    out = []
    for t in study.get_trials(deepcopy=False):
        state = trial_state(t)
        if state == "WAITING":
            continue
        folds = [float(v) for v in t.user_attrs.get("fold_values", [])]
        value = t.value if t.value is not None else (sum(folds) / len(folds) if folds else None)
        std = _std(folds)
        start = t.datetime_start
        end = t.datetime_complete
        out.append({
            "trial_number": t.number, "family": cfg.family, "strategy": cfg.strategy,
            "mode": t.user_attrs.get("mode", mode), "state": state, "metric": cfg.metric, "direction": cfg.direction,
            "value": value, "value_std": std, "fold_values": folds, "folds_done": len(folds),
            "params_json": json.dumps(t.params, sort_keys=True), "error": t.user_attrs.get("error"),
            "started_at": _utc(start), "finished_at": _utc(end),
            "seconds": (end - start).total_seconds() if (start and end) else None,
            "rows": t.user_attrs.get("rows", rows), "source_table": cfg.table, "run_id": t.user_attrs.get("run_id", run_id),
            **{f"p_{k}": v for k, v in t.params.items()},
        })
    return out


def _std(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def _utc(dt):
    if dt is None:
        return None
    if dt.tzinfo is None:  # Optuna stores naive local time
        dt = dt.astimezone()
    return dt.astimezone(timezone.utc)  # aware: Spark stores the instant whatever the local zone


def param_columns(space) -> list[tuple[str, str]]:
    return [(f"p_{p.name}", p.sql_type) for p in space.tuned]


def trials_schema(columns: list[tuple[str, str]]) -> T.StructType:
    """The Spark schema of (name, SQL type) columns, every one nullable."""
    return T.StructType([T.StructField(n, _SQL_TO_SPARK[t], True) for n, t in columns])


def ensure_trials_table(spark, db: str, columns: list[tuple[str, str]]) -> list[T.StructField]:
    """Create <db>.tuning_trials (partitioned by study) or add the columns it lacks; its fields."""
    table = quoted(db, "tuning_trials")
    spark.sql(f"CREATE DATABASE IF NOT EXISTS `{validate_identifier(db, 'database name')}`")
    # IF NOT EXISTS: another study (another process) may create it at the same moment
    ddl = column_ddl(spark.createDataFrame([], trials_schema(columns + [("study", "string")])))
    spark.sql(f"CREATE TABLE IF NOT EXISTS {table} ({ddl}) USING parquet PARTITIONED BY (study)")
    new = _missing(spark, db, columns)
    if new:
        try:
            spark.sql(f"ALTER TABLE {table} ADD COLUMNS ({column_ddl(spark.createDataFrame([], trials_schema(new)))})")
        except AnalysisException:
            spark.catalog.refreshTable(f"{db}.tuning_trials")
            if _missing(spark, db, columns):  # not a study that added the same columns just now
                raise
    return list(spark.table(f"{db}.tuning_trials").schema.fields)


def _missing(spark, db: str, columns: list[tuple[str, str]]) -> list[tuple[str, str]]:
    existing = {f.name for f in spark.table(f"{db}.tuning_trials").schema.fields}
    return [(n, t) for n, t in columns if n not in existing]


def trial_records(rows: list[dict], fields: list[T.StructField], study: str) -> list[tuple]:
    """The rows as tuples in the table's column order, each value of its column's type."""
    return [tuple(_coerce({**r, "study": study}.get(f.name), f.dataType) for f in fields) for r in rows]


def write_trials(spark, cfg, rows: list[dict]) -> str:
    """Replace the study's partition of <db>.tuning_trials with these rows."""
    db = cfg.db
    table = f"{db}.tuning_trials"
    fields = ensure_trials_table(spark, db, BASE_COLUMNS + param_columns(cfg.space))
    records = trial_records(rows, fields, cfg.study)
    if not records:  # an empty study still replaces its (old) partition: nothing left of it
        spark.sql(f"ALTER TABLE {quoted(db, 'tuning_trials')} DROP IF EXISTS PARTITION (study = {sql_literal(cfg.study)})")
        return table
    schema = T.StructType([T.StructField(f.name, f.dataType, True) for f in fields])
    # Dynamic partition overwrite (the session's default): only this study's partition is
    # replaced, by Spark's stage-then-rename commit protocol.
    spark.createDataFrame(records, schema).write.insertInto(table, overwrite=True)
    return table


def _coerce(v, dtype):
    if v is None:
        return None
    if isinstance(dtype, T.LongType):
        return int(v) if not isinstance(v, bool) else int(v)
    if isinstance(dtype, T.DoubleType):
        return float(v)
    if isinstance(dtype, T.StringType):
        return v if isinstance(v, str) else json.dumps(v)
    if isinstance(dtype, T.BooleanType):
        return bool(v)
    if isinstance(dtype, T.IntegerType):
        return int(v)
    if isinstance(dtype, T.TimestampType) and isinstance(v, datetime):
        return v
    return v
