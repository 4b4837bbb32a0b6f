"""Kernel SHAP (model-agnostic, what SageMaker Clarify computes) with Clarify's options.

* ``baseline``: rows given in the config or a file; else ``num_clusters`` k-means
  centres of a sample of the selection (``shap.kmeans``: missing values imputed by the
  mean, centres snapped to observed values, weighted by cluster size).
* ``num_samples``: coalitions sampled per row (``nsamples``); with 2^F - 2 or fewer
  coalitions shap enumerates them all and the estimate is exact for the background.
* ``use_logit``: explain the log-odds of the predicted probability (Clarify's
  ``use_logit``). Our default is true, so Kernel values live on the same scale as the
  exact TreeSHAP values (the booster's margin); Clarify's default is false.

Regression is unregularised (``l1_reg=False``): Clarify exposes no l1 option, and
shap's automatic feature selection would zero features at random. Runs in
``mapInPandas`` with the explainer built once per Python worker.
"""
from __future__ import annotations

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mljobs.explain import worker
from mljobs.explain.tree_shap import local_schema, model_key, ship_by_value

KMEANS_SAMPLE_ROWS = 10000


def kmeans_background(sel: DataFrame, features: list[str], k: int, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """k weighted centres of up to 10,000 rows of ``sel`` (sampled by a seeded hash, not collected whole)."""
    import shap

    cols = worker.input_columns(features)
    sample = (sel.select(*cols).orderBy(F.xxhash64(*[F.col(c) for c in cols], F.lit(seed)))
              .limit(KMEANS_SAMPLE_ROWS).toPandas())
    x = sample.to_numpy(dtype=np.float64, na_value=np.nan)
    if len(x) < k:
        k = max(1, len(x))
    # shap.kmeans imputes with column means; a column that is all missing has no mean.
    x[:, np.all(np.isnan(x), axis=0)] = 0.0
    data = shap.kmeans(x, k)
    return np.asarray(data.data, dtype=np.float64), np.asarray(data.weights, dtype=np.float64)


def contributions(sel: DataFrame, features: list[str], passthrough: list[str], model_bytes: bytes,
                  background: np.ndarray, weights: np.ndarray, num_samples: int, use_logit: bool,
                  seed: int = 42, nthread: int = 1) -> DataFrame:
    """Per-row Kernel SHAP values, the same columns as ``tree_shap.contributions``: lazy."""
    ship_by_value()
    bc = sel.sparkSession.sparkContext.broadcast(model_bytes)
    fn = worker.kernel_fn(model_key(model_bytes), bc, features, passthrough, background, weights,
                          num_samples, use_logit, seed, nthread=nthread)
    return sel.mapInPandas(fn, local_schema(sel, passthrough, features))
