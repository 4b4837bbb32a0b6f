"""Options of the ingest-images job (one dataclass, each default on its field); validated once,
when the config is built, before Spark starts."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mljobs.config import JobConfig, WithQuarantine
from mljobs.errors import InputError, MljobsError
from mljobs.uris import is_uri, local_of

LABEL_SOURCES = ("folders", "manifest")


@dataclass
class IngestImagesConfig(WithQuarantine, JobConfig):
    """What to read and where it goes (the flags of ``jobs/ingest_images.py``)."""

    input: str
    table: str
    labels: str = "folders"             # folders | manifest (then --labels manifest FILE)
    manifest: str | None = None
    label_attribute: str | None = None  # the manifest's label attribute (default: the only one)
    test_fraction: float = 0.2
    split_seed: int = 0
    min_size: int = 8                   # pixels, the shorter side
    max_bad_fraction: float = 0.1       # more files quarantined than this fails the run (exit 3)

    @classmethod
    def coerce(cls, values: dict[str, Any]) -> dict[str, Any]:
        """``--labels manifest FILE`` arrives as a list: its source and the manifest."""
        values = dict(values)
        labels = values.get("labels")
        if isinstance(labels, list):
            if not labels or len(labels) > 2:
                raise MljobsError(f"--labels takes folders, or manifest FILE; got {' '.join(labels)!r}")
            values["labels"] = labels[0]
            if len(labels) == 2:
                values["manifest"] = labels[1]
        return values

    def validate(self) -> None:
        self.check_tables()
        if self.labels not in LABEL_SOURCES:
            raise MljobsError(f"--labels {self.labels!r}: valid are folders, manifest FILE")
        if self.labels == "manifest" and not self.manifest:
            raise MljobsError("--labels manifest needs the manifest file: --labels manifest FILE")
        if self.labels == "folders" and self.manifest:
            raise MljobsError("a manifest is given but --labels is folders: pass --labels manifest FILE")
        for what, where in (("--input", self.input), ("the manifest", self.manifest)):
            if where and not is_uri(where) and not local_of(where).exists():
                raise InputError(f"{what} {where} does not exist")
        if not 0.0 <= float(self.test_fraction) < 1.0:
            raise MljobsError(f"--test-fraction must be in [0, 1), got {self.test_fraction}")
        if int(self.min_size) < 1:
            raise MljobsError(f"--min-size must be at least 1 pixel, got {self.min_size}")
        if not 0.0 <= float(self.max_bad_fraction) <= 1.0:
            raise MljobsError(f"--max-bad-fraction must be in [0, 1], got {self.max_bad_fraction}")
