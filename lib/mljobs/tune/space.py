"""Hyperparameter search spaces: parsed from YAML, validated, sampled through Optuna.

A parameter is one of::

    max_depth:        {type: int, low: 5, high: 15}                 # optional step, log
    learning_rate:    {type: float, low: 0.01, high: 0.3, log: true}
    grow_policy:      {type: categorical, values: [depthwise, lossguide]}
    tree_method:      hist                                           # a fixed value

Names are the scikit-learn-style names of xgboost (max_depth, n_estimators,
learning_rate, colsample_bytree, subsample, min_child_weight, gamma, reg_lambda,
reg_alpha, max_bin ...). For ``random_forest``, ``max_features`` is the fraction of
features tried at each split (xgboost ``colsample_bynode``) and ``n_estimators`` the
number of trees of the forest.
"""
from __future__ import annotations

from typing import Any

from mljobs.errors import MljobsError
from mljobs.studies.space import Param, SearchSpace, parse_param  # noqa: F401 (Param, SearchSpace: tune's names)

FAMILIES = ("xgboost", "random_forest")

# The reference system's ranges (RAPIDS + SageMaker HPO airline example).
DEFAULT_SPACES: dict[str, dict[str, Any]] = {
    "xgboost": {
        "max_depth": {"type": "int", "low": 5, "high": 15},
        "n_estimators": {"type": "int", "low": 100, "high": 500},
        "colsample_bytree": {"type": "float", "low": 0.1, "high": 1.0},
    },
    "random_forest": {
        "max_depth": {"type": "int", "low": 5, "high": 15},
        "n_estimators": {"type": "int", "low": 100, "high": 500},
        "max_features": {"type": "float", "low": 0.1, "high": 1.0},
    },
}

# Integer-valued parameters (checked for int bounds); everything else numeric is float.
_INT_PARAMS = {"max_depth", "n_estimators", "max_bin", "max_leaves", "min_child_weight_int", "early_stopping_rounds"}
_NON_NEGATIVE = {"gamma", "reg_lambda", "reg_alpha", "min_child_weight", "max_delta_step"}
_FRACTIONS = {"colsample_bytree", "colsample_bylevel", "colsample_bynode", "subsample", "max_features"}
_POSITIVE = {"max_depth", "n_estimators", "learning_rate", "max_bin"}


def parse_space(family: str, spec: dict[str, Any] | None) -> SearchSpace:
    """Validate a YAML search space (None: the family's reference ranges)."""
    if family not in FAMILIES:
        raise MljobsError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")
    if spec is None:
        spec = DEFAULT_SPACES[family]
    if not isinstance(spec, dict) or not spec:
        raise MljobsError("search space: expected a mapping of parameter name -> range")
    params = []
    for name, body in spec.items():
        params.append(parse_param(str(name), body, _INT_PARAMS, _check_bounds))
    names = {p.name for p in params}
    if family == "random_forest" and "colsample_bynode" in names and "max_features" in names:
        raise MljobsError("search space: give max_features or colsample_bynode for random_forest, not both")
    if not any(p.kind != "fixed" for p in params):
        raise MljobsError("search space: nothing to tune (every parameter is fixed)")
    return SearchSpace(family, tuple(params))


def _check_bounds(name: str, low: float, high: float) -> None:
    where = f"search space: {name}"
    if name in _POSITIVE and low <= 0:
        raise MljobsError(f"{where}: must be > 0 (low = {low:g})")
    if name in _NON_NEGATIVE and low < 0:
        raise MljobsError(f"{where}: must be >= 0 (low = {low:g})")
    if name in _FRACTIONS and (low <= 0 or high > 1):
        raise MljobsError(f"{where}: a fraction in (0, 1] (got {low:g}..{high:g})")
    if name == "max_depth" and high > 30:
        raise MljobsError(f"{where}: depth above 30 is not supported by the hist tree method")
