"""spark-submit entry point: batch scoring of a Hive table with a tune model.

./spark-submit.sh predict --model DIR --table DB.NAME [options]
"""
from __future__ import annotations

import argparse
import sys

from mljobs.argtypes import positive_int, unit_interval
from mljobs.jobs_common import JobArgumentParser, run_job
from mljobs.predict.config import PredictConfig


def parse_args(argv=None) -> argparse.Namespace:
    p = JobArgumentParser(prog="predict", description=__doc__.splitlines()[0], config=PredictConfig)
    p.add_argument("--model", required=True, help="model directory (metadata.json + model.json), local or a URI, e.g. "
                   ".mljobs/models/<study>")
    p.add_argument("--table", required=True, help="rows to score: Hive table DB.NAME")
    p.add_argument("--where", metavar="SQL", help="SQL condition selecting the rows, e.g. \"Month >= 4\"")
    p.add_argument("--id-col", metavar="COL", help="row id column (default: a generated row_id)")
    p.add_argument("--out-table", metavar="DB.NAME", help="the predictions table (default: <db of --table>.predictions)")
    p.add_argument("--threshold", type=unit_interval, help="a probability above it predicts 1")
    p.add_argument("--keep", nargs="+", metavar="COLS", help="columns of the table copied to the predictions (A,B or A B)")
    p.add_argument("--no-metrics", action="store_true", help="no metrics even when the table has the model's label")
    p.add_argument("--batch-rows", type=positive_int, help="rows per Arrow batch in the scoring tasks (default: 4M values / features, 10,000-100,000)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    return run_job("predict", parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
