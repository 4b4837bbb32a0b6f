"""Which jobs exist, in pipeline order: the one list that spark-submit.sh, the EMR step
builder and the GPU-readiness check read. What else the system knows about a job is
declared by the job itself, in ``lib/mljobs/<package>/job.py``:

- ``NAME`` (its command name), ``CONFIG`` (its ``config.JobConfig`` dataclass) and
  ``run(spark, cfg, progress) -> summary dict``;
- ``GPU_FALLBACKS``: the operators the RAPIDS Accelerator leaves on the CPU in its plans
  (``mljobs.gpu.Known`` entries; checked by tests/test_gpu_readiness.py);
- ``EMR_STEP``: how it runs as a step of the EMR pipeline (``mljobs.emr.EmrStep``), or None.

Job modules are imported lazily, so listing names needs neither Spark nor the jobs' imports.
"""
from __future__ import annotations

import importlib
import sys

from mljobs.errors import MljobsError

JOBS = ("ingest", "ingest-images", "frames", "train-classifier", "classify", "tune", "predict", "bias", "explain", "train-text",
        "predict-text", "train-detector", "detect", "detection-metrics", "sql")


def package_of(name: str) -> str:
    """'detection-metrics' -> 'detection_metrics' (the package under lib/mljobs/ and jobs/<it>.py)."""
    return name.replace("-", "_")


def check_name(name: str) -> str:
    if name not in JOBS:
        raise MljobsError(f"unknown job {name!r}; valid: {', '.join(JOBS)}")
    return name


def job_module(name: str):
    """The job's ``mljobs.<package>.job`` module."""
    module = importlib.import_module(f"mljobs.{package_of(check_name(name))}.job")
    if getattr(module, "NAME", None) != name:
        raise RuntimeError(f"mljobs.{package_of(name)}.job declares NAME={getattr(module, 'NAME', None)!r}, not {name!r}")
    return module


def main(argv=None) -> int:
    """``python -m mljobs.registry``: the job names, one per line."""
    print("\n".join(JOBS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
