"""What a PySpark Python worker does once, on its first import of mljobs (mljobs/__init__.py).

Before every task, PySpark's worker (Spark 3.5 and 4.0, worker.py) calls
``importlib.invalidate_caches()``, and Python's zipimporter answers by re-reading the whole
directory of its archive, in pure Python, once per package imported from it: Spark's own
archives on the worker's path (pyspark.zip, py4j's zip and the spark-core jar, 5,220 entries)
cost ~0.1 s of CPU per task. Measured on the 2-core machine: 100 empty tasks took 10.4 s of the
workers' CPU, 1.7 s with Spark's archives kept. Those archives do not change while a worker
lives, so their directories are kept; every other archive (a --py-files zip) is re-read as before."""
from __future__ import annotations

import os
import zipimport

MARK = "_mljobs_keeps_spark_archives"


def in_worker() -> bool:
    """Whether this process is a PySpark Python worker (forked by Spark's daemon or started by Spark)."""
    return "PYTHON_WORKER_FACTORY_SECRET" in os.environ or "SPARK_REUSE_WORKER" in os.environ


def spark_archive(path: str) -> bool:
    """Whether an archive on the path is one of Spark's own: a jar, pyspark.zip, py4j's zip."""
    name = os.path.basename(str(path))
    return name.endswith(".jar") or name == "pyspark.zip" or name.startswith("py4j-")


def keep_spark_archives() -> None:
    """zipimporter.invalidate_caches re-reads an archive unless it is Spark's own (idempotent)."""
    reread = zipimport.zipimporter.invalidate_caches
    if getattr(reread, MARK, False):
        return

    def invalidate_caches(self):
        if not spark_archive(self.archive):
            reread(self)

    setattr(invalidate_caches, MARK, True)
    zipimport.zipimporter.invalidate_caches = invalidate_caches
