"""spark-submit entry point: batch labelling of images with a train-classifier model (Rekognition Custom Labels' DetectCustomLabels, Spark-native).

./spark-submit.sh classify --model DIR|s3://... (--table DB.NAME | --input DIR|s3://...) --out-table DB.NAME [options]
"""
from __future__ import annotations

import argparse
import sys

from mljobs.argtypes import positive_int
from mljobs.classify.config import ClassifyConfig
from mljobs.jobs_common import JobArgumentParser, run_job


def parse_args(argv=None) -> argparse.Namespace:
    p = JobArgumentParser(prog="classify", description=__doc__.splitlines()[0], config=ClassifyConfig)
    p.add_argument("--model", required=True, help="a train-classifier model directory, local or s3://")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--table", metavar="DB.NAME", help="images in a table with a binary content column "
                                                        "(an ingest-images table)")
    src.add_argument("--input", metavar="DIR", help="image files under a directory (recursive), local or s3://")
    p.add_argument("--out-table", required=True, metavar="DB.NAME", help="the labels (and DB.NAME_quarantine)")
    p.add_argument("--min-confidence", metavar="P|assumed|auto",
                   help="labels under this probability (0-1, not percent) are left out; assumed: each label's "
                        "assumed threshold; auto: assumed when the model has them, else 0.5")
    p.add_argument("--top-k", type=positive_int, metavar="K", help="at most K labels per image (default: all)")
    p.add_argument("--batch-size", type=positive_int, metavar="N", help="images per Arrow batch and forward pass")
    p.add_argument("--keep", nargs="+", metavar="COLS", help="columns copied to the output (A,B or A B; "
                                                             "default: path, when there is one)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    return run_job("classify", parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
