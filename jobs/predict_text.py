"""spark-submit entry point: batch labelling of a Hive table's text with a train-text model.

./spark-submit.sh predict-text --model DIR --table DB.NAME [--text-col COL] [--out-table DB.NAME] [options]
"""
from __future__ import annotations

import argparse
import sys

from mljobs.jobs_common import JobArgumentParser, run_job
from mljobs.predict_text.config import PredictTextConfig


def parse_args(argv=None) -> argparse.Namespace:
    p = JobArgumentParser(prog="predict-text", description=__doc__.splitlines()[0], config=PredictTextConfig)
    p.add_argument("--model", required=True, help="model directory (metadata.json + pipeline/), local or a URI")
    p.add_argument("--table", required=True, help="rows to label: Hive table DB.NAME")
    p.add_argument("--text-col", metavar="COL", help="the text column (default: the model's)")
    p.add_argument("--out-table", metavar="DB.NAME", help="the predictions table (default: <db of --table>.text_predictions)")
    p.add_argument("--id-col", metavar="COL", help="row id column (default: a generated row_id)")
    p.add_argument("--keep", nargs="+", metavar="COLS", help="columns of the table copied to the predictions (A,B or A B)")
    p.add_argument("--where", metavar="SQL", help="SQL condition selecting the rows")
    return p.parse_args(argv)


def main(argv=None) -> int:
    return run_job("predict-text", parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
