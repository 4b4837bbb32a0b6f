"""Options of the predict-text job (one dataclass, each default on its field); validated once,
when the config is built, before Spark starts."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mljobs.config import (JobConfig, check_output_columns, check_scored_tables, parse_table_name, split_names,
                           validate_identifier)
from mljobs.models.artifact import check_model_location

DEFAULT_TABLE = "text_predictions"
PROBS = "_probs"  # the class probabilities as an array, an intermediate column of the scoring
RESERVED = ("predicted_label", "probability", "probabilities", "model_study", "scored_at", "run_id", PROBS)


@dataclass
class PredictTextConfig(JobConfig):
    """Options of one predict-text run (the flags of ``jobs/predict_text.py``)."""

    model: str
    table: str
    text_col: str | None = None   # None: the model's text column
    out_table: str | None = None  # None: <db of --table>.text_predictions
    id_col: str | None = None     # None: a generated row_id
    keep: list[str] = field(default_factory=list)
    where: str | None = None

    @classmethod
    def coerce(cls, values: dict[str, Any]) -> dict[str, Any]:
        values = dict(values)
        if "keep" in values:
            values["keep"] = split_names(values["keep"])
        return values

    def validate(self) -> None:
        check_model_location(self.model)
        check_scored_tables(self.table, self.out_table, self.output_table, self.where)
        if self.text_col:
            validate_identifier(self.text_col, "column name (--text-col)")
        check_output_columns(([self.id_col] if self.id_col else []) + list(self.keep), RESERVED, "--id-col / --keep")

    @property
    def output_table(self) -> tuple[str, str]:
        if self.out_table:
            return parse_table_name(self.out_table)
        return parse_table_name(self.table)[0], DEFAULT_TABLE
