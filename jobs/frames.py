"""spark-submit entry point: video files decoded (OpenCV, in Spark tasks) into a Hive table of their frames.

./spark-submit.sh frames --videos DIR|GLOB|s3://... --table DB.NAME [--every N] [--resize WxH] [--format jpeg|png]
"""
from __future__ import annotations

import argparse
import sys

from mljobs.argtypes import non_negative_int, positive_int
from mljobs.frames.config import FramesConfig
from mljobs.jobs_common import JobArgumentParser, run_job
from mljobs.video import FORMATS


def parse_args(argv=None) -> argparse.Namespace:
    p = JobArgumentParser(prog="frames", description=__doc__.splitlines()[0], config=FramesConfig)
    p.add_argument("--videos", required=True, metavar="DIR|GLOB|FILE",
                   help="the videos: a file, a glob, or a directory (its video files, recursively); local, s3://, s3a://")
    p.add_argument("--table", required=True, help="target Hive table DB.NAME (and DB.NAME_quarantine)")
    p.add_argument("--every", type=positive_int, metavar="N", help="keep frames 1, 1+N, 1+2N, ... of each video")
    p.add_argument("--resize", metavar="WxH", help="store frames at this size (INTER_AREA), e.g. 640x360")
    p.add_argument("--format", choices=FORMATS, help="how frames are stored (png: lossless)")
    p.add_argument("--jpeg-quality", type=non_negative_int, metavar="Q", help="0-100, for --format jpeg")
    return p.parse_args(argv)


def main(argv=None) -> int:
    return run_job("frames", parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
