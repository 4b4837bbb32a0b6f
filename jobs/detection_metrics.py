"""spark-submit entry point: detection error analysis, frame by frame, over Hive tables.

./spark-submit.sh detection-metrics --gt GT --pred PRED [options]
"""
from __future__ import annotations

import argparse
import sys

from mljobs.argtypes import non_negative_int, unit_interval
from mljobs.jobs_common import JobArgumentParser, add_common_args, run_job


def parse_args(argv=None) -> argparse.Namespace:
    p = JobArgumentParser(prog="detection-metrics", description=__doc__.splitlines()[0])
    p.add_argument("--gt", required=True, help="ground truth: table DB.NAME or CSV/Parquet path "
                   "(NFL train_labels.csv or image_labels.csv layout)")
    p.add_argument("--pred", required=True, help="detections: table DB.NAME or CSV/Parquet path")
    p.add_argument("--conf-thr", type=unit_interval, default=0.9, help="detections below this score are ignored (0.9)")
    p.add_argument("--iou-thr", type=float, default=0.5, help="IoU needed for a match (0.5)")
    p.add_argument("--match", choices=["greedy", "optimal"], default="greedy",
                   help="greedy by score, the COCO rule (default), or optimal (Hungarian)")
    p.add_argument("--merge-labels", action="store_true", help="evaluate all labels as one class 'helmet'")
    p.add_argument("--pixel-plus-one", action="store_true", help="VOC-style inclusive pixel boxes: w+1, h+1")
    p.add_argument("--snap", metavar="FRAME|TABLE", help="snap frame for every video, or a table/CSV with "
                   "video (or gameKey, playID) and snap_frame")
    p.add_argument("--nfl-impact", action="store_true", help="also score the NFL Impact Detection metric")
    p.add_argument("--out-db", default="detection", help="database of the output tables (detection)")
    p.add_argument("--plots", metavar="DIR", help="plot directory, local or a URI (default <results>/plots/detection; <results> is --conf spark.mljobs.resultsDir or the data dir)")
    p.add_argument("--max-plots", type=non_negative_int, default=200, help="plot at most this many videos, most errors first (200)")
    p.add_argument("--videos", metavar="DIR", help="directory of the video files, for the worst-frames image (opencv)")
    p.add_argument("--worst-frames", type=non_negative_int, default=6, help="frames in the worst-frames image (6)")
    p.add_argument("--max-bad-fraction", type=unit_interval, default=0.05,
                   help="stop, writing nothing, when more rows than this are malformed (0.05)")
    add_common_args(p)
    return p.parse_args(argv)


def build_config(args: argparse.Namespace):
    from mljobs.uris import output_location
    from mljobs.detection_metrics.job import DetectionConfig

    output_location(args.plots, "--plots")

    return DetectionConfig(
        gt=args.gt, pred=args.pred, conf_thr=args.conf_thr, iou_thr=args.iou_thr, match=args.match,
        merge_labels=args.merge_labels, pixel_plus_one=args.pixel_plus_one, snap=args.snap,
        nfl_impact=args.nfl_impact, out_db=args.out_db, plots_dir=args.plots, max_plots=args.max_plots,
        max_bad_fraction=args.max_bad_fraction, videos_dir=args.videos, worst_frames=args.worst_frames,
    ).validate()


def work(spark, cfg, progress) -> dict:
    from mljobs.detection_metrics.job import run_detection_metrics

    return run_detection_metrics(spark, cfg, progress)


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_job("detection-metrics", args, prepare=build_config, work=work)


if __name__ == "__main__":
    sys.exit(main())
