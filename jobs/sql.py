"""spark-submit entry point: run SQL on the job tables and print the result as a table.

./spark-submit.sh sql "SELECT ..." [--limit N] [--data-dir DIR]
"""
from __future__ import annotations

import sys

from mljobs.jobs_common import JobArgumentParser, run_job
from mljobs.sql.config import SqlConfig


def parse_args(argv=None):
    p = JobArgumentParser(prog="sql", description=__doc__.splitlines()[0], config=SqlConfig)
    p.add_argument("query", help="one SQL statement")
    p.add_argument("--limit", type=int, help="rows to print")
    p.add_argument("--truncate", type=int, help="truncate cells to N characters (0: never)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    return run_job("sql", parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
