"""spark-submit entry point: tune XGBoost / Random Forest with cross-validation (Optuna on Spark).

./spark-submit.sh tune --table DB.NAME --study NAME [options]
"""
from __future__ import annotations

import argparse
import sys

from mljobs.argtypes import positive_float, positive_int
from mljobs.jobs_common import JobArgumentParser, run_job
from mljobs.tune.config import MODES, PRUNERS, STRATEGIES, TuneConfig
from mljobs.tune.space import FAMILIES


def parse_args(argv=None) -> argparse.Namespace:
    p = JobArgumentParser(prog="tune", description=__doc__.splitlines()[0], config=TuneConfig)
    p.add_argument("--table", required=True, help="training table DB.NAME (e.g. airline.flights)")
    p.add_argument("--study", required=True, help="study name: rerunning with the same name resumes it")
    p.add_argument("--family", choices=list(FAMILIES))
    p.add_argument("--strategy", choices=list(STRATEGIES))
    p.add_argument("--metric", choices=["accuracy", "auc", "logloss", "f1"])  # mljobs.tune.metrics.METRICS, in --help order
    p.add_argument("--max-trials", type=positive_int)
    p.add_argument("--max-parallel", type=positive_int)
    p.add_argument("--cv-folds", type=positive_int)
    p.add_argument("--seed", type=int)
    p.add_argument("--mode", choices=list(MODES))
    p.add_argument("--max-runtime-per-trial", type=positive_float, metavar="SECONDS")
    p.add_argument("--time-budget", type=positive_float, metavar="SECONDS", help="stop starting trials after this")
    p.add_argument("--pruner", choices=list(PRUNERS))
    p.add_argument("--early-stopping-rounds", type=positive_int)
    p.add_argument("--num-workers", type=positive_int, help="distributed mode: xgboost workers per fit")
    p.add_argument("--threads-per-trial", type=positive_int, help="parallel mode: xgboost threads per trial")
    p.add_argument("--label", help="label column (0/1)")
    p.add_argument("--features", help="comma-separated feature columns")
    p.add_argument("--where", help="SQL filter on the table, e.g. \"Year = 2013\"")
    p.add_argument("--out-db", help="database of tuning_trials (default: the table's)")
    p.add_argument("--storage", help="Optuna storage: SQLAlchemy URL, journal *.log file or SQLite *.db path")
    p.add_argument("--model-dir", help="where the best model goes: a local path or s3://, s3a://, hdfs:// (default <results>/models/<study>; <results> is --conf spark.mljobs.resultsDir or the data dir)")
    p.add_argument("--plots", dest="plots_dir", metavar="DIR", help="plot directory, local or a URI (default <results>/plots/tune/<study>)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    return run_job("tune", parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
