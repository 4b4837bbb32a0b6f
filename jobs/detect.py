"""spark-submit entry point: object detection over a frames table, or video files, with an OpenCV or torch detector.

./spark-submit.sh detect --model opencv:NAME|DIR (--frames DB.NAME | --videos DIR|GLOB|s3://...) --out-table DB.NAME
    [options]
"""
from __future__ import annotations

import argparse
import sys

from mljobs.argtypes import non_negative_int, positive_float, positive_int, unit_interval
from mljobs.detect.config import DetectConfig
from mljobs.jobs_common import JobArgumentParser, run_job


def parse_args(argv=None) -> argparse.Namespace:
    p = JobArgumentParser(prog="detect", description=__doc__.splitlines()[0], config=DetectConfig)
    p.add_argument("--model", required=True, help="opencv:hog-people (label person) or opencv:haarcascade_<name>, "
                   "e.g. opencv:haarcascade_frontalface_default (label face), or a model directory of "
                   "train-detector (local or s3://; labels: its classes)")
    p.add_argument("--frames", metavar="DB.NAME",
                   help="frames table (video, frame, content), or an images table (path, content); or --videos")
    p.add_argument("--videos", metavar="DIR|GLOB|FILE",
                   help="video files instead of --frames: a file, a glob, or a directory (its video files, "
                   "recursively); local, s3://, s3a://; decoded in the tasks as the frames job decodes them")
    p.add_argument("--every", type=positive_int, metavar="N", help="--videos: score frames 1, 1+N, 1+2N, ... "
                   "of each video")
    p.add_argument("--out-table", required=True, metavar="DB.NAME",
                   help="the detections table; frames (and videos) that cannot be decoded go to <out-table>_quarantine")
    p.add_argument("--score-min", type=unit_interval, help="leave out detections with a lower score (the score is the "
                   "logistic of the detector's margin: 0.5 = the detector's own threshold)")
    p.add_argument("--batch-size", type=positive_int, help="frames per Arrow batch in the detection tasks")
    p.add_argument("--min-size", type=non_negative_int, metavar="PX", help="leave out boxes narrower or lower than PX")
    p.add_argument("--scale-factor", type=positive_float, help="image pyramid step, > 1 (default: OpenCV's, "
                   "HOG 1.05, Haar 1.1)")
    p.add_argument("--min-neighbors", type=non_negative_int, help="overlapping hits a box needs (default: OpenCV's, "
                   "HOG 2, Haar 3)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    return run_job("detect", parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
