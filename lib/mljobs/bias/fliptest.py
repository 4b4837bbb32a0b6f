"""FT, the flip test, as smclarify 0.5 computes it, distributed: a k-nearest-neighbours vote
(k = 5, or 1 when the rest has at most 9 rows; Euclidean distance, uniform weights) of the
rest's predicted labels, for each row of the sensitive group; FT = (rows the model predicts
positive and the vote negative - rows the other way round) / rows of the group.

The group's rows (at most ``sample`` of them, a seeded sample beyond) are broadcast; each
task finds, among its rows of the rest, the k nearest of every group row; Spark keeps the k
nearest over all tasks. Only k labels per group row reach the driver. Neighbours at exactly
equal distances may be taken in another order than scikit-learn's, which can change a vote.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from mljobs.bias.metrics import Undefined, divide

FEW_ROWS, K_FEW, K = 9, 1, 5  # smclarify's FT_SAMPLES_COUNT_THRESHOLD, FT_MIN_NEIGHBOR, FT_DEFAULT_NEIGHBOR
SEED = 20240


def _nearest_fn(bc, k: int):
    """mapInPandas body: for every broadcast group row, the k nearest rows of the task's rows
    (in chunks of about 4M distance terms, a running best k kept per group row)."""
    def nearest(batches):
        xd = bc.value[0]
        n = xd.shape[0]
        best_d = np.full((0, n), np.inf)
        best_p = np.zeros((0, n), dtype=np.int32)
        for pdf in batches:
            xa_all = pdf.drop(columns=["_p"]).to_numpy(np.float64)
            pa_all = pdf["_p"].to_numpy().astype(np.int32)
            step = max(1, 4_000_000 // max(1, n * xd.shape[1]))
            for lo in range(0, len(xa_all), step):
                xa = xa_all[lo:lo + step]
                # Exact squared distances (the |a|^2 + |d|^2 - 2ad expansion rounds near-ties apart).
                dist = ((xa[:, None, :] - xd[None, :, :]) ** 2).sum(axis=2)
                best_d = np.vstack([best_d, dist])
                best_p = np.vstack([best_p, np.repeat(pa_all[lo:lo + step, None], n, axis=1)])
                if len(best_d) > k:
                    idx = np.argpartition(best_d, k - 1, axis=0)[:k]
                    best_d = np.take_along_axis(best_d, idx, axis=0)
                    best_p = np.take_along_axis(best_p, idx, axis=0)
        if len(best_d):
            yield pd.DataFrame({"d": np.tile(np.arange(n), len(best_d)), "dist": best_d.ravel(), "p": best_p.ravel()})
    return nearest


def _group_rows(d: DataFrame, n_d: int, sample: int, feats: list[str]) -> tuple[np.ndarray, np.ndarray]:
    if n_d > sample:
        d = d.sample(fraction=min(1.0, 1.2 * sample / n_d), seed=SEED).limit(sample)
    got = d.collect()
    return np.array([[r[f] for f in feats] for r in got], dtype=np.float64), np.array([r["_p"] for r in got])


def flip_test(df: DataFrame, sensitive: Column, yhat: Column, features: list[str], sample: int) -> float:
    """FT of one facet value over the rows of ``df`` (features: numeric columns, no nulls)."""
    if not features:
        raise Undefined("the flip test needs numeric feature columns (none left beside facet and labels)")
    feats = [f"_x{i}" for i in range(len(features))]
    rows = df.select(sensitive.alias("_s"), yhat.cast("int").alias("_p"),
                     *[F.col(f"`{c}`").cast("double").alias(n) for c, n in zip(features, feats)])
    rows = rows.where(F.col("_p").isNotNull() & F.col("_s").isNotNull())
    rows = rows.where(F.expr(" AND ".join(f"{n} IS NOT NULL AND NOT isnan({n})" for n in feats)))
    sizes = {bool(r["_s"]): int(r["n"]) for r in rows.groupBy("_s").agg(F.count(F.lit(1)).alias("n")).collect()}
    n_a, n_d = sizes.get(False, 0), sizes.get(True, 0)
    if n_d == 0:
        raise Undefined("facet set is empty (no rows with the facet value and complete features)")
    if n_a == 0:
        raise Undefined("negated facet set is empty")
    k = K if n_a > FEW_ROWS else K_FEW
    xd, pd_model = _group_rows(rows.where("_s").select("_p", *feats), n_d, sample, feats)
    bc = df.sparkSession.sparkContext.broadcast((xd,))
    try:
        cand = rows.where(~F.col("_s")).select(*feats, "_p").mapInPandas(
            _nearest_fn(bc, k), "d long, dist double, p int")
        votes = (cand.groupBy("d").agg(F.expr(f"slice(array_sort(collect_list(struct(dist, p))), 1, {k})").alias("nn"))
                 .select("d", F.expr("aggregate(nn, 0, (acc, x) -> acc + x.p)").alias("pos"), F.size("nn").alias("k"))
                 .collect())
    finally:
        bc.destroy()
    knn = np.zeros(len(xd), dtype=bool)
    for r in votes:
        knn[r["d"]] = 2 * r["pos"] > r["k"]
    model = pd_model.astype(bool)
    return divide(int((model & ~knn).sum()) - int((~model & knn).sum()), len(xd))
