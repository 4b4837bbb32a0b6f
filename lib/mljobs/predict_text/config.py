"""Options of the predict-text job (one dataclass, each default on its field); validated once,
when the config is built, before Spark starts."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mljobs.config import JobConfig, parse_table_name, validate_identifier
from mljobs.errors import MljobsError
from mljobs.models.artifact import check_model_location

DEFAULT_TABLE = "text_predictions"
RESERVED = ("predicted_label", "probability", "probabilities", "model_study", "scored_at", "run_id")


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
        keep = values.get("keep")
        if isinstance(keep, str):
            keep = [keep]
        if isinstance(keep, list):
            values["keep"] = [c.strip() for k in keep for c in str(k).split(",") if c.strip()]
        return values

    def validate(self) -> None:
        check_model_location(self.model)
        parse_table_name(self.table)
        if self.out_table is not None:
            parse_table_name(self.out_table)
        if self.output_table == parse_table_name(self.table):
            raise MljobsError(f"--out-table {'.'.join(self.output_table)} is the table being scored; name another")
        if self.where is not None and not str(self.where).strip():
            raise MljobsError("--where is empty")
        for c in ([self.text_col] if self.text_col else []) + ([self.id_col] if self.id_col else []) + list(self.keep):
            validate_identifier(c, "column name (--text-col / --id-col / --keep)")
        clash = [c for c in ([self.id_col] if self.id_col else []) + list(self.keep) if c.lower() in RESERVED]
        if clash:
            raise MljobsError(f"columns {clash} clash with the output columns ({', '.join(RESERVED)})")

    @property
    def output_table(self) -> tuple[str, str]:
        if self.out_table:
            return parse_table_name(self.out_table)
        return parse_table_name(self.table)[0], DEFAULT_TABLE
