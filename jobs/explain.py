"""spark-submit entry point: SHAP explanations of a model over a Hive table.

./spark-submit.sh explain --model DIR --table DB.NAME [options]
"""
from __future__ import annotations

import argparse
import sys

from mljobs.argtypes import non_negative_int, positive_float, positive_int
from mljobs.explain.config import AGG_METHODS, METHODS, ExplainConfig
from mljobs.jobs_common import JobArgumentParser, run_job


def parse_args(argv=None) -> argparse.Namespace:
    p = JobArgumentParser(prog="explain", description=__doc__.splitlines()[0], config=ExplainConfig)
    p.add_argument("--model", required=True, help="model directory (metadata.json + model.json), local or a URI, e.g. "
                   ".mljobs/models/<study>")
    p.add_argument("--table", required=True, help="rows to explain: Hive table DB.NAME")
    p.add_argument("--where", metavar="SQL", help="SQL condition selecting the rows, e.g. \"Month = 1\"")
    p.add_argument("--sample", type=positive_float, metavar="F", help="explain a random fraction F in (0, 1]")
    p.add_argument("--id-col", metavar="COL", help="row id column (default: a generated row_id)")
    p.add_argument("--group-by", nargs="+", metavar="COLS",
                   help="aggregate per group too; each argument is one grouping, A,B a combined one")
    p.add_argument("--agg-method", choices=list(AGG_METHODS), help="global SHAP in analysis.json and the ranking")
    p.add_argument("--interactions", type=non_negative_int, metavar="N",
                   help="SHAP interaction values for N sampled rows (0 = none)")
    p.add_argument("--method", choices=list(METHODS),
                   help="tree: exact TreeSHAP; kernel: Kernel SHAP, Clarify's method")
    p.add_argument("--baseline", metavar="FILE", help="Kernel SHAP baseline rows: CSV with a header or JSON rows")
    p.add_argument("--num-samples", type=positive_int, help="Kernel SHAP coalitions per row")
    p.add_argument("--num-clusters", type=positive_int,
                   help="Kernel SHAP: k-means baseline of K centres when no --baseline")
    p.add_argument("--use-logit", action=argparse.BooleanOptionalAction,
                   help="Kernel SHAP explains log-odds, or with --no-use-logit probabilities")
    p.add_argument("--explain-ids", nargs="+", metavar="ID", help="waterfall plots for these row ids (of --id-col)")
    p.add_argument("--top-k", type=non_negative_int, help="dependence plots for the top K features")
    p.add_argument("--no-plots", action="store_true", help="skip the plots")
    p.add_argument("--out-db", help="database of shap_local, shap_global, shap_interactions")
    p.add_argument("--output", metavar="DIR", help="analysis.json and plots, local or a URI (default <results>/explain/"
                   "<study>; <results> is --conf spark.mljobs.resultsDir or the data dir)")
    p.add_argument("--plots", dest="plots_dir", metavar="DIR", help="plots elsewhere than --output")
    return p.parse_args(argv)


def main(argv=None) -> int:
    return run_job("explain", parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
