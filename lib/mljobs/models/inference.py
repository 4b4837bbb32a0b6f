"""Scoring with a tune model, the one copy used everywhere rows are scored: the predict job's
Spark tasks, the HTTP server (mljobs.serve) and the bias job's post-training metrics.

It imports nothing from mljobs but the per-worker model cache, so both are pickled by value
into Spark's Python workers (``modelcache.ship_by_value``) and the booster is loaded once
per worker process, keyed by its sha256.

Rows reach the booster as float32 in the artifact's ``features`` order, NaN = missing, through
``inplace_predict`` (no DMatrix). A string feature is encoded as the position of its value in
the artifact's ``categorical_maps`` list; an unseen value or an empty one is missing — the
rule ``mljobs.models.artifact.feature_columns`` applies in SQL, written here for raw values.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from mljobs import modelcache

LOGISTIC = ("binary:logistic", "reg:logistic")
OUT_COLUMNS = ("margin", "probability")


class EncodingError(ValueError):
    """A raw value that is not a number for a numeric feature (the message names it)."""


def predict_margin(booster, x: np.ndarray) -> np.ndarray:
    """The raw score (log-odds for a logistic objective) of each row of ``x`` (rows × features)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if len(x) == 0:
        return np.empty(0, dtype=np.float64)
    return np.asarray(booster.inplace_predict(x, predict_type="margin", missing=np.nan),
                      dtype=np.float64).reshape(len(x))


def to_probability(booster, x: np.ndarray, margin: np.ndarray, objective: str) -> np.ndarray:
    """P(class 1): the logistic of the margin (saves a second pass over the trees), or the
    booster's own output for another objective."""
    if objective in LOGISTIC:
        return 1.0 / (1.0 + np.exp(-margin))
    x = np.ascontiguousarray(x, dtype=np.float32)
    return np.asarray(booster.inplace_predict(x, missing=np.nan), dtype=np.float64).reshape(len(x))


def score_matrix(booster, x: np.ndarray, objective: str) -> tuple[np.ndarray, np.ndarray]:
    """(margin, probability) of each row."""
    margin = predict_margin(booster, x)
    return margin, to_probability(booster, x, margin, objective)


def encode_columns(columns: Sequence[Sequence], features: Sequence[str],
                   categorical_maps: dict[str, list[str]]) -> np.ndarray:
    """Raw values, one sequence per feature in model order, as the float32 matrix the booster
    takes. Numbers and numeric text are taken as they are; '' / None are missing; a string
    feature's value is looked up in its categorical map (unseen → missing). A value that is
    not a number for a numeric feature raises EncodingError naming the feature and the row."""
    n = len(columns[0]) if columns else 0
    out = np.empty((n, len(features)), dtype=np.float32)
    for j, (name, values) in enumerate(zip(features, columns)):
        if name in categorical_maps:
            codes = {str(v): float(i) for i, v in enumerate(categorical_maps[name])}
            out[:, j] = [codes.get("" if v is None else str(v), np.nan) for v in values]
        else:
            out[:, j] = _numbers(values, name)
    return out


def _numbers(values: Sequence, name: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)  # numbers and numeric text, the common case
    except (TypeError, ValueError):
        pass
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        if v is None or (isinstance(v, str) and not v.strip()):
            out[i] = np.nan
            continue
        if isinstance(v, bool):
            out[i] = float(v)
            continue
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            raise EncodingError(f"row {i + 1}: feature {name!r} is not a number: {str(v)[:40]!r}") from None
    return out


def score_fn(sha256: str, model_bc, features: list[str], inputs: list[str], passthrough: list[str],
             objective: str, nthread: int = 1, device: str = "cpu"):
    """mapInArrow function: ``passthrough`` columns + ``margin`` and ``probability`` per row.

    In: ``passthrough`` + ``inputs`` (one double per feature, model order, NaN = missing).
    Arrow record batches in and out, no pandas: the passthrough columns are handed back as
    the same Arrow arrays, the inputs become one float32 matrix. The booster comes from the
    per-worker cache: ``model_bc.value`` is read once per process.
    """
    feats, cols, keep = list(features), list(inputs), list(passthrough)
    names = keep + list(OUT_COLUMNS)

    def fn(batches):
        import pyarrow as pa

        booster = modelcache.xgboost_booster(sha256, lambda: model_bc.value, feats, nthread, device)
        for batch in batches:
            x = np.empty((batch.num_rows, len(cols)), dtype=np.float32)
            for j, c in enumerate(cols):
                x[:, j] = batch.column(c).to_numpy(zero_copy_only=False)
            margin, prob = score_matrix(booster, x, objective)
            arrays = [batch.column(c) for c in keep] + [pa.array(margin), pa.array(prob)]
            yield pa.RecordBatch.from_arrays(arrays, names=names)

    return fn
