"""spark-submit entry point: a torch image classifier trained on an ingest-images table, evaluated on its test split.

./spark-submit.sh train-classifier --table DB.NAME [--model-dir DIR|s3://...] [--arch small-cnn|mobilenet_v3_small|resnet18] [options]
"""
from __future__ import annotations

import argparse
import sys

from mljobs.argtypes import non_negative_int, positive_float, positive_int, unit_interval
from mljobs.jobs_common import JobArgumentParser, run_job
from mljobs.models.vision import ARCHS
from mljobs.train_classifier.config import CLASS_WEIGHTS, TrainClassifierConfig


def parse_args(argv=None) -> argparse.Namespace:
    p = JobArgumentParser(prog="train-classifier", description=__doc__.splitlines()[0], config=TrainClassifierConfig)
    p.add_argument("--table", required=True, help="an ingest-images table DB.NAME (label, split, content)")
    p.add_argument("--name", help="the model's name (default: <table>_classifier)")
    p.add_argument("--model-dir", metavar="DIR", help="where the model goes, local or s3:// (default: "
                                                      "<data-dir>/models/<name>)")
    p.add_argument("--plots-dir", metavar="DIR", help="confusion matrix and mistakes grid (default: "
                                                      "<data-dir>/plots/images/<name>)")
    p.add_argument("--evaluation-table", metavar="DB.NAME", help="per-label test metrics (default: "
                                                                 "<db>.<name>_evaluation)")
    p.add_argument("--arch", choices=ARCHS, help="the net (random init unless --init-weights)")
    p.add_argument("--image-size", type=positive_int, metavar="PIXELS", help="images are resized to this square")
    p.add_argument("--epochs", type=positive_int, help="the most epochs (early stopping may end sooner)")
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--learning-rate", type=positive_float, help="AdamW's, decayed on a cosine over --epochs")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--patience", type=positive_int, help="epochs without a better validation loss before stopping")
    p.add_argument("--val-fraction", type=unit_interval, help="share of each label's training images held out for "
                                                              "validation (0: none, the last epoch is kept)")
    p.add_argument("--seed", type=non_negative_int)
    p.add_argument("--class-weights", choices=CLASS_WEIGHTS, help="balanced: every label weighs the same in the loss")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, help="random rotation, scale and shift")
    p.add_argument("--hflip", action=argparse.BooleanOptionalAction, help="also mirror images (not for digits, text)")
    p.add_argument("--init-weights", metavar="FILE", help="a torch state dict (local or s3://) to start from")
    p.add_argument("--num-processes", type=positive_int, help="TorchDistributor processes (DDP)")
    p.add_argument("--mistakes", type=non_negative_int, help="how many of the most confident test mistakes to draw")
    return p.parse_args(argv)


def main(argv=None) -> int:
    return run_job("train-classifier", parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
