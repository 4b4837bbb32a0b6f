"""spark-submit entry point: train and validate a text classifier (Spark ML) on a Hive table.

Its hyper-parameters are searched with Optuna (stratified CV on 80 %), the best fit is validated
on the held-out 20 %.

./spark-submit.sh train-text --table DB.NAME --text-col COL --label-col COL [--model-dir DIR|s3://...] [options]
"""
from __future__ import annotations

import argparse
import sys

from mljobs.argtypes import non_negative_int, positive_float, positive_int
from mljobs.jobs_common import JobArgumentParser, run_job
from mljobs.models.text import ALGORITHMS
from mljobs.train_text.config import METRICS, PRUNERS, STRATEGIES, TrainTextConfig


def parse_args(argv=None) -> argparse.Namespace:
    p = JobArgumentParser(prog="train-text", description=__doc__.splitlines()[0], config=TrainTextConfig)
    p.add_argument("--table", required=True, help="training table DB.NAME (e.g. reviews.amazon)")
    p.add_argument("--text-col", metavar="COL", help="the text column (a string)")
    p.add_argument("--label-col", metavar="COL", help="the label column (string, integer or boolean; 2+ classes)")
    p.add_argument("--model-dir", help="where the model goes: a local path or s3://, s3a://, hdfs:// "
                   "(default <results>/models/<study>)")
    p.add_argument("--algorithm", choices=list(ALGORITHMS))
    p.add_argument("--word-ngrams", type=positive_int, help="terms are the tokens and their 2..N-grams")
    p.add_argument("--study", help="study name: rerunning with the same name resumes it (default text-<db>-<table>-<algorithm>)")
    p.add_argument("--metric", choices=list(METRICS))
    p.add_argument("--strategy", choices=list(STRATEGIES))
    p.add_argument("--max-trials", type=positive_int)
    p.add_argument("--max-parallel", type=positive_int)
    p.add_argument("--cv-folds", type=positive_int)
    p.add_argument("--seed", type=int)
    p.add_argument("--max-runtime-per-trial", type=positive_float, metavar="SECONDS")
    p.add_argument("--time-budget", type=positive_float, metavar="SECONDS", help="stop starting trials after this")
    p.add_argument("--pruner", choices=list(PRUNERS))
    p.add_argument("--where", metavar="SQL", help="SQL filter on the table")
    p.add_argument("--out-db", help="database of tuning_trials, text_validation, text_errors (default: the table's)")
    p.add_argument("--storage", help="Optuna storage: SQLAlchemy URL, journal *.log file or SQLite *.db path")
    p.add_argument("--plots", dest="plots_dir", metavar="DIR", help="plot directory (default <results>/plots/text/<study>)")
    p.add_argument("--errors", type=non_negative_int, help="the most confidently wrong validation rows kept")
    return p.parse_args(argv)


def main(argv=None) -> int:
    return run_job("train-text", parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
