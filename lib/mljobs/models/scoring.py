"""Scoring a table's rows with a tune model in Spark, and the binary-classification metrics of
the scores — the plumbing the predict job, tune (its refit's training metrics) and the bias
job share. The per-row work is ``mljobs.models.inference.score_fn`` in ``mapInArrow``: Arrow
batches, the booster loaded once per Python worker through the model cache.
"""
from __future__ import annotations

import hashlib

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, DoubleType, NumericType, StringType, StructField, StructType

from mljobs import modelcache
from mljobs.errors import InputError
from mljobs.models import inference
from mljobs.models.artifact import ModelArtifact, feature_columns

INPUT_PREFIX = "_x_"
_EPS = float.fromhex("0x1.0p-52")  # float64 machine epsilon: the clip scikit-learn's log_loss uses


def check_feature_columns(df: DataFrame, art: ModelArtifact) -> None:
    """Every model feature is a column of ``df`` with a type the model takes; errors name them."""
    by_lower = {c.lower(): c for c in df.columns}
    missing = [f for f in art.features if f.lower() not in by_lower]
    if missing:
        raise InputError(f"the table lacks the model's feature columns {missing} "
                         f"(the model was trained on {', '.join(art.features)})")
    bad = []
    for f in art.features:
        dtype = df.schema[by_lower[f.lower()]].dataType
        ok = isinstance(dtype, (NumericType, BooleanType)) or (
            isinstance(dtype, StringType) and f in art.categorical_maps)
        if not ok:
            bad.append(f"{f} ({dtype.simpleString()})")
    if bad:
        raise InputError(f"feature columns of a type the model cannot take: {', '.join(bad)} "
                         "(numeric expected; strings only for features with categorical_maps)")


def score_inputs(df: DataFrame, inputs: list[str], features: list[str], passthrough: list[str],
                 model_bytes: bytes, objective: str, device: str = "cpu", nthread: int = 1,
                 sha256: str | None = None) -> DataFrame:
    """``passthrough`` + margin + probability per row of ``df``, whose ``inputs`` columns are
    the model's features as doubles (model order, NaN = missing)."""
    spark = df.sparkSession
    sha = sha256 or hashlib.sha256(model_bytes).hexdigest()
    modelcache.ship_by_value(inference)
    bc = spark.sparkContext.broadcast(model_bytes)
    schema = StructType([df.schema[c] for c in passthrough]
                        + [StructField(c, DoubleType()) for c in inference.OUT_COLUMNS])
    fn = inference.score_fn(sha, bc, features, inputs, passthrough, objective, nthread, device)
    return df.mapInArrow(fn, schema)


def score_table_rows(df: DataFrame, art: ModelArtifact, passthrough: list[str], device: str = "cpu",
                     nthread: int = 1) -> DataFrame:
    """``passthrough`` columns of ``df`` + margin + probability, the features encoded from the
    table's own columns as the tune job encoded them (``feature_columns``)."""
    check_feature_columns(df, art)
    inputs = [f"{INPUT_PREFIX}{i}" for i in range(len(art.features))]
    encoded = [F.coalesce(c, F.lit(float("nan"))).alias(n) for c, n in zip(feature_columns(df, art), inputs)]
    sel = df.select(*[F.col(f"`{c}`") for c in passthrough], *encoded)
    return score_inputs(sel, inputs, art.features, passthrough, art.model_bytes(), art.objective, device,
                        nthread, art.model_sha256 or None)


def label_check(df: DataFrame, label: str) -> dict:
    """Rows, null labels and labels other than 0/1 (one pass)."""
    y = F.col(f"`{label}`").cast("double")
    row = df.agg(F.count(F.lit(1)).alias("rows"), F.sum(y.isNull().cast("long")).alias("null_label"),
                 F.sum((y.isNotNull() & ~y.isin(0.0, 1.0)).cast("long")).alias("bad_label")).first()
    return {k: int(row[k] or 0) for k in ("rows", "null_label", "bad_label")}


def binary_metrics(df: DataFrame, label: str, threshold: float = 0.5, prob: str = "probability") -> dict:
    """Accuracy, AUC, log loss, precision, recall, F1 and the confusion counts of ``prob``
    against the 0/1 ``label`` (rows with a null label left out), computed in Spark.

    A probability above ``threshold`` predicts 1 (XGBClassifier.predict's rule). Log loss clips
    at float64's epsilon, as scikit-learn does; AUC is the Mann-Whitney statistic with ties
    counted half (equal to the area under the ROC curve through every distinct score)."""
    y = F.col(f"`{label}`").cast("double")
    p = F.col(f"`{prob}`")
    rows = df.where(y.isNotNull()).select(y.alias("y"), p.alias("p"))
    hit = F.col("p") > F.lit(float(threshold))
    pc = F.least(F.greatest(F.col("p"), F.lit(_EPS)), F.lit(1.0 - _EPS))
    c = rows.agg(
        F.count(F.lit(1)).alias("n"),
        F.sum((hit & (F.col("y") == 1)).cast("long")).alias("tp"),
        F.sum((hit & (F.col("y") == 0)).cast("long")).alias("fp"),
        F.sum((~hit & (F.col("y") == 1)).cast("long")).alias("fn"),
        F.sum((~hit & (F.col("y") == 0)).cast("long")).alias("tn"),
        F.avg(-(F.col("y") * F.log(pc) + (1 - F.col("y")) * F.log(1 - pc))).alias("logloss"),
    ).first()
    n, tp, fp, fn, tn = (int(c[k] or 0) for k in ("n", "tp", "fp", "fn", "tn"))
    if n == 0:
        return {"rows": 0}
    return _metrics(threshold, tp, fp, fn, tn, float(c["logloss"]), auc(rows))


def binary_metrics_of(prob, label, threshold: float = 0.5) -> dict:
    """binary_metrics of probabilities and 0/1 labels held in memory: the same definitions, keys
    and clip (tune's refit metrics, whose rows the driver holds already)."""
    import numpy as np

    p, y = np.asarray(prob, dtype=np.float64), np.asarray(label, dtype=np.float64)
    if len(y) == 0:
        return {"rows": 0}
    hit, pos = p > float(threshold), y == 1
    tp, fp = int(np.sum(hit & pos)), int(np.sum(hit & ~pos))
    fn, tn = int(np.sum(~hit & pos)), int(np.sum(~hit & ~pos))
    pc = np.clip(p, _EPS, 1.0 - _EPS)
    logloss = float(np.mean(-(y * np.log(pc) + (1 - y) * np.log(1 - pc))))
    scores, inverse = np.unique(p, return_inverse=True)
    n_pos = np.bincount(inverse, weights=y, minlength=len(scores))
    n_neg = np.bincount(inverse, minlength=len(scores)) - n_pos
    area = None
    if n_pos.sum() and n_neg.sum():
        below = np.cumsum(n_neg) - n_neg
        area = float(np.sum(n_pos * (below + 0.5 * n_neg)) / (n_pos.sum() * n_neg.sum()))
    return _metrics(threshold, tp, fp, fn, tn, logloss, area)


def _metrics(threshold: float, tp: int, fp: int, fn: int, tn: int, logloss: float, area: float | None) -> dict:
    n = tp + fp + fn + tn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return {"rows": n, "threshold": float(threshold), "accuracy": (tp + tn) / n, "auc": area,
            "logloss": logloss, "precision": precision, "recall": recall, "f1": f1,
            "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn}}


def auc(rows: DataFrame) -> float | None:
    """Area under the ROC curve of columns y (0/1) and p; None when a class is absent.

    Rows are first reduced to counts per distinct score; only those counts meet in the one
    ordered window."""
    counts = rows.groupBy("p").agg(F.sum("y").alias("pos"), F.sum(1 - F.col("y")).alias("neg"))
    # One window over the distinct scores (partitioned by a constant: one partition on purpose).
    below = F.sum("neg").over(Window.partitionBy(F.lit(0)).orderBy("p").rowsBetween(Window.unboundedPreceding, -1))
    r = (counts.select("pos", "neg", F.coalesce(below, F.lit(0.0)).alias("below"))
         .agg(F.sum(F.col("pos") * (F.col("below") + 0.5 * F.col("neg"))).alias("u"),
              F.sum("pos").alias("P"), F.sum("neg").alias("N")).first())
    if not r["P"] or not r["N"]:
        return None
    return float(r["u"] / (r["P"] * r["N"]))
