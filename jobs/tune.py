"""spark-submit entry point: tune XGBoost / Random Forest with cross-validation (Optuna on Spark).

./spark-submit.sh tune --table DB.NAME --study NAME [options]
"""
from __future__ import annotations

import argparse
import sys

from mljobs.argtypes import positive_float, positive_int
from mljobs.config import load_job_yaml
from mljobs.jobs_common import JobArgumentParser, add_common_args, run_job


def parse_args(argv=None) -> argparse.Namespace:
    p = JobArgumentParser(prog="tune", description=__doc__.splitlines()[0])
    p.add_argument("--table", required=True, help="training table DB.NAME (e.g. airline.flights)")
    p.add_argument("--study", required=True, help="study name: rerunning with the same name resumes it")
    p.add_argument("--config", help="tuner YAML (default conf/tune.yaml)")
    p.add_argument("--family", choices=["xgboost", "random_forest"])
    p.add_argument("--strategy", choices=["random", "bayesian", "grid"])
    p.add_argument("--metric", choices=["accuracy", "auc", "logloss", "f1"])
    p.add_argument("--max-trials", type=positive_int)
    p.add_argument("--max-parallel", type=positive_int)
    p.add_argument("--cv-folds", type=positive_int)
    p.add_argument("--seed", type=int)
    p.add_argument("--mode", choices=["auto", "distributed", "parallel"])
    p.add_argument("--max-runtime-per-trial", type=positive_float, metavar="SECONDS")
    p.add_argument("--time-budget", type=positive_float, metavar="SECONDS", help="stop starting trials after this")
    p.add_argument("--pruner", choices=["none", "median", "successive_halving", "hyperband"])
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
    add_common_args(p)
    return p.parse_args(argv)


def build_config(args: argparse.Namespace):
    from mljobs.uris import output_location
    from mljobs.tune.config import from_yaml_and_args

    output_location(args.model_dir, "--model-dir")
    output_location(args.plots_dir, "--plots")

    return from_yaml_and_args(load_job_yaml(args.config, "tune.yaml"), args)


def work(spark, cfg, progress) -> dict:
    from mljobs.tune.job import run_tune

    return run_tune(spark, cfg, progress)


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_job("tune", args, prepare=build_config, work=work)


if __name__ == "__main__":
    sys.exit(main())
