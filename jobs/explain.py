"""spark-submit entry point: SHAP explanations of a model over a Hive table.

./spark-submit.sh explain --model DIR --table DB.NAME [options]
"""
from __future__ import annotations

import argparse
import sys

from mljobs.argtypes import non_negative_int, positive_float, positive_int
from mljobs.jobs_common import JobArgumentParser, add_common_args, run_job

# Flag -> config key, for the values conf/explain.yaml may set.
_YAML_KEYS = ("method", "agg_method", "median", "out_db", "batch_rows", "interactions", "max_interaction_values",
              "additivity_tol", "top_k", "plot_rows", "max_groups_plotted", "seed", "num_samples",
              "num_clusters", "use_logit", "baseline")


def parse_args(argv=None) -> argparse.Namespace:
    p = JobArgumentParser(prog="explain", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model directory (metadata.json + model.json), local or a URI, e.g. "
                   ".mljobs/models/<study>")
    p.add_argument("--table", required=True, help="rows to explain: Hive table DB.NAME")
    p.add_argument("--where", metavar="SQL", help="SQL condition selecting the rows, e.g. \"Month = 1\"")
    p.add_argument("--sample", type=positive_float, metavar="F", help="explain a random fraction F in (0, 1]")
    p.add_argument("--id-col", metavar="COL", help="row id column (default: a generated row_id)")
    p.add_argument("--group-by", nargs="+", default=None, metavar="COLS",
                   help="aggregate per group too; each argument is one grouping, A,B a combined one")
    p.add_argument("--agg-method", choices=["mean_abs", "median", "mean_sq"], default=None,
                   help="global SHAP in analysis.json and the ranking (mean_abs)")
    p.add_argument("--interactions", type=non_negative_int, metavar="N", default=None,
                   help="SHAP interaction values for N sampled rows (0 = none)")
    p.add_argument("--method", choices=["tree", "kernel"], default=None,
                   help="tree: exact TreeSHAP (default); kernel: Kernel SHAP, Clarify's method")
    p.add_argument("--baseline", metavar="FILE", help="Kernel SHAP baseline rows: CSV with a header or JSON rows")
    p.add_argument("--num-samples", type=positive_int, default=None, help="Kernel SHAP coalitions per row (1000)")
    p.add_argument("--num-clusters", type=positive_int, default=None,
                   help="Kernel SHAP: k-means baseline of K centres when no --baseline (10)")
    p.add_argument("--use-logit", dest="use_logit", action="store_true", default=None,
                   help="Kernel SHAP explains log-odds (default)")
    p.add_argument("--no-use-logit", dest="use_logit", action="store_false", help="Kernel SHAP explains probabilities")
    p.add_argument("--explain-ids", nargs="+", default=None, metavar="ID",
                   help="waterfall plots for these row ids (of --id-col)")
    p.add_argument("--top-k", type=non_negative_int, default=None, help="dependence plots for the top K features (5)")
    p.add_argument("--no-plots", action="store_true", help="skip the plots")
    p.add_argument("--out-db", default=None, help="database of shap_local, shap_global, shap_interactions (explain)")
    p.add_argument("--output", metavar="DIR", help="analysis.json and plots, local or a URI (default <results>/explain/<study>; <results> is --conf spark.mljobs.resultsDir or the data dir)")
    p.add_argument("--plots", metavar="DIR", help="plots elsewhere than --output")
    p.add_argument("--config", metavar="FILE", help="job defaults (default conf/explain.yaml)")
    add_common_args(p)
    return p.parse_args(argv)


def build_config(args: argparse.Namespace):
    from mljobs.config import load_job_yaml, merge_yaml_and_flags
    from mljobs.uris import output_location
    from mljobs.explain.config import ExplainConfig

    for flag, value in (("--model", args.model), ("--output", args.output), ("--plots", args.plots)):
        output_location(value, flag)

    kw = merge_yaml_and_flags(load_job_yaml(args.config, "explain.yaml"), args, _YAML_KEYS, "explain")
    return ExplainConfig(
        model=args.model, table=args.table, where=args.where, sample=args.sample, id_col=args.id_col,
        group_by=args.group_by or [], explain_ids=args.explain_ids or [], output=args.output,
        plots_dir=args.plots, plots=not args.no_plots, **kw,
    ).validate()


def work(spark, cfg, progress) -> dict:
    from mljobs.explain.job import run_explain

    return run_explain(spark, cfg, progress)


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_job("explain", args, prepare=build_config, work=work)


if __name__ == "__main__":
    sys.exit(main())
