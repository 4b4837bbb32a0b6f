"""Options of the frames job (one dataclass, each default on its field); validated once, when the
config is built, before Spark starts."""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

from mljobs.argtypes import frame_size
from mljobs.config import JobConfig, WithQuarantine
from mljobs.errors import InputError, MljobsError
from mljobs.uris import is_uri, local_of
from mljobs.video import FORMATS, FrameSpec


@dataclass
class FramesConfig(WithQuarantine, JobConfig):
    """What to read and where it goes (the flags of ``jobs/frames.py``)."""

    videos: str                       # a video, a directory of videos, a glob; local, s3:// or s3a://
    table: str
    every: int = 1                    # keep frames 1, 1+N, 1+2N, ...
    resize: str | None = None         # WIDTHxHEIGHT of the stored frames (None: as decoded)
    format: str = "jpeg"              # jpeg | png (png: lossless, the decoded pixels exactly)
    jpeg_quality: int = 95

    def validate(self) -> None:
        self.check_tables()
        if not is_uri(self.videos) and not re.search(r"[*?\[{]", str(self.videos)) \
                and not local_of(self.videos).exists():
            raise InputError(f"--videos {self.videos} does not exist")
        if int(self.every) < 1:
            raise MljobsError(f"--every must be at least 1, got {self.every}")
        if self.resize is not None:
            try:
                self.resize = "{}x{}".format(*frame_size(str(self.resize)))
            except argparse.ArgumentTypeError as exc:
                raise MljobsError(f"--resize: {exc}") from None
        if self.format not in FORMATS:
            raise MljobsError(f"--format {self.format!r}: valid are {', '.join(FORMATS)}")
        if not 0 <= int(self.jpeg_quality) <= 100:
            raise MljobsError(f"--jpeg-quality must be in 0..100, got {self.jpeg_quality}")

    @property
    def spec(self) -> FrameSpec:
        size = frame_size(self.resize) if self.resize else None
        return FrameSpec(every=int(self.every), size=size, format=self.format, jpeg_quality=int(self.jpeg_quality))
