"""spark-submit entry point: ingest CSV/Parquet files into a partitioned Hive table.

./spark-submit.sh ingest --input PATH [PATH ...] --table DB.NAME [options]
"""
from __future__ import annotations

import argparse
import sys

from mljobs.argtypes import unit_interval
from mljobs.config import load_job_yaml
from mljobs.jobs_common import JobArgumentParser, add_common_args, run_job


def parse_args(argv=None) -> argparse.Namespace:
    p = JobArgumentParser(prog="ingest", description=__doc__.splitlines()[0])
    p.add_argument("--input", nargs="+", required=True, metavar="PATH",
                   help="files, directories or globs; local, s3:// or s3a://")
    p.add_argument("--table", required=True, help="target Hive table, DB.NAME")
    p.add_argument("--mode", choices=["airline", "byod"], help="airline (default) or bring-your-own-data")
    p.add_argument("--format", choices=["auto", "csv", "parquet"])
    p.add_argument("--label", help="label column (byod mode)")
    p.add_argument("--features", help="comma-separated feature columns (byod mode; default: all others)")
    p.add_argument("--partition-by", help="comma-separated partition columns ('' for none)")
    p.add_argument("--max-bad-fraction", type=unit_interval, help="abort when more rows than this are malformed (0.01)")
    p.add_argument("--delimiter", help="CSV field delimiter (default ,)")
    p.add_argument("--config", help="job YAML (default conf/ingest.yaml)")
    add_common_args(p)
    return p.parse_args(argv)


def build_config(args: argparse.Namespace):
    from mljobs.ingest.job import IngestConfig

    defaults = load_job_yaml(args.config, "ingest.yaml")

    def pick(flag, key, default=None):
        return flag if flag is not None else defaults.get(key, default)

    mode = pick(args.mode, "mode", "airline")
    partition_by = args.partition_by
    if partition_by is not None:
        partition_by = [c.strip() for c in partition_by.split(",") if c.strip()]
    elif mode == "airline":
        partition_by = defaults.get("partition_by")
    return IngestConfig(
        inputs=args.input,
        table=args.table,
        mode=mode,
        format=pick(args.format, "format", "auto"),
        label=pick(args.label, "label"),
        features=[c.strip() for c in args.features.split(",")] if args.features else None,
        partition_by=partition_by,
        max_bad_fraction=float(pick(args.max_bad_fraction, "max_bad_fraction", 0.01)),
        delimiter=pick(args.delimiter, "delimiter", ","),
    ).validate()


def work(spark, cfg, progress) -> dict:
    from mljobs.ingest.job import run_ingest

    return run_ingest(spark, cfg, progress)


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_job("ingest", args, prepare=build_config, work=work)


if __name__ == "__main__":
    sys.exit(main())
