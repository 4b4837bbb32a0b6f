"""Options of the classify job (one dataclass, each default on its field); validated once, when
the config is built, before Spark starts."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mljobs.config import JobConfig, check_output_columns, parse_table_name, split_names, validate_identifier
from mljobs.errors import InputError, MljobsError
from mljobs.models.artifact import check_model_location
from mljobs.uris import is_uri, local_of

# --min-confidence spellings besides a number in [0, 1] (see job.thresholds).
AUTO, ASSUMED = "auto", "assumed"
DEFAULT_KEEP = "path"
# The output's own columns (a kept column of the same name would clash); reason and detail are
# the quarantine's.
RESERVED = ("sha256", "labels", "label", "confidence", "model", "model_sha256", "run_id", "reason", "detail")


@dataclass
class ClassifyConfig(JobConfig):
    """What to label, with which model, and where the labels go (the flags of ``jobs/classify.py``)."""

    model: str                            # a train-classifier model directory, local or a URI
    out_table: str
    table: str | None = None              # a table with a binary content column (an ingest-images table) ...
    input: str | None = None              # ... or image files under a directory (exactly one of the two)
    min_confidence: str | float = AUTO    # a probability in [0, 1], assumed, or auto (assumed if known, else 0.5)
    top_k: int | None = None              # None: every label at or over its threshold
    batch_size: int = 64                  # images per Arrow batch and per forward pass
    keep: list[str] | None = None         # None: path, when the rows have one

    @classmethod
    def coerce(cls, values: dict[str, Any]) -> dict[str, Any]:
        values = dict(values)
        if values.get("keep") is not None:
            values["keep"] = split_names(values["keep"])
        mc = values.get("min_confidence")
        if isinstance(mc, str) and mc.strip().lower() not in (AUTO, ASSUMED):
            try:
                values["min_confidence"] = float(mc)
            except ValueError:
                raise MljobsError(f"--min-confidence {mc!r}: a probability in [0, 1], {ASSUMED} or {AUTO}") from None
        return values

    def validate(self) -> None:
        check_model_location(self.model)
        if (self.table is None) == (self.input is None):
            raise MljobsError("give exactly one of --table DB.NAME (a table with a binary content column) "
                              "and --input DIR (image files)")
        out = parse_table_name(self.out_table)
        validate_identifier(out[1] + "_quarantine", "quarantine table name")
        if self.table is not None and parse_table_name(self.table) in (out, self.quarantine):
            raise MljobsError(f"--out-table {self.out_table} would overwrite the table being labelled; name another")
        if self.input is not None and not is_uri(self.input) and not local_of(self.input).exists():
            raise InputError(f"--input {self.input} does not exist")
        if isinstance(self.min_confidence, str):
            self.min_confidence = self.min_confidence.strip().lower()
            if self.min_confidence not in (AUTO, ASSUMED):
                raise MljobsError(f"--min-confidence {self.min_confidence!r}: a probability in [0, 1], "
                                  f"{ASSUMED} or {AUTO}")
        elif isinstance(self.min_confidence, bool) or not 0.0 <= float(self.min_confidence) <= 1.0:
            raise MljobsError(f"--min-confidence must be in [0, 1] (a probability, not a percentage), "
                              f"got {self.min_confidence}")
        if self.top_k is not None and int(self.top_k) < 1:
            raise MljobsError(f"--top-k must be at least 1, got {self.top_k}")
        if int(self.batch_size) < 1:
            raise MljobsError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.keep is not None:
            check_output_columns(self.keep, RESERVED, "--keep")

    @property
    def output(self) -> tuple[str, str]:
        return parse_table_name(self.out_table)

    @property
    def quarantine(self) -> tuple[str, str]:
        db, name = parse_table_name(self.out_table)
        return db, name + "_quarantine"
