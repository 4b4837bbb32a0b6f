"""The predict-text job: a train-text model + a Hive table -> <db>.text_predictions, the predicted
class and the probability of every class per row, staged and swapped in (a failed run leaves the
previous table)."""
from __future__ import annotations

import datetime as dt
import time
import uuid

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mljobs import tables
from mljobs.emr import EmrStep
from mljobs.errors import InputError
from mljobs.gpu import Known
from mljobs.models import textscore
from mljobs.models.text import (TEXT, TextModel, gpu_fallbacks, label_columns, load_text_model,
                                probability_model)
from mljobs.predict_text.config import PROBS, RESERVED, PredictTextConfig
from mljobs.session import StageProgress

DEFAULT_ID = "row_id"


def select(spark: SparkSession, cfg: PredictTextConfig, meta: TextModel) -> tuple[DataFrame, list[str]]:
    """(rows with `_text` and the passthrough columns, the passthrough names); every named column checked."""
    df = tables.read_table(spark, cfg.table, cfg.where)
    by_lower = {c.lower(): c for c in df.columns}
    text_col = cfg.text_col or meta.text_col
    wanted = [text_col] + ([cfg.id_col] if cfg.id_col else []) + cfg.keep
    absent = [c for c in wanted if c.lower() not in by_lower]
    if absent:
        raise InputError(f"{cfg.table} has no column {', '.join(absent)}; columns: {', '.join(df.columns)}")
    text = by_lower[text_col.lower()]
    if not isinstance(df.schema[text].dataType, T.StringType):
        raise InputError(f"--text-col {text} is {df.schema[text].dataType.simpleString()}, not a string")
    if cfg.id_col:
        id_col = by_lower[cfg.id_col.lower()]
    else:
        id_col = DEFAULT_ID
        df = df.withColumn(DEFAULT_ID, F.monotonically_increasing_id())
    keep = [by_lower[c.lower()] for c in cfg.keep if by_lower[c.lower()] != id_col]
    clash = [c for c in [id_col, *keep] if c.lower() in RESERVED]
    if clash:
        raise InputError(f"columns {clash} of {cfg.table} clash with the output columns ({', '.join(RESERVED)})")
    passthrough = list(dict.fromkeys([id_col, *keep]))
    return df.select(*[F.col(f"`{c}`") for c in passthrough], F.col(f"`{text}`").alias(TEXT)), passthrough



def class_probabilities(model, rows: DataFrame, passthrough: list[str]) -> tuple[DataFrame, str]:
    """(passthrough + the class probabilities as an array, which scorer made them): Arrow batches in
    the Python workers (``mljobs.models.textscore``) for the pipelines train-text writes, Spark ML's
    own transform for any other."""
    from pyspark.ml.functions import vector_to_array

    fast = textscore.plan(model)
    if fast is not None:
        tokens, scorer = fast
        return textscore.score(tokens.transform(rows), scorer, passthrough, PROBS), "arrow"
    keep = [F.col(f"`{c}`") for c in passthrough]
    return probability_model(model).transform(rows).select(*keep, vector_to_array("probability").alias(PROBS)), \
        "spark-ml"


def predictions(scored: DataFrame, passthrough: list[str], meta: TextModel, run_id: str, scored_at) -> DataFrame:
    """passthrough, predicted_label, probability (of that label), probabilities (label -> p) and
    lineage, from the probabilities array: array expressions, each reading the one column."""
    keep = [F.col(f"`{c}`") for c in passthrough]
    label, top, by_label = label_columns(F.col(PROBS), meta.labels)
    return scored.select(
        *keep, label.alias("predicted_label"), top.alias("probability"), by_label.alias("probabilities"),
        F.lit(meta.study).alias("model_study"), F.lit(scored_at).cast("timestamp").alias("scored_at"),
        F.lit(run_id).alias("run_id"))


def run(spark: SparkSession, cfg: PredictTextConfig, progress=print) -> dict:
    """Label the rows of ``cfg.table`` with ``cfg.model``; returns the summary."""
    t0 = time.monotonic()
    meta, model = load_text_model(spark, cfg.model)
    rows, passthrough = select(spark, cfg, meta)
    db, name = cfg.output_table
    run_id, scored_at = uuid.uuid4().hex[:12], dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    props = {"mljobs.model": meta.location, "mljobs.study": meta.study, "mljobs.table": cfg.table,
             "mljobs.where": cfg.where or "", "mljobs.run_id": run_id}
    progress(f"labelling {cfg.table} with {meta.study} ({meta.algorithm}, classes {', '.join(meta.labels)}) "
             f"into {db}.{name}")
    try:
        probs, scorer = class_probabilities(model, rows, passthrough)
        out = predictions(probs, passthrough, meta, run_id, scored_at)
        t = time.monotonic()
        with StageProgress(spark, progress):
            staged = tables.stage(spark, db, name, out, props, comment=f"text predictions of {meta.study}")
        seconds = time.monotonic() - t
        counts = {r["predicted_label"]: r["count"]
                  for r in spark.table(staged).groupBy("predicted_label").count().collect()}
        n = sum(counts.values())
        if n == 0:
            raise InputError(f"the selection is empty: no rows to label in {cfg.table} (check --where)")
        done = tables.commit(spark, db, [name])
    except BaseException:
        tables.discard(spark, db, [name])
        raise
    progress(f"labelled {n:,} rows in {seconds:.1f}s ({n / max(seconds, 1e-9):,.0f} rows/s)")
    return {"model": meta.location, "study": meta.study, "algorithm": meta.algorithm, "table": cfg.table,
            "where": cfg.where, "out_table": done[0], "id_col": passthrough[0], "labels": meta.labels,
            "rows_scored": n, "scorer": scorer, "predicted_counts": dict(sorted(counts.items())),
            "rows_per_s": round(n / max(seconds, 1e-9), 1), "score_seconds": round(seconds, 2), "run_id": run_id,
            "seconds": round(time.monotonic() - t0, 2)}


# ---- what the rest of the system knows about this job (see mljobs.registry)
NAME = "predict-text"
CONFIG = PredictTextConfig
EMR_STEP = EmrStep(needs=("text_table",), label=lambda p: p.text_table, default=False,
                   args=lambda p: ["--model", p.text_model_dir(), "--table", p.text_table, "--text-col", p.text_col])
GPU_FALLBACKS = [
    *gpu_fallbacks(ngrams=False),
    Known("CollectLimitExec", "has been disabled", "models/text.py load_text_model: Spark ML's readers take each "
          "stage's data with head()",
          "the plugin leaves a collect with a limit on the CPU by default; a few rows of model data, once per run"),
]
