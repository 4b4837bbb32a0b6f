"""spark-submit entry point: SageMaker Clarify's bias metrics of a Hive table, computed in Spark.

./spark-submit.sh bias --table DB.NAME --label COL --facet COL [options]
"""
from __future__ import annotations

import argparse
import sys

from mljobs.argtypes import positive_int
from mljobs.bias.config import STAGES, BiasConfig
from mljobs.jobs_common import JobArgumentParser, run_job


def parse_args(argv=None) -> argparse.Namespace:
    p = JobArgumentParser(prog="bias", description=__doc__.splitlines()[0], config=BiasConfig)
    p.add_argument("--table", required=True, help="the rows: Hive table DB.NAME")
    p.add_argument("--label", required=True, metavar="COL", help="the observed outcome column")
    p.add_argument("--label-values", nargs="+", metavar="V", help="positive outcomes: label in these values (A,B or A B)")
    p.add_argument("--label-threshold", type=float, metavar="X", help="positive outcome: label > X "
                   "(neither: a numeric label's 1 is positive)")
    p.add_argument("--facet", required=True, metavar="COL", help="the sensitive attribute column")
    p.add_argument("--facet-values", nargs="+", metavar="V", help="sensitive group: facet in these values")
    p.add_argument("--facet-threshold", type=float, metavar="X", help="sensitive group: facet > X "
                   "(neither: each value of the facet against the rest)")
    p.add_argument("--group-by", metavar="COL", help="subgroups of CDDL and CDDPL")
    p.add_argument("--model", metavar="DIR", help="predicted label: probability > 0.5 of this tune model (post-training)")
    p.add_argument("--predicted-label-col", metavar="COL", help="predicted label column (post-training)")
    p.add_argument("--predicted-label-values", nargs="+", metavar="V", help="positive predictions (default: the label's)")
    p.add_argument("--predicted-label-threshold", type=float, metavar="X", help="positive prediction: > X (default: the label's)")
    p.add_argument("--where", metavar="SQL", help="SQL condition selecting the rows")
    p.add_argument("--methods", nargs="+", metavar="M", help="all (every metric but FT), or metrics such as CI,DPL,DI,FT")
    p.add_argument("--stage", choices=STAGES, help="pre, post or both (default: both with a predicted label, else pre)")
    p.add_argument("--output", metavar="DIR", help="where analysis.json goes, merged with one there "
                   "(default: <results>/bias/<model study, else table name>)")
    p.add_argument("--out-db", metavar="DB", help="database of the bias_metrics table (default: that of --table)")
    p.add_argument("--flip-test-sample", type=positive_int, help="FT: rows of the sensitive group voted on")
    p.add_argument("--flip-test-features", nargs="+", metavar="COLS", help="FT's numeric columns (default: the model's "
                   "features, else every numeric column but the facet and labels)")
    p.add_argument("--no-plots", action="store_true", help="no report image (bias_<facet>.png next to analysis.json)")
    p.add_argument("--max-facet-values", type=positive_int, help="cap on a facet's values reported one by one")
    return p.parse_args(argv)


def main(argv=None) -> int:
    return run_job("bias", parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
