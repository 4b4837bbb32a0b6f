"""spark-submit entry point: ingest CSV/Parquet files into a partitioned Hive table.

./spark-submit.sh ingest --input PATH [PATH ...] --table DB.NAME [options]
"""
from __future__ import annotations

import argparse
import sys

from mljobs.argtypes import unit_interval
from mljobs.ingest import schema
from mljobs.ingest.config import FORMATS, MODES, PARTITION_FLAG, READERS, IngestConfig
from mljobs.jobs_common import JobArgumentParser, run_job


def parse_args(argv=None) -> argparse.Namespace:
    p = JobArgumentParser(prog="ingest", description=__doc__.splitlines()[0], config=IngestConfig)
    p.add_argument("--input", dest="inputs", nargs="+", required=True, metavar="PATH",
                   help="files, directories or globs; local, s3:// or s3a://")
    p.add_argument("--table", required=True, help="target Hive table, DB.NAME")
    p.add_argument("--mode", choices=list(MODES), help="airline or byod (bring-your-own-data)")
    p.add_argument("--format", choices=list(FORMATS), help="input format (auto: by file extension)")
    p.add_argument("--label", help="label column (byod mode)")
    p.add_argument("--features", help="comma-separated feature columns (byod mode; all others when left out)")
    p.add_argument("--partition-by", dest=PARTITION_FLAG, metavar="PARTITION_BY",
                   help=f"comma-separated partition columns, '' for none (airline: {','.join(schema.PARTITION_BY)}; byod: none)")
    p.add_argument("--max-bad-fraction", type=unit_interval, help="abort when more rows than this are malformed")
    p.add_argument("--delimiter", help="CSV field delimiter")
    p.add_argument("--reader", choices=list(READERS),
                   help="CSV parser: arrow (pyarrow in the Python workers), spark (Spark's own), auto (arrow "
                        "for airline-mode CSV except under emr-gpu)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    return run_job("ingest", parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
