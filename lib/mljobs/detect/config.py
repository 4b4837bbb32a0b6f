"""Options of the detect job (one dataclass, each default on its field); validated once,
when the config is built, before Spark starts."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from mljobs.config import JobConfig, parse_table_name
from mljobs.errors import MljobsError
from mljobs.models.detectors import DetectorSpec, DetectParams, ModelError, resolve_model

QUARANTINE_SUFFIX = "_quarantine"


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class DetectConfig(JobConfig):
    """Options of one detect run (the flags of ``jobs/detect.py``; conf/detect.yaml may set any)."""

    model: str  # opencv:hog-people, opencv:haarcascade_<name> or a model directory of train-detector
    frames: str  # the frames table DB.NAME (video, frame, content; or an images table: path, content)
    out_table: str  # the detections table DB.NAME (+ <out_table>_quarantine)
    score_min: float = 0.0  # detections with a lower score are not written (score = logistic of the margin)
    batch_size: int = 16  # frames per Arrow batch of the detection tasks
    min_size: int = 0  # boxes narrower or lower than this (pixels) are not reported
    scale_factor: float | None = None  # image pyramid step; None: OpenCV's default (HOG 1.05, Haar 1.1)
    min_neighbors: int | None = None  # overlapping hits a box needs; None: OpenCV's default (HOG 2, Haar 3)
    spec: DetectorSpec = field(init=False, repr=False, default=None)

    def validate(self) -> None:
        try:
            self.spec = resolve_model(self.model)
        except ModelError as exc:
            raise MljobsError(str(exc)) from None
        frames, out = parse_table_name(self.frames), parse_table_name(self.out_table)
        if frames == out or (out[0], out[1] + QUARANTINE_SUFFIX) == frames:
            raise MljobsError(f"--out-table {self.out_table} would overwrite the frames table {self.frames}")
        if not _number(self.score_min) or not 0.0 <= self.score_min <= 1.0:
            raise MljobsError(f"--score-min must be a number within [0, 1], got {self.score_min!r}")
        if not _count(self.batch_size) or self.batch_size < 1:
            raise MljobsError(f"--batch-size must be an integer >= 1, got {self.batch_size!r}")
        if not _count(self.min_size) or self.min_size < 0:
            raise MljobsError(f"--min-size must be an integer >= 0, got {self.min_size!r}")
        if self.scale_factor is not None and (not _number(self.scale_factor) or self.scale_factor <= 1.0):
            raise MljobsError(f"--scale-factor must be a number > 1, got {self.scale_factor!r}")
        if self.min_neighbors is not None and (not _count(self.min_neighbors) or self.min_neighbors < 0):
            raise MljobsError(f"--min-neighbors must be an integer >= 0, got {self.min_neighbors!r}")

    def params(self, threads: int = 1) -> DetectParams:
        return DetectParams(self.scale_factor, self.min_neighbors, self.min_size, self.score_min, threads)

    @property
    def output_tables(self) -> tuple[str, str, str]:
        """(database, detections table, quarantine table)."""
        db, name = parse_table_name(self.out_table)
        return db, name, name + QUARANTINE_SUFFIX
