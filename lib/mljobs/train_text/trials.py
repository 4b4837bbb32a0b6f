"""One trial's fold for the study loop (mljobs.studies.loop): fit the features and the
classifier on the other CV folds' preprocessed rows, score the held-out fold in Spark."""
from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mljobs.errors import error_text
from mljobs.models.text import model_stages, prediction_metrics
from mljobs.studies.folds import FOLD_COL


def fold_value(metrics: dict[str, Any], metric: str) -> float:
    return float(metrics["macro_f1"] if metric == "f1_macro" else metrics[metric])


class TextTrials:
    """evaluate_fold(params, fold, seconds_left) -> {"status", "value"}, the loop's executor."""

    def __init__(self, prepped: DataFrame, algorithm: str, labels: list[str], metric: str, seed: int):
        self.prepped, self.algorithm, self.labels, self.metric, self.seed = prepped, algorithm, labels, metric, seed

    def fit(self, params: dict[str, Any], rows: DataFrame):
        from pyspark.ml import Pipeline

        return Pipeline(stages=model_stages(self.algorithm, params, len(self.labels), self.seed)).fit(rows)

    def evaluate_fold(self, params: dict[str, Any], fold: int, left: float | None) -> dict[str, Any]:
        try:
            model = self.fit(params, self.prepped.where(F.col(FOLD_COL) != fold))
            held_out = model.transform(self.prepped.where(F.col(FOLD_COL) == fold))
            return {"status": "ok", "value": fold_value(prediction_metrics(held_out, self.labels), self.metric)}
        except Exception as exc:  # the loop records it as the trial's error
            return {"status": "error", "error": f"{type(exc).__name__}: {error_text(exc, 500)}"}

    def close(self) -> None:
        pass
