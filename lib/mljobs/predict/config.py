"""Options of the predict job (one dataclass, each default on its field); validated once,
when the config is built, before Spark starts."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mljobs.config import JobConfig, check_output_columns, check_scored_tables, parse_table_name, split_names
from mljobs.errors import MljobsError
from mljobs.models.artifact import check_model_location

DEFAULT_TABLE = "predictions"
RESERVED = ("probability", "prediction", "margin", "model_study", "model_sha256", "scored_at", "run_id")


@dataclass
class PredictConfig(JobConfig):
    """Options of one predict run (the flags of ``jobs/predict.py``; conf/predict.yaml may set any)."""

    model: str
    table: str
    where: str | None = None
    id_col: str | None = None
    out_table: str | None = None  # default: <db of --table>.predictions
    threshold: float = 0.5
    keep: list[str] = field(default_factory=list)
    metrics: bool = True  # the label's metrics when the table has the model's label column
    batch_rows: int | None = None  # Arrow batch size of the scoring tasks; None: batch_size_for(features)

    @classmethod
    def coerce(cls, values: dict[str, Any]) -> dict[str, Any]:
        """--keep a,b (or a YAML string) as a list; --no-metrics."""
        values = dict(values)
        if values.pop("no_metrics", False):
            values["metrics"] = False
        if "keep" in values:
            values["keep"] = split_names(values["keep"])
        return values

    def validate(self) -> None:
        check_model_location(self.model)
        check_scored_tables(self.table, self.out_table, self.output_table, self.where)
        if not isinstance(self.threshold, (int, float)) or isinstance(self.threshold, bool) \
                or math.isnan(self.threshold) or not 0.0 <= self.threshold <= 1.0:
            raise MljobsError(f"--threshold must be within [0, 1], got {self.threshold!r}")
        if self.batch_rows is not None and (not isinstance(self.batch_rows, int) or isinstance(self.batch_rows, bool)
                                            or self.batch_rows < 1):
            raise MljobsError(f"batch_rows must be an integer >= 1, got {self.batch_rows!r}")
        check_output_columns(([self.id_col] if self.id_col else []) + list(self.keep), RESERVED, "--id-col / --keep")

    def batch_size_for(self, n_features: int) -> int:
        """--batch-rows, else about 4M input values per Arrow batch (32 MiB of doubles), 10,000 to
        100,000 rows: large batches halve the per-batch costs of Arrow and pandas (measured in
        bench/predict.py); the bound keeps a wide model's batch small."""
        if self.batch_rows:
            return self.batch_rows
        return max(10_000, min(100_000, 4_000_000 // max(1, n_features)))

    @property
    def output_table(self) -> tuple[str, str]:
        """(database, name) of the predictions table."""
        if self.out_table:
            return parse_table_name(self.out_table)
        return parse_table_name(self.table)[0], DEFAULT_TABLE
