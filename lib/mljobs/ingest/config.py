"""Options of the ingest job."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from mljobs.config import JobConfig, parse_table_name, validate_identifier
from mljobs.errors import MljobsError
from mljobs.ingest import schema

MODES = ("airline", "byod")
FORMATS = ("auto", "csv", "parquet")
# auto: arrow for airline-mode CSV on CPU environments, Spark's own reader otherwise
# (under emr-gpu the RAPIDS CSV scan runs it). See mljobs.ingest.arrowstage.
READERS = ("auto", "arrow", "spark")
# --partition-by arrives under its own key: a YAML partition_by applies in airline mode
# only, the flag in every mode ('' = no partitioning). See IngestConfig.coerce.
PARTITION_FLAG = "partition_by_flag"


def comma_list(text: str) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']."""
    return [c.strip() for c in text.split(",") if c.strip()]


@dataclass
class IngestConfig(JobConfig):
    """What to ingest and where; validated when built, before any Spark work."""

    inputs: list[str]
    table: str
    mode: str = "airline"
    format: str = "auto"
    label: str | None = None
    features: list[str] | None = None
    # None: by mode (airline: schema.PARTITION_BY, byod: none).
    partition_by: list[str] | None = None
    max_bad_fraction: float = 0.01
    delimiter: str = ","
    reader: str = "auto"
    db: str = field(init=False, default="")
    name: str = field(init=False, default="")

    @classmethod
    def coerce(cls, values: dict[str, Any]) -> dict[str, Any]:
        values = dict(values)
        mode = values.get("mode", cls._default("mode"))
        if PARTITION_FLAG in values:
            values["partition_by"] = comma_list(values.pop(PARTITION_FLAG))
        elif mode != "airline":
            values.pop("partition_by", None)
        if isinstance(values.get("partition_by"), str):
            values["partition_by"] = comma_list(values["partition_by"])
        if isinstance(values.get("features"), str):
            values["features"] = [c.strip() for c in values["features"].split(",")] if values["features"] else None
        return values

    @classmethod
    def _default(cls, name: str):
        return next(f.default for f in fields(cls) if f.name == name)

    def validate(self) -> None:
        if not self.inputs:
            raise MljobsError("no input given: pass --input PATH [PATH ...]")
        self.db, self.name = parse_table_name(self.table)
        validate_identifier(self.name + "_quarantine", "quarantine table name")
        if self.mode not in MODES:
            raise MljobsError(f"unknown mode {self.mode!r}; valid: {', '.join(MODES)}")
        if self.format not in FORMATS:
            raise MljobsError(f"unknown format {self.format!r}; valid: {', '.join(FORMATS)}")
        try:
            self.max_bad_fraction = float(self.max_bad_fraction)
        except (TypeError, ValueError):
            raise MljobsError(f"--max-bad-fraction must be a number, got {self.max_bad_fraction!r}") from None
        if not (0.0 <= self.max_bad_fraction <= 1.0):
            raise MljobsError(f"--max-bad-fraction must be within [0, 1], got {self.max_bad_fraction}")
        if self.reader not in READERS:
            raise MljobsError(f"unknown reader {self.reader!r}; valid: {', '.join(READERS)}")
        if self.reader == "arrow" and (self.mode != "airline" or self.format == "parquet"):
            raise MljobsError("--reader arrow reads airline-mode CSV; byod mode and Parquet inputs use Spark's reader "
                              "(leave --reader auto)")
        if len(self.delimiter) != 1:
            raise MljobsError(f"--delimiter must be one character, got {self.delimiter!r}")
        if self.mode == "byod" and not self.label:
            raise MljobsError("bring-your-own-data mode needs --label COL")
        if self.mode == "airline" and self.features:
            raise MljobsError("--features applies to byod mode; airline mode has a fixed feature set")
        if self.partition_by is None:
            self.partition_by = list(schema.PARTITION_BY) if self.mode == "airline" else []
        for col in self.partition_by:
            validate_identifier(col, "partition column")

    @property
    def full_name(self) -> str:
        return f"{self.db}.{self.name}"

    @property
    def quarantine_name(self) -> str:
        return f"{self.db}.{self.name}_quarantine"
