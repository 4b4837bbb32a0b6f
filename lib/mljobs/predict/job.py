"""The predict job body: a tune model + a Hive table -> <db>.predictions (+ the label's metrics).

1. ``load_model``, ``select``: checks that need no heavy work — the artifact (sha256), the
   table, the --where clause (analysed by Spark), the feature columns and their types, --id-col
   and --keep; with the model's label in the table, one cheap pass checks it is 0/1.
2. ``stage_predictions``: rows scored in Spark tasks (``mljobs.models.scoring``: Arrow batches,
   the booster loaded once per Python worker, ``inplace_predict``), written once as the staged
   table, partitioned like the source table.
3. ``label_metrics`` from the staged table, then the table is swapped in (``tables.commit``);
   any failure before that drops the staged table and leaves the previous one.
"""
from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mljobs import tables
from mljobs.config import parse_table_name
from mljobs.device import device_for
from mljobs.emr import EmrStep
from mljobs.errors import InputError
from mljobs.models import scoring
from mljobs.models.artifact import ModelArtifact, load_artifact
from mljobs.predict.config import RESERVED, PredictConfig
from mljobs.session import StageProgress, arrow_batch

DEFAULT_ID = "row_id"


@dataclass(frozen=True)
class Selection:
    """The rows to score and how they leave: passthrough columns, label, partitioning."""

    df: DataFrame
    id_col: str
    passthrough: list[str]  # id, kept columns, label (when in the table), partition columns
    label: str | None
    partition_by: list[str]


def load_model(cfg: PredictConfig) -> ModelArtifact:
    art = load_artifact(cfg.model)
    if art.model_format != "xgboost-json":
        raise InputError(f"--model {cfg.model}: a {art.model_format} model; predict scores tune's xgboost models")
    return art


def select(spark: SparkSession, cfg: PredictConfig, art: ModelArtifact) -> Selection:
    """The selected rows with an id column; every named column checked before any work."""
    df = tables.read_table(spark, cfg.table, cfg.where)
    scoring.check_feature_columns(df, art)
    by_lower = {c.lower(): c for c in df.columns}
    absent = [c for c in ([cfg.id_col] if cfg.id_col else []) + cfg.keep if c.lower() not in by_lower]
    if absent:
        raise InputError(f"--id-col/--keep: {cfg.table} has no column {', '.join(absent)}")
    if cfg.id_col:
        id_col = by_lower[cfg.id_col.lower()]
    else:  # unique within the run, stable across runs on the same files (as explain's row_id)
        id_col = DEFAULT_ID
        df = df.withColumn(DEFAULT_ID, F.monotonically_increasing_id())
    label = by_lower.get(art.label.lower()) if cfg.metrics else None
    parts = [c for c in tables.partition_columns(spark, ".".join(parse_table_name(cfg.table)))
             if c.lower() not in RESERVED]
    passthrough = _unique([id_col, *[by_lower[c.lower()] for c in cfg.keep], *([label] if label else []), *parts])
    clash = [c for c in passthrough if c.lower() in RESERVED]
    if clash:
        raise InputError(f"columns {clash} of {cfg.table} clash with the output columns ({', '.join(RESERVED)})")
    return Selection(df, id_col, passthrough, label, parts)


def _unique(cols: list[str]) -> list[str]:
    out: list[str] = []
    for c in cols:
        if c.lower() not in {o.lower() for o in out}:
            out.append(c)
    return out


def check_label(sel: Selection, cfg: PredictConfig) -> dict:
    """With the label in the table: rows, null labels; a label other than 0/1 is an error."""
    if not sel.label:
        return {}
    stats = scoring.label_check(sel.df, sel.label)
    if stats["rows"] == 0:
        raise InputError(f"the selection is empty: no rows to score in {cfg.table} (check --where)")
    if stats["bad_label"]:
        raise InputError(f"label {sel.label} must be 0/1 (or null) to report metrics; {stats['bad_label']:,} rows "
                         "have another value (--no-metrics scores without them)")
    return stats


def predictions(sel: Selection, art: ModelArtifact, cfg: PredictConfig, run_id: str, scored_at, device: str,
                nthread: int) -> DataFrame:
    """The output rows: passthrough, probability, prediction, margin and the lineage columns."""
    scored = scoring.score_table_rows(sel.df, art, sel.passthrough, device, nthread)
    front = [c for c in sel.passthrough if c not in sel.partition_by]
    return scored.select(
        *[F.col(f"`{c}`") for c in front], F.col("probability"),
        (F.col("probability") > F.lit(float(cfg.threshold))).cast("int").alias("prediction"), F.col("margin"),
        F.lit(art.study).alias("model_study"), F.lit(art.model_sha256).alias("model_sha256"),
        F.lit(scored_at).cast("timestamp").alias("scored_at"), F.lit(run_id).alias("run_id"),
        *[F.col(f"`{c}`") for c in sel.partition_by])


def stage_predictions(spark: SparkSession, cfg: PredictConfig, out, sel: Selection, props: dict, progress) -> tuple:
    """Score and stage; returns (staged table name, {rows, positives, mean_probability}, seconds)."""
    db, name = cfg.output_table
    t = time.monotonic()
    with StageProgress(spark, progress):
        staged = tables.stage(spark, db, name, out, props, comment=f"predictions of {props['mljobs.study']}",
                              partition_by=sel.partition_by)
    seconds = time.monotonic() - t
    totals = spark.table(staged).agg(F.count(F.lit(1)).alias("rows"), F.sum("prediction").alias("positives"),
                                     F.avg("probability").alias("mean_probability")).first().asDict()
    rows = totals["rows"]
    if rows == 0:
        raise InputError(f"the selection is empty: no rows to score in {cfg.table} (check --where)")
    progress(f"scored {rows:,} rows in {seconds:.1f}s ({rows / max(seconds, 1e-9):,.0f} rows/s)")
    return staged, totals, seconds


def label_metrics(spark: SparkSession, staged: str, sel: Selection, cfg: PredictConfig, progress) -> dict | None:
    if not sel.label:
        return None
    m = scoring.binary_metrics(spark.table(staged), sel.label, cfg.threshold)
    progress(f"against {sel.label}: accuracy {m['accuracy']:.4f}, AUC {m['auc'] or float('nan'):.4f}, "
             f"log loss {m['logloss']:.4f} on {m['rows']:,} labelled rows")
    return m


def run_predict(spark: SparkSession, cfg: PredictConfig, progress=print) -> dict:
    """Score the rows of ``cfg.table`` with ``cfg.model``; returns the summary (without job/status)."""
    t0 = time.monotonic()
    art = load_model(cfg)
    sel = select(spark, cfg, art)
    label_stats = check_label(sel, cfg)
    db, name = cfg.output_table
    run_id, scored_at = uuid.uuid4().hex[:12], dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    device, nthread = device_for(spark), int(spark.conf.get("spark.task.cpus", "1"))
    props = {"mljobs.model": art.where(), "mljobs.study": art.study, "mljobs.model_sha256": art.model_sha256,
             "mljobs.table": cfg.table, "mljobs.where": cfg.where or "", "mljobs.run_id": run_id,
             "mljobs.threshold": str(cfg.threshold)}
    progress(f"scoring {cfg.table}{' where ' + cfg.where if cfg.where else ''} with {art.study} "
             f"({len(art.features)} features, {device}, {nthread} thread(s) per task) into {db}.{name}")
    try:
        with arrow_batch(spark, cfg.batch_size_for(len(art.features))):
            out = predictions(sel, art, cfg, run_id, scored_at, device, nthread)
            staged, totals, seconds = stage_predictions(spark, cfg, out, sel, props, progress)
            metrics = label_metrics(spark, staged, sel, cfg, progress)
            done = tables.commit(spark, db, [name])
    except BaseException:
        tables.discard(spark, db, [name])  # the previous predictions stay in place
        raise
    return {"model": art.where(), "study": art.study, "model_sha256": art.model_sha256, "table": cfg.table,
            "where": cfg.where, "out_table": done[0], "partitioned_by": sel.partition_by, "id_col": sel.id_col,
            "rows_scored": totals["rows"], "rows_per_s": round(totals["rows"] / max(seconds, 1e-9), 1),
            "score_seconds": round(seconds, 2), "threshold": cfg.threshold, "positives": int(totals["positives"]),
            "mean_probability": float(totals["mean_probability"]), "label": sel.label,
            "rows_null_label": label_stats.get("null_label"), "metrics": metrics, "device": device,
            "threads_per_task": nthread, "run_id": run_id, "seconds": round(time.monotonic() - t0, 2)}


# ---- what the rest of the system knows about this job (see mljobs.registry)
NAME = "predict"
CONFIG = PredictConfig
run = run_predict
# Scores the whole table with the model the tune step wrote (--where selects the training
# rows of tune and explain only; a selection of its own goes in the pipeline's predict args),
# keeping the bias step's facet column.
EMR_STEP = EmrStep(needs=("table", "study"), label=lambda p: p.table,
                   args=lambda p: ["--model", p.model_dir(), "--table", p.table, "--keep", p.facet])
GPU_FALLBACKS: list = []  # none of its own (tests/test_gpu_readiness.py)
