"""Parallel-trials mode: the data fits one executor, so trials run as independent Spark tasks.

The training matrix (float32 features, labels, fold ids) is collected once and
broadcast: Spark ships a broadcast to each executor once, and each Python worker
deserialises it once and keeps it (worker reuse), together with the per-fold xgboost
matrices built from it (cached by data id, fold and max_bin). A trial's fold is then one
single-task Spark job that trains single-node xgboost on that copy and returns only the
score: nothing is re-sent per trial. This is what Hyperopt's SparkTrials does, minus the
per-trial data shipping.
"""
from __future__ import annotations

import os
import time
import traceback
import uuid
from typing import Any

import numpy as np

from mljobs.tune import trainer
from mljobs.tune.metrics import compute_metric

# Per Python worker: data id -> {key: (dtrain, dvalid, yvalid)}
_DMATRIX_CACHE: dict[str, dict[tuple, Any]] = {}


def _matrices(data_id: str, data: dict, fold: int | None, max_bin: int):
    import xgboost as xgb

    cache = _DMATRIX_CACHE.setdefault(data_id, {})
    if len(_DMATRIX_CACHE) > 1:  # a new study's data: drop the old one
        for k in [k for k in _DMATRIX_CACHE if k != data_id]:
            del _DMATRIX_CACHE[k]
    key = (fold, max_bin)
    if key not in cache:
        X, y, folds = data["X"], data["y"], data["fold"]
        if fold is None:
            cache[key] = (xgb.QuantileDMatrix(X, y, max_bin=max_bin), None, None)
        else:
            tr, va = folds != fold, folds == fold
            dtrain = xgb.QuantileDMatrix(X[tr], y[tr], max_bin=max_bin)
            dvalid = xgb.QuantileDMatrix(X[va], y[va], ref=dtrain)
            cache[key] = (dtrain, dvalid, y[va])
    return cache[key]


def fold_task(data_id: str, bc, family: str, hp: dict, fold: int | None, seed: int, metric: str,
              nthread: int, device: str | None, time_left_s: float | None) -> dict:
    """Runs on an executor: one fold of one trial (fold None: fit on all rows, return the model)."""
    t0 = time.time()
    deadline = t0 + time_left_s if time_left_s else None
    try:
        rec = trainer.recipe(family, hp, seed, nthread=nthread, device=device)
        dtrain, dvalid, yvalid = _matrices(data_id, bc.value, fold, int(rec.params.get("max_bin", 256)))
        booster, best = trainer.train_booster(rec, dtrain, dvalid, deadline)
        out: dict[str, Any] = {"status": "ok", "best_iteration": best, "host": os.uname().nodename}
        if fold is None:
            out["model"] = bytes(booster.save_raw("json"))
        else:
            prob = trainer.predict_proba(booster, dvalid, best)
            out["value"] = compute_metric(metric, prob, yvalid)
    except trainer.TrialTimeout as exc:
        out = {"status": "timeout", "error": str(exc)}
    except Exception as exc:  # reported as a FAILED trial; the study goes on
        out = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
               "traceback": traceback.format_exc(limit=5)}
    out["seconds"] = time.time() - t0
    return out


class ParallelTrials:
    mode = "parallel"

    def __init__(self, spark, data: dict[str, np.ndarray], family: str, seed: int, metric: str,
                 nthread: int, device: str | None = None, final_nthread: int | None = None):
        self.spark = spark
        self.sc = spark.sparkContext
        self.family, self.seed, self.metric = family, seed, metric
        self.nthread, self.device = nthread, device
        self.final_nthread = final_nthread or nthread  # the refit runs alone: it may use a whole executor
        self.data_id = uuid.uuid4().hex
        self.arrays = data  # the driver's copy: the refit's training metrics are scored on it
        self.bc = self.sc.broadcast(data)
        self.rows = int(len(data["y"]))

    def _run(self, hp: dict, fold: int | None, time_left_s: float | None) -> dict:
        args = (self.data_id, self.bc, self.family, dict(hp), fold, self.seed, self.metric,
                self.final_nthread if fold is None else self.nthread, self.device, time_left_s)
        return self.sc.parallelize([0], 1).map(lambda _: fold_task(*args)).collect()[0]

    def evaluate_fold(self, hp: dict, fold: int, time_left_s: float | None) -> dict:
        return self._run(hp, fold, time_left_s)

    def evaluate_folds(self, hp: dict, folds: list[int], time_left_s: float | None) -> list[dict]:
        """Several folds of one trial as one Spark job, a task each (results in ``folds`` order). The
        trial's time limit is a wall-clock deadline: a task that waited for a slot has less time."""
        const = (self.data_id, self.bc, self.family, dict(hp))
        rest = (self.seed, self.metric, self.nthread, self.device)
        at = time.time() + time_left_s if time_left_s is not None else None

        def one(f):
            return fold_task(*const, f, *rest, None if at is None else max(at - time.time(), 1e-3))

        return self.sc.parallelize(list(folds), len(folds)).map(one).collect()

    def fit_final(self, hp: dict, time_left_s: float | None = None):
        import xgboost as xgb

        out = self._run(hp, None, time_left_s)
        if out["status"] != "ok":
            raise RuntimeError(f"final fit {out['status']}: {out.get('error')}")
        booster = xgb.Booster()
        booster.load_model(bytearray(out["model"]))
        return booster

    def close(self) -> None:
        try:
            self.bc.destroy()
        except Exception:
            pass
