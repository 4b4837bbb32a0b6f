"""Objective metrics of a binary classifier, computed the same way in both execution modes.

Both modes reduce a validation fold to counts per distinct predicted probability
(positives, negatives); every metric comes from those counts, so a configuration gets
the same score whether its predictions came back from an executor's numpy or from a
Spark aggregation.
"""
from __future__ import annotations

import numpy as np

METRICS = {"accuracy": "maximize", "auc": "maximize", "f1": "maximize", "logloss": "minimize"}
THRESHOLD = 0.5  # a probability above it predicts class 1 (as XGBClassifier.predict)
_EPS = 1e-15


def direction(metric: str) -> str:
    return METRICS[metric]


def score_counts(prob: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct scores ascending, positives per score, negatives per score)."""
    prob = np.asarray(prob, dtype=np.float64)
    label = np.asarray(label)
    scores, inverse = np.unique(prob, return_inverse=True)
    pos = np.bincount(inverse, weights=(label == 1).astype(np.float64), minlength=len(scores))
    neg = np.bincount(inverse, minlength=len(scores)) - pos
    return scores, pos, neg


def metric_from_counts(metric: str, scores, pos, neg) -> float:
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(scores, kind="stable")
    scores = scores[order]
    pos = np.asarray(pos, dtype=np.float64)[order]
    neg = np.asarray(neg, dtype=np.float64)[order]
    n = pos.sum() + neg.sum()
    if n == 0:
        raise ValueError("empty validation fold")
    above = scores > THRESHOLD
    tp, fp = pos[above].sum(), neg[above].sum()
    fn, tn = pos[~above].sum(), neg[~above].sum()
    if metric == "accuracy":
        return float((tp + tn) / n)
    if metric == "f1":
        denom = 2 * tp + fp + fn
        return float(2 * tp / denom) if denom else 0.0
    if metric == "logloss":
        p = np.clip(scores, _EPS, 1 - _EPS)
        return float(-(pos * np.log(p) + neg * np.log1p(-p)).sum() / n)
    if metric == "auc":
        # Mann-Whitney: each positive beats the negatives with lower scores, ties count half.
        n_pos, n_neg = pos.sum(), neg.sum()
        if n_pos == 0 or n_neg == 0:
            return float("nan")
        neg_below = np.cumsum(neg) - neg
        return float(((neg_below + 0.5 * neg) * pos).sum() / (n_pos * n_neg))
    raise ValueError(f"unknown metric {metric!r}")


def compute_metric(metric: str, prob, label) -> float:
    return metric_from_counts(metric, *score_counts(prob, label))
