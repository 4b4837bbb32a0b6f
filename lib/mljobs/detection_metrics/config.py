"""Options of the detection-metrics job: what to evaluate and how; validated before Spark starts."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from mljobs.config import JobConfig, parse_table_name, validate_identifier
from mljobs.readers import is_path
from mljobs.detection_metrics.matching import MATCH_METHODS, MatchParams
from mljobs.errors import MljobsError
from mljobs.uris import output_location

# auto: where both inputs are one local file each (CSV or COCO JSON) in the local env, the
# Python workers read, check and match them (detection_metrics.fastpath) and Spark's path
# takes over whenever they find anything not clean; spark: always Spark's path.
READERS = ("auto", "spark")


@dataclass
class DetectionConfig(JobConfig):
    """What to evaluate and how; validated when built (``JobConfig.__post_init__``)."""

    gt: str
    pred: str
    conf_thr: float = 0.9
    iou_thr: float = 0.5
    match: str = "greedy"
    merge_labels: bool = False
    pixel_plus_one: bool = False
    snap: str | None = None
    nfl_impact: bool = False
    out_db: str = "detection"
    plots_dir: str | None = None
    max_plots: int = 200
    max_bad_fraction: float = 0.05
    videos_dir: str | None = None
    worst_frames: int = 6
    reader: str = "auto"
    coco_only: bool = False
    snap_frame: int | None = field(init=False, default=None)

    def validate(self) -> None:
        output_location(self.plots_dir, "--plots")
        for name, value in (("--gt", self.gt), ("--pred", self.pred)):
            if not value or not str(value).strip():
                raise MljobsError(f"{name} is empty: pass a table name or a CSV/Parquet path")
            if not is_path(value):
                parse_table_name(value)
        if not (0.0 <= self.conf_thr <= 1.0) or math.isnan(self.conf_thr):
            raise MljobsError(f"--conf-thr must be within [0, 1], got {self.conf_thr}")
        if not (0.0 < self.iou_thr <= 1.0) or math.isnan(self.iou_thr):
            raise MljobsError(f"--iou-thr must be within (0, 1], got {self.iou_thr}")
        if self.match not in MATCH_METHODS:
            raise MljobsError(f"unknown --match {self.match!r}; valid: {', '.join(MATCH_METHODS)}")
        validate_identifier(self.out_db, "database name (--out-db)")
        if self.max_plots < 0:
            raise MljobsError(f"--max-plots must be >= 0, got {self.max_plots}")
        if not (0.0 <= self.max_bad_fraction <= 1.0):
            raise MljobsError(f"--max-bad-fraction must be within [0, 1], got {self.max_bad_fraction}")
        if self.reader not in READERS:
            raise MljobsError(f"unknown --reader {self.reader!r}; valid: {', '.join(READERS)}")
        if self.worst_frames < 0:
            raise MljobsError(f"--worst-frames must be >= 0, got {self.worst_frames}")
        per_frame = [flag for flag, on in (("--nfl-impact", self.nfl_impact), ("--snap", self.snap is not None),
                                           ("--videos", self.videos_dir is not None)) if on]
        if self.coco_only and per_frame:
            verb = "belongs" if len(per_frame) == 1 else "belong"
            raise MljobsError(f"--coco-only computes COCO's figures alone; {', '.join(per_frame)} {verb} to the "
                              "per-frame analysis it skips")
        self.snap_frame = self._snap_frame()

    def _snap_frame(self) -> int | None:
        """--snap as one frame number for every video, else None (a table or a path)."""
        if self.snap is None:
            return None
        text = str(self.snap).strip()
        if text.lstrip("-").isdigit():
            return int(text)
        if not is_path(text):
            parse_table_name(text)
        return None

    @property
    def params(self) -> MatchParams:
        return MatchParams(self.conf_thr, self.iou_thr, self.match, self.pixel_plus_one, coco=True)
