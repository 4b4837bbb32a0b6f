"""spark-submit entry point: images in label folders (or listed in a manifest) into a Hive table with a train/test split.

./spark-submit.sh ingest-images --input DIR|s3://... --table DB.NAME [--labels folders|manifest FILE] [options]
"""
from __future__ import annotations

import argparse
import sys

from mljobs.argtypes import non_negative_int, positive_int, unit_interval
from mljobs.ingest_images.config import IngestImagesConfig
from mljobs.jobs_common import JobArgumentParser, run_job


def parse_args(argv=None) -> argparse.Namespace:
    p = JobArgumentParser(prog="ingest-images", description=__doc__.splitlines()[0], config=IngestImagesConfig)
    p.add_argument("--input", required=True, metavar="DIR", help="the images: a directory, local, s3:// or s3a://")
    p.add_argument("--table", required=True, help="target Hive table DB.NAME (and DB.NAME_quarantine)")
    p.add_argument("--labels", nargs="+", metavar="SOURCE",
                   help="folders (the first folder under --input names the label) or manifest FILE "
                        "(SageMaker Ground Truth JSON lines: source-ref and a class-name)")
    p.add_argument("--label-attribute", metavar="NAME", help="the manifest's label attribute (default: the only one)")
    p.add_argument("--test-fraction", type=unit_interval, help="share of each label's distinct images in the test split")
    p.add_argument("--split-seed", type=non_negative_int, help="another seed gives another (still deterministic) split")
    p.add_argument("--min-size", type=positive_int, metavar="PIXELS", help="images with a shorter side are quarantined")
    p.add_argument("--max-bad-fraction", type=unit_interval, help="abort, writing nothing, when more files than this "
                                                                   "are quarantined")
    return p.parse_args(argv)


def main(argv=None) -> int:
    return run_job("ingest-images", parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
