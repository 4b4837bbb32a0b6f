"""What every spark-submit entry point shares: common flags, fail-fast validation,
session start, error reporting and the final JSON summary line."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import traceback
from mljobs.errors import MljobsError
from mljobs.summary import Progress, emit_summary


# Flags every job has that are not part of its config.
COMMON = ("data_dir", "summary", "config")


class JobArgumentParser(argparse.ArgumentParser):
    """argparse for a job: flags left out are absent (so YAML and the config's field defaults
    apply; each default is written once, on its field, and shown in --help from there), the
    common flags are added, and a usage error ends with the failed JSON summary line."""

    def __init__(self, *args, config: type | None = None, **kwargs):
        self.config_cls = config
        if config is not None:
            kwargs.setdefault("argument_default", argparse.SUPPRESS)
        super().__init__(*args, **kwargs)
        if config is not None:
            add_common_args(self)

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        default = self._field_default(action.dest)
        if action.help and default not in (None, "", []) and not isinstance(default, bool) \
                and "default" not in action.help:
            action.help += f" (default: {default})"
        return action

    def _field_default(self, dest: str):
        for f in dataclasses.fields(self.config_cls) if self.config_cls else ():
            if f.name == dest and f.default is not dataclasses.MISSING:
                return f.default
        return None

    def error(self, message: str):
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr, flush=True)
        emit_summary({"job": self.prog, "status": "failed", "error": message, "exit_code": 2})
        sys.exit(2)


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="metastore, warehouse, models and plots (default ./.mljobs or $MLJOBS_DATA_DIR)")
    p.add_argument("--summary", metavar="FILE", help="also write the JSON summary line to FILE")
    p.add_argument("--config", metavar="FILE", help="job options as YAML, over conf/<job>.yaml (flags win)")


def job_config(name: str, args: argparse.Namespace):
    """The job's validated config from conf/<job>.yaml, --config FILE and the flags given."""
    from mljobs.config import load_config
    from mljobs.registry import job_module

    flags = {k: v for k, v in vars(args).items() if k not in COMMON}
    return load_config(job_module(name).CONFIG, flags, name, getattr(args, "config", None))


def run_job(name: str, args: argparse.Namespace) -> int:
    """Build the config (validated before Spark starts), run the job, print the summary.

    Errors the user can fix print one line, a failed summary, and exit non-zero
    (2 for bad arguments/input, 3 for too much bad data); other errors keep their traceback.
    """
    from mljobs.registry import job_module

    progress = Progress(name)
    try:
        cfg = job_config(name, args)
    except MljobsError as exc:
        return _fail(name, args, exc, exc.exit_code)
    from mljobs import metastore
    from mljobs.session import build_session, data_dir_of

    try:
        spark = build_session(f"mljobs-{name}", data_dir=getattr(args, "data_dir", None))
    except MljobsError as exc:  # e.g. the embedded metastore held by another process
        return _fail(name, args, exc, exc.exit_code)
    jvm = spark.sparkContext._jvm
    client_mode = spark.sparkContext.getConf().get("spark.submit.deployMode", "client") == "client"
    summary = None
    try:
        summary = job_module(name).run(spark, cfg, progress)
    except MljobsError as exc:
        code = _fail(name, args, exc, exc.exit_code)
    except Exception as exc:  # unexpected: keep the traceback for the log
        held = metastore.unavailable_message(exc, data_dir_of(spark))
        if held:
            code = _fail(name, args, MljobsError(held), 2)
        else:
            traceback.print_exc()
            code = _fail(name, args, exc, 1)
    finally:
        spark.stop()
    if summary is not None:
        emit_summary({"job": name, "status": "ok", **summary}, getattr(args, "summary", None))
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
