"""spark-submit entry point: detection error analysis, frame by frame, over Hive tables.

./spark-submit.sh detection-metrics --gt GT --pred PRED [options]
"""
from __future__ import annotations

import argparse
import sys

from mljobs.argtypes import non_negative_int, unit_interval
from mljobs.detection_metrics.config import READERS, DetectionConfig
from mljobs.jobs_common import JobArgumentParser, run_job


def parse_args(argv=None) -> argparse.Namespace:
    p = JobArgumentParser(prog="detection-metrics", description=__doc__.splitlines()[0], config=DetectionConfig)
    p.add_argument("--gt", required=True, help="ground truth: table DB.NAME or CSV/Parquet path "
                   "(NFL train_labels.csv or image_labels.csv layout)")
    p.add_argument("--pred", required=True, help="detections: table DB.NAME or CSV/Parquet path")
    p.add_argument("--conf-thr", type=unit_interval, help="detections below this score are ignored")
    p.add_argument("--iou-thr", type=float, help="IoU needed for a match")
    p.add_argument("--match", choices=["greedy", "optimal"],
                   help="greedy by score, the COCO rule, or optimal (Hungarian)")
    p.add_argument("--merge-labels", action="store_true", help="evaluate all labels as one class 'helmet'")
    p.add_argument("--pixel-plus-one", action="store_true", help="VOC-style inclusive pixel boxes: w+1, h+1")
    p.add_argument("--snap", metavar="FRAME|TABLE", help="snap frame for every video, or a table/CSV with "
                   "video (or gameKey, playID) and snap_frame")
    p.add_argument("--nfl-impact", action="store_true", help="also score the NFL Impact Detection metric")
    p.add_argument("--out-db", help="database of the output tables")
    p.add_argument("--plots", dest="plots_dir", metavar="DIR", help="plot directory, local or a URI (default "
                   "<results>/plots/detection; <results> is --conf spark.mljobs.resultsDir or the data dir)")
    p.add_argument("--max-plots", type=non_negative_int, help="plot at most this many videos, most errors first")
    p.add_argument("--videos", dest="videos_dir", metavar="DIR",
                   help="directory of the video files, for the worst-frames image (opencv)")
    p.add_argument("--worst-frames", type=non_negative_int, help="frames in the worst-frames image")
    p.add_argument("--reader", choices=list(READERS), help="auto (default): local CSV/COCO JSON files are read and "
                   "matched by the Python workers when clean; spark: always Spark's reader")
    p.add_argument("--coco-only", action="store_true", help="COCO's twelve figures alone (det_coco, "
                   "det_quarantine, the per-class precision-recall plots): no per-frame analysis")
    p.add_argument("--max-bad-fraction", type=unit_interval,
                   help="stop, writing nothing, when more rows than this are malformed")
    return p.parse_args(argv)


def main(argv=None) -> int:
    return run_job("detection-metrics", parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
