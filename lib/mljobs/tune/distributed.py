"""Distributed mode: each fold's fit is one distributed xgboost training over the DataFrame.

``xgboost.spark.SparkXGBClassifier`` runs in barrier mode: all ``num_workers`` tasks of a
fit must hold a task slot at once. So concurrent trials need num_workers × max_parallel
free slots, and dynamic allocation must be off; both are checked before any training,
with an error that says what to change, instead of a barrier job waiting forever.
"""
from __future__ import annotations

import time
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mljobs.errors import MljobsError
from mljobs.tune import trainer
from mljobs.studies.folds import FOLD_COL
from mljobs.tune.metrics import metric_from_counts
from mljobs.errors import error_text


def task_slots(spark) -> int:
    """Task slots the application has now (executor cores / task cpus), from the status tracker."""
    sc = spark.sparkContext
    conf = sc.getConf()
    cpus = int(conf.get("spark.task.cpus", "1"))
    master = conf.get("spark.master", "")
    if master.startswith("local"):
        return max(1, sc.defaultParallelism // cpus)
    infos = sc._jsc.sc().statusTracker().getExecutorInfos()
    executors = max(0, len(infos) - 1)  # one entry is the driver
    cores = int(conf.get("spark.executor.cores", "1"))
    return max(1, executors * cores // cpus) if executors else max(1, sc.defaultParallelism // cpus)


def check_barrier(spark, num_workers: int, max_parallel: int) -> None:
    conf = spark.sparkContext.getConf()
    if conf.get("spark.dynamicAllocation.enabled", "false").lower() == "true":
        raise MljobsError("distributed mode trains in Spark barrier mode, which does not work with "
                          "spark.dynamicAllocation.enabled=true: use --env emr (it turns it off) or "
                          "--conf spark.dynamicAllocation.enabled=false, or --mode parallel")
    slots = task_slots(spark)
    need = num_workers * max_parallel
    if need > slots:
        raise MljobsError(f"distributed mode needs num_workers × max_parallel = {num_workers} × {max_parallel} = "
                          f"{need} task slots at once (barrier mode), the application has {slots}: lower "
                          "--max-parallel or --num-workers, or add executors")


class DistributedTrials:
    mode = "distributed"

    def __init__(self, spark, df: DataFrame, features: list[str], label: str, family: str, seed: int,
                 metric: str, num_workers: int, device: str | None = None):
        self.spark, self.df = spark, df
        self.features, self.label = features, label
        self.family, self.seed, self.metric = family, seed, metric
        self.num_workers, self.device = num_workers, device
        self.rows = None

    def _estimator(self, hp: dict, deadline: float | None, with_validation: bool):
        import logging

        from xgboost.spark import SparkXGBClassifier

        # xgboost.spark logs every fit's full parameter set at INFO: our progress line says it once.
        logging.getLogger("XGBoost-PySpark").setLevel(logging.WARNING)
        rec = trainer.recipe(self.family, hp, self.seed)
        kwargs: dict[str, Any] = trainer.sklearn_params(rec)
        if rec.early_stopping_rounds and with_validation:
            kwargs["early_stopping_rounds"] = rec.early_stopping_rounds
            kwargs["validation_indicator_col"] = "_is_valid"
        if self.device:
            kwargs["device"] = self.device
        return SparkXGBClassifier(features_col=list(self.features), label_col=self.label,
                                  num_workers=self.num_workers, callbacks=[trainer.deadline_callback(deadline)],
                                  **kwargs), rec

    def evaluate_fold(self, hp: dict, fold: int, time_left_s: float | None) -> dict:
        t0 = time.time()
        deadline = t0 + time_left_s if time_left_s else None
        try:
            est, rec = self._estimator(hp, deadline, with_validation=True)
            if rec.early_stopping_rounds:
                train = self.df.withColumn("_is_valid", F.col(FOLD_COL) == fold)
            else:
                train = self.df.filter(F.col(FOLD_COL) != fold)
            model = est.fit(train)
            valid = self.df.filter(F.col(FOLD_COL) == fold)
            from pyspark.ml.functions import vector_to_array

            pred = model.transform(valid).select(
                vector_to_array(F.col("probability"))[1].alias("p"), F.col(f"`{self.label}`").alias("y"))
            rows = (pred.groupBy("p")
                        .agg(F.sum((F.col("y") == 1).cast("double")).alias("pos"),
                             F.sum((F.col("y") != 1).cast("double")).alias("neg"))
                        .collect())
            value = metric_from_counts(self.metric, [r["p"] for r in rows], [r["pos"] for r in rows],
                                       [r["neg"] for r in rows])
            out = {"status": "ok", "value": value, "best_iteration": None}
        except Exception as exc:
            if _is_timeout(exc):
                out = {"status": "timeout", "error": "past the trial's time limit"}
            else:
                out = {"status": "failed", "error": f"{type(exc).__name__}: {error_text(exc, 500)}"}
        out["seconds"] = time.time() - t0
        return out

    def fit_final(self, hp: dict, time_left_s: float | None = None):
        deadline = time.time() + time_left_s if time_left_s else None
        est, _ = self._estimator(hp, deadline, with_validation=False)
        return est.fit(self.df).get_booster()

    def close(self) -> None:
        pass


def _is_timeout(exc: BaseException) -> bool:
    return "TrialTimeout" in f"{type(exc).__name__} {exc}"

