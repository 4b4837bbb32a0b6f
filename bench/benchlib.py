"""What the benchmarks share: stderr logging, peak RSS of a process tree, machine facts."""
from __future__ import annotations

import os
import platform
import sys
import threading


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rss_tree_bytes(proc, include=None) -> int:
    """Summed RSS of proc and its descendants (include(p) -> bool filters them)."""
    import psutil

    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            if include is None or include(p):
                total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def cpu_tree_seconds(proc=None) -> float:
    """User + system CPU seconds of proc (default: this process) and every descendant (the driver
    JVM, its Python workers), including the children each has reaped (psutil's children_* times):
    a difference of two readings counts work done by processes that exited in between."""
    import psutil

    proc = proc or psutil.Process(os.getpid())
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.Error:  # exited since the listing: its time is in its parent's children_* now
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def not_jvm(p) -> bool:
    return "java" not in p.name().lower()


class RssPoller:
    """Max over time of the summed RSS of this process (or pid) and its descendants (JVM, Python workers)."""

    def __init__(self, every_s: float = 0.2, include=None, pid: int | None = None):
        import psutil

        self.proc = psutil.Process(pid or os.getpid())
        self.every_s, self.include = every_s, include
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20

    def _sample(self) -> None:
        self.peak = max(self.peak, rss_tree_bytes(self.proc, self.include))

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self._sample()

    def __enter__(self) -> "RssPoller":
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> bool:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()
        return False


def machine_info(**versions: str) -> dict:
    import psutil

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"cpu_count": os.cpu_count(), "cpus_usable": usable, "platform": platform.platform(),
            "total_ram_gb": round(psutil.virtual_memory().total / 1e9, 1), "python": platform.python_version(),
            "load_avg_1m": round(os.getloadavg()[0], 2), **versions}


def emit(result: dict, json_out: str | None = None) -> None:
    """The benchmark's last stdout line (and --json-out FILE): one JSON object."""
    import json
    from pathlib import Path

    line = json.dumps(result, sort_keys=True, default=str)
    if json_out:
        Path(json_out).write_text(line + "\n")
    print(line, flush=True)


def write_parquet(df, directory, files: int) -> None:
    """df as `files` Parquet files (pyarrow, row ranges in order) in directory."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(np.array_split(np.arange(len(df)), files)):
        pq.write_table(pa.Table.from_pandas(df.iloc[part], preserve_index=False), directory / f"part-{i:05d}.parquet")


def local_spark(app: str, work):
    """A local[2] session (no UI, 4 shuffle partitions, 4 GB driver) with its data under work/data
    and the database `bench`."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from mljobs.session import build_session

    spark = build_session(app, data_dir=work / "data",
                          conf={"spark.master": "local[2]", "spark.ui.enabled": "false",
                                "spark.sql.shuffle.partitions": "4", "spark.driver.memory": "4g"})
    spark.sql("CREATE DATABASE IF NOT EXISTS bench")
    return spark


def parquet_table(spark, table: str, directory) -> None:
    """(Re)create the Hive table `table` over the Parquet files in directory."""
    spark.sql(f"DROP TABLE IF EXISTS {table}")
    spark.sql(f"CREATE TABLE {table} USING parquet LOCATION '{directory}'")
