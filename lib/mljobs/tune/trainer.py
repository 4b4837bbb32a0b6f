"""One model family's training recipe, shared by both execution modes and the final fit.

``xgboost``: gradient-boosted trees, ``n_estimators`` rounds.
``random_forest``: xgboost's random-forest mode: one round of ``n_estimators`` parallel
trees, rows subsampled per tree (``subsample``, default 0.8) and features per split
(``max_features`` -> ``colsample_bynode``, default 0.8), learning rate 1. We chose it over
Spark ML's RandomForestClassifier so that both execution modes train the same model (and
can agree on its score), the artifact is one format, TreeSHAP is exact for it, and the
GPU path is xgboost's ``device="cuda"``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

# Names that go to the booster as given; xgboost accepts these scikit-learn spellings.
_RF_DEFAULTS = {"learning_rate": 1.0, "subsample": 0.8, "colsample_bynode": 0.8, "reg_lambda": 1e-5}
_NOT_BOOSTER = {"n_estimators", "early_stopping_rounds", "max_features"}


class TrialTimeout(Exception):
    """Raised inside training when the trial's time limit passes."""


@dataclass(frozen=True)
class Recipe:
    params: dict[str, Any]  # native booster params
    rounds: int
    early_stopping_rounds: int | None


def recipe(family: str, hp: dict[str, Any], seed: int, nthread: int | None = None, device: str | None = None) -> Recipe:
    """Booster params and rounds of a configuration (hp: the search space's names)."""
    hp = dict(hp)
    params: dict[str, Any] = {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "tree_method": "hist",
        "seed": int(seed),
        "verbosity": 0,
    }
    if nthread:
        params["nthread"] = int(nthread)
    if device:
        params["device"] = device
    n = int(hp.get("n_estimators", 100))
    if family == "random_forest":
        params.update(_RF_DEFAULTS)
        if "max_features" in hp:
            params["colsample_bynode"] = float(hp["max_features"])
        params["num_parallel_tree"] = n
        rounds = 1
    else:
        rounds = n
    for k, v in hp.items():
        if k not in _NOT_BOOSTER:
            params[k] = v
    es = hp.get("early_stopping_rounds")
    if family == "random_forest":
        es = None  # one round: nothing to stop early
    return Recipe(params, rounds, int(es) if es else None)


def deadline_callback(deadline: float | None):
    """An xgboost callback that stops training with TrialTimeout after `deadline` (wall clock, time.time(): the driver and executors share it, monotonic clocks they do not)."""
    import xgboost as xgb

    class _Deadline(xgb.callback.TrainingCallback):
        def after_iteration(self, model, epoch, evals_log) -> bool:
            if deadline is not None and time.time() > deadline:
                raise TrialTimeout(f"stopped after {epoch + 1} rounds: past the trial's time limit")
            return False

    return _Deadline()


def train_booster(rec: Recipe, dtrain, dvalid=None, deadline: float | None = None):
    """xgboost.train with the recipe; returns (booster, best_iteration or None)."""
    import xgboost as xgb

    evals = [(dvalid, "valid")] if (dvalid is not None and rec.early_stopping_rounds) else []
    booster = xgb.train(rec.params, dtrain, num_boost_round=rec.rounds, evals=evals,
                        early_stopping_rounds=rec.early_stopping_rounds if evals else None,
                        callbacks=[deadline_callback(deadline)], verbose_eval=False)
    best = getattr(booster, "best_iteration", None) if evals else None
    return booster, best


def predict_proba(booster, dmat, best_iteration: int | None = None) -> np.ndarray:
    if best_iteration is not None:
        return booster.predict(dmat, iteration_range=(0, best_iteration + 1))
    return booster.predict(dmat)


def sklearn_params(rec: Recipe) -> dict[str, Any]:
    """The recipe as keyword arguments of XGBClassifier / SparkXGBClassifier."""
    # SparkXGBClassifier sets the objective itself and refuses one given; XGBClassifier infers the same.
    out = {k: v for k, v in rec.params.items() if k not in ("seed", "nthread", "verbosity", "objective")}
    out["n_estimators"] = rec.rounds
    out["random_state"] = rec.params["seed"]
    return out
