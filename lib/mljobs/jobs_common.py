"""What every spark-submit entry point shares: common flags, fail-fast validation,
session start, error reporting and the final JSON summary line."""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Any, Callable

from mljobs.errors import MljobsError
from mljobs.summary import Progress, emit_summary


class JobArgumentParser(argparse.ArgumentParser):
    """argparse that also ends a usage error with the failed JSON summary line."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr, flush=True)
        emit_summary({"job": self.prog, "status": "failed", "error": message, "exit_code": 2})
        sys.exit(2)


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="metastore, warehouse, models and plots (default ./.mljobs or $MLJOBS_DATA_DIR)")
    p.add_argument("--summary", metavar="FILE", help="also write the JSON summary line to FILE")


def run_job(
    name: str,
    args: argparse.Namespace,
    prepare: Callable[[argparse.Namespace], Any],
    work: Callable[[Any, Any, Progress], dict],
) -> int:
    """Validate arguments (before Spark starts), run the work, print the summary.

    Errors the user can fix print one line, a failed summary, and exit non-zero
    (2 for bad arguments/input, 3 for too much bad data); other errors keep their traceback.
    """
    progress = Progress(name)
    try:
        cfg = prepare(args)
    except MljobsError as exc:
        return _fail(name, args, exc, exc.exit_code)
    from mljobs.session import build_session

    spark = build_session(f"mljobs-{name}", data_dir=args.data_dir)
    jvm = spark.sparkContext._jvm
    client_mode = spark.sparkContext.getConf().get("spark.submit.deployMode", "client") == "client"
    summary = None
    try:
        summary = work(spark, cfg, progress)
    except MljobsError as exc:
        code = _fail(name, args, exc, exc.exit_code)
    except Exception as exc:  # unexpected: keep the traceback for the log
        traceback.print_exc()
        code = _fail(name, args, exc, 1)
    finally:
        spark.stop()
    if summary is not None:
        emit_summary({"job": name, "status": "ok", **summary}, args.summary)
        code = 0
    _release_submit_jvm(jvm, client_mode, code)
    return code


def _release_submit_jvm(jvm, client_mode: bool, code: int) -> None:
    """Spark 3.5.5's barrier coordinator keeps a non-daemon timer thread alive after
    spark.stop() (SPARK-49479 / SPARK-51450, fixed in 3.5.6 and 4.0): after a barrier job
    (xgboost.spark: tune --mode distributed) a client-mode spark-submit JVM never exits.
    Once every output is written, end that JVM with the job's exit code. Cluster mode needs
    nothing: YARN's ApplicationMaster exits its JVM itself."""
    if not client_mode or not os.environ.get("PYSPARK_GATEWAY_PORT"):
        return
    try:
        held = any("BarrierCoordinator" in t.getName() and not t.isDaemon() and t.isAlive()
                   for t in jvm.java.lang.Thread.getAllStackTraces().keySet())
    except Exception:  # the gateway is already gone: nothing holds the JVM from here
        return
    if not held:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        jvm.java.lang.System.exit(code)
    except Exception:  # the JVM went away while answering, as it should
        pass
    os._exit(code)


def _fail(name: str, args, exc: BaseException, code: int) -> int:
    message = str(exc) or type(exc).__name__
    print(f"error: {message}", file=sys.stderr, flush=True)
    emit_summary({"job": name, "status": "failed", "error": message, "exit_code": code}, getattr(args, "summary", None))
    return code
