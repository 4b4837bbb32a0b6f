"""spark-submit entry point: a torch object detector (Faster R-CNN) trained on a frames table and its boxes.

./spark-submit.sh train-detector --frames DB.NAME --labels FILE|DB.NAME --model-dir DIR|s3://... [--arch ...] [options]
"""
from __future__ import annotations

import argparse
import sys

from mljobs.argtypes import non_negative_int, positive_float, positive_int, unit_interval
from mljobs.jobs_common import JobArgumentParser, run_job
from mljobs.models.torchdet import ARCHS
from mljobs.train_detector.config import TrainDetectorConfig


def parse_args(argv=None) -> argparse.Namespace:
    p = JobArgumentParser(prog="train-detector", description=__doc__.splitlines()[0], config=TrainDetectorConfig)
    p.add_argument("--frames", required=True, help="a frames table DB.NAME (video, frame, content) or a Parquet path")
    p.add_argument("--labels", required=True, metavar="FILE|DB.NAME",
                   help="boxes: CSV/Parquet path or table (video, frame, left, width, top, height), e.g. NFL "
                        "train_labels.csv")
    p.add_argument("--model-dir", required=True, metavar="DIR", help="where the model goes, local or s3:// "
                                                                     "(checkpoints under DIR/checkpoint)")
    p.add_argument("--name", help="the model's name (default: the model directory's last part)")
    p.add_argument("--training-table", metavar="DB.NAME", help="per-epoch history (default: <db>.<name>_training)")
    p.add_argument("--class-column", metavar="COLUMN", help="the labels' column holding each box's class "
                                                            "(default: one class, helmet)")
    p.add_argument("--arch", choices=ARCHS, help="the detector (random init unless --init-weights)")
    p.add_argument("--image-size", type=positive_int, metavar="PIXELS", help="frames are scaled so that neither side "
                                                                             "exceeds this")
    p.add_argument("--epochs", type=positive_int, help="the most epochs (early stopping may end sooner)")
    p.add_argument("--batch-size", type=positive_int, help="frames per step and process")
    p.add_argument("--learning-rate", type=positive_float, help="AdamW's, decayed on a cosine over --epochs")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--patience", type=positive_int, help="epochs without a better validation AP before stopping")
    p.add_argument("--val-fraction", type=unit_interval, help="share of the labelled videos held out for validation "
                                                              "(0: none, the last epoch is kept)")
    p.add_argument("--seed", type=non_negative_int)
    p.add_argument("--init-weights", metavar="FILE", help="a torch state dict (local or s3://) to start from")
    p.add_argument("--num-processes", type=positive_int, help="TorchDistributor processes (DDP)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    return run_job("train-detector", parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
