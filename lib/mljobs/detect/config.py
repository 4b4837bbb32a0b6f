"""Options of the detect job (one dataclass, each default on its field); validated once,
when the config is built, before Spark starts."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from mljobs.config import JobConfig, parse_table_name
from mljobs.errors import InputError, MljobsError
from mljobs.models.detectors import DetectorSpec, DetectParams, ModelError, resolve_model
from mljobs.uris import is_uri, local_of

QUARANTINE_SUFFIX = "_quarantine"


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _given(value) -> str | None:
    """A flag's text, None when not given or blank."""
    return None if value is None else (str(value).strip() or None)


@dataclass
class DetectConfig(JobConfig):
    """Options of one detect run (the flags of ``jobs/detect.py``; conf/detect.yaml may set any)."""

    model: str  # opencv:hog-people, opencv:haarcascade_<name> or a model directory of train-detector
    out_table: str  # the detections table DB.NAME (+ <out_table>_quarantine)
    # exactly one of frames and videos
    frames: str | None = None  # the frames table DB.NAME (video, frame, content; or an images table: path, content)
    videos: str | None = None  # video files (a file, a directory, a glob; local, s3://, s3a://), decoded in tasks
    every: int = 1  # --videos: score frames 1, 1+N, 1+2N, ... of each video (as the frames job keeps them)
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
        self.check_input()
        out = parse_table_name(self.out_table)
        frames = parse_table_name(self.frames) if self.frames else None
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

    def check_input(self) -> None:
        """Exactly one of --frames and --videos; --every only with --videos."""
        self.frames, self.videos = _given(self.frames), _given(self.videos)
        if (self.frames is None) == (self.videos is None):
            given = "both" if self.frames else "neither"
            raise InputError(f"detect reads exactly one of --frames DB.NAME (a frames table) and --videos "
                             f"DIR|GLOB|s3://... (video files, decoded in the tasks); {given} given")
        if not _count(self.every) or self.every < 1:
            raise MljobsError(f"--every must be an integer >= 1, got {self.every!r}")
        if self.frames is not None and self.every != 1:
            raise MljobsError("--every applies to --videos; a frames table is scored as it is "
                              "(the frames job's --every chose its frames)")
        if self.videos is not None and not is_uri(self.videos) and not re.search(r"[*?\[{]", self.videos) \
                and not local_of(self.videos).exists():
            raise InputError(f"--videos {self.videos} does not exist")

    @property
    def source(self) -> str:
        """What is scored: the frames table, or the videos."""
        return self.frames or self.videos

    def params(self, threads: int = 1) -> DetectParams:
        return DetectParams(self.scale_factor, self.min_neighbors, self.min_size, self.score_min, threads)

    @property
    def output_tables(self) -> tuple[str, str, str]:
        """(database, detections table, quarantine table)."""
        db, name = parse_table_name(self.out_table)
        return db, name, name + QUARANTINE_SUFFIX
