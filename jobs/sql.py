"""spark-submit entry point: run SQL on the job tables and print the result as a table.

./spark-submit.sh sql "SELECT ..." [--limit N] [--data-dir DIR]
"""
from __future__ import annotations

import argparse
import sys

from mljobs.errors import MljobsError
from mljobs.jobs_common import JobArgumentParser, add_common_args, run_job


def parse_args(argv=None) -> argparse.Namespace:
    p = JobArgumentParser(prog="sql", description=__doc__.splitlines()[0])
    p.add_argument("query", help="one SQL statement")
    p.add_argument("--limit", type=int, default=100, help="rows to print (default 100)")
    p.add_argument("--truncate", type=int, default=40, help="truncate cells to N characters (0: never)")
    add_common_args(p)
    return p.parse_args(argv)


def prepare(args):
    if not args.query.strip():
        raise MljobsError("empty query")
    if args.limit <= 0:
        raise MljobsError("--limit must be positive")
    return args


def work(spark, args, progress) -> dict:
    df = spark.sql(args.query)
    rows = df.take(args.limit + 1)
    shown = spark.createDataFrame(rows[: args.limit], df.schema) if rows else df.limit(0)
    # The table, then (from run_job) the JSON summary as the last line, like every job.
    text = shown._jdf.showString(args.limit, args.truncate, False)
    print(text, end="", flush=True)
    return {"rows_shown": min(len(rows), args.limit), "more": len(rows) > args.limit, "columns": df.columns}


def main(argv=None) -> int:
    return run_job("sql", parse_args(argv), prepare=prepare, work=work)


if __name__ == "__main__":
    sys.exit(main())
