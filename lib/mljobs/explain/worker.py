"""What runs inside the Python workers: the per-batch SHAP functions for ``mapInPandas``.

It imports nothing from mljobs but the per-worker model cache, so both are pickled by
value (``modelcache.ship_by_value``; a notebook or a test session has mljobs on the driver
only), and a worker loads a model once, whatever the number of tasks and batches.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd

from mljobs import modelcache


def _dmatrix(x: np.ndarray, features: list[str], nthread: int):
    import xgboost as xgb

    # float32 is what the booster sees in training and in any other predict path.
    return xgb.DMatrix(x.astype(np.float32, copy=False), missing=np.nan, feature_names=features, nthread=nthread)


def _prediction(booster, dm, margin: np.ndarray, logistic: bool) -> np.ndarray:
    if logistic:  # saves a third pass over the trees
        return 1.0 / (1.0 + np.exp(-margin))
    return booster.predict(dm).astype(np.float64)


def _rel_error(total: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.abs(total - target) / np.maximum(1.0, np.abs(target))


def input_columns(features: list[str]) -> list[str]:
    """Names of the model inputs in the frames given to these functions (and in shap_local)."""
    return [f"value_{f}" for f in features]


def tree_contrib_fn(key: str, model_bc, features: list[str], passthrough: list[str], logistic: bool,
                    device: str = "cpu", nthread: int = 1, diagnostics: bool = False):
    """mapInPandas function: exact TreeSHAP (xgboost ``pred_contribs``) per row.

    In: ``passthrough`` columns + ``value_<f>``, one double per feature (model order, NaN = missing).
    Out: passthrough, prediction, margin, base_value, additivity_error, shap_<f>..., value_<f>...
    (+ _pid, _loads with ``diagnostics``).
    """
    feats = list(features)
    cols = input_columns(feats)

    def fn(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import os

        booster = modelcache.xgboost_booster(key, lambda: model_bc.value, feats, nthread, device)
        for pdf in batches:
            x = pdf[cols].to_numpy(dtype=np.float64, na_value=np.nan)
            dm = _dmatrix(x, feats, nthread)
            contrib = booster.predict(dm, pred_contribs=True).astype(np.float64)
            margin = booster.predict(dm, output_margin=True).astype(np.float64)
            out = {c: pdf[c] for c in passthrough}
            out["prediction"] = _prediction(booster, dm, margin, logistic)
            out["margin"] = margin
            out["base_value"] = contrib[:, -1]
            out["additivity_error"] = _rel_error(contrib.sum(axis=1), margin)
            for i, f in enumerate(feats):
                out[f"shap_{f}"] = contrib[:, i]
            for i, f in enumerate(feats):
                out[f"value_{f}"] = x[:, i]
            if diagnostics:
                out["_pid"] = os.getpid()
                out["_loads"] = modelcache.load_count()
            yield pd.DataFrame(out, index=pdf.index)

    return fn


def tree_interaction_fn(key: str, model_bc, features: list[str], id_col: str, device: str = "cpu", nthread: int = 1):
    """mapInPandas function: SHAP interaction values (``pred_interactions``), long format.

    Out: id_col, feature_a, feature_b, value — every ordered pair of features (a == b is
    the main effect), so each row's values over feature_b sum to its SHAP value of
    feature_a. The bias row/column (only the base value on its diagonal) is left out.
    """
    feats = list(features)
    cols = input_columns(feats)
    n_f = len(feats)

    def fn(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        booster = modelcache.xgboost_booster(key, lambda: model_bc.value, feats, nthread, device)
        names = np.array(feats, dtype=object)
        for pdf in batches:
            x = pdf[cols].to_numpy(dtype=np.float64, na_value=np.nan)
            inter = booster.predict(_dmatrix(x, feats, nthread), pred_interactions=True)[:, :n_f, :n_f]
            n = len(pdf)
            yield pd.DataFrame({
                id_col: np.repeat(pdf[id_col].to_numpy(), n_f * n_f),
                "feature_a": np.tile(np.repeat(names, n_f), n),
                "feature_b": np.tile(names, n * n_f),
                "value": inter.reshape(-1).astype(np.float64),
            })

    return fn


def kernel_fn(key: str, model_bc, features: list[str], passthrough: list[str], background: np.ndarray, weights: np.ndarray, num_samples: int, use_logit: bool, seed: int,
              nthread: int = 1):
    """mapInPandas function: Kernel SHAP (shap.KernelExplainer) with Clarify's options.

    The model function is the booster's prediction (a probability for logistic
    objectives); ``use_logit`` explains its log-odds, as Clarify does. Same output columns
    as ``tree_contrib_fn``; ``margin`` is the explained output (log-odds or prediction).
    """
    feats = list(features)
    cols = input_columns(feats)
    bg = np.asarray(background, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    bg_key = (bg.tobytes(), w.tobytes())

    def fn(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import shap
        from shap.utils._legacy import DenseData

        booster = modelcache.xgboost_booster(key, lambda: model_bc.value, feats, nthread, "cpu")

        def model(x):
            return booster.predict(_dmatrix(np.asarray(x, dtype=np.float64), feats, nthread)).astype(np.float64)

        def explainer_of():
            data = DenseData(bg, [str(i) for i in range(len(feats))], None, w)
            return shap.KernelExplainer(model, data, link="logit" if use_logit else "identity")

        explainer = modelcache.get(("kernel", key, bg_key, use_logit, nthread), explainer_of)
        for pdf in batches:
            x = pdf[cols].to_numpy(dtype=np.float64, na_value=np.nan)
            # KernelExplainer draws coalitions from numpy's global generator: seed it so a
            # re-run gives the same values.
            np.random.seed(seed)
            vals = np.asarray(explainer.shap_values(x, nsamples=num_samples, l1_reg=False, silent=True),
                              dtype=np.float64).reshape(len(pdf), len(feats))
            pred = model(x)
            target = np.log(pred / (1.0 - pred)) if use_logit else pred
            base = float(np.ravel(explainer.expected_value)[0])
            out = {c: pdf[c] for c in passthrough}
            out["prediction"] = pred
            out["margin"] = target
            out["base_value"] = np.full(len(pdf), base)
            out["additivity_error"] = _rel_error(vals.sum(axis=1) + base, target)
            for i, f in enumerate(feats):
                out[f"shap_{f}"] = vals[:, i]
            for i, f in enumerate(feats):
                out[f"value_{f}"] = x[:, i]
            yield pd.DataFrame(out, index=pdf.index)

    return fn
