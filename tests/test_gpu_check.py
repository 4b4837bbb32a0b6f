"""scripts/gpu-check.sh, the prepared GPU check, without a GPU: the script parses, its dry run
names every command it would run and writes a report of the documented shape, and on a
machine without a GPU a real run stops at once with {"gpu": false} and a non-zero exit."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from helpers import ROOT

SCRIPT = ROOT / "scripts" / "gpu-check.sh"
JOBS = ("ingest", "tune", "explain", "predict")


def run_check(args: list[str], tmp_path, path_env: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(tmp_path / "out")}
    if path_env is not None:
        env["PATH"] = path_env
    return subprocess.run(["bash", str(SCRIPT), *args, "--work", str(tmp_path / "work")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_script_parses():
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpucheck")
    proc = run_check(["--dry-run"], tmp)  # no --out: $OUT/gpu-check.json
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp / "out" / "gpu-check.json").read_text())
    return proc, report, tmp


def test_dry_run_prints_every_command(dry):
    proc, _, tmp = dry
    commands = [line[2:] for line in proc.stdout.splitlines() if line.startswith("+ ")]
    assert commands[0] == "./scripts/bootstrap.sh"  # the setup CI's scripts/test.sh does, no extras
    assert ".venv/bin/python -m mljobs.jars fetch rapids" in commands
    assert ".venv/bin/python -m mljobs.jars fetch derby" in commands
    assert any("mljobs.datasets.airline export-nycflights13" in c for c in commands)
    for job in JOBS:
        runs = [c for c in commands if c.startswith("./spark-submit.sh") and f" {job} " in c and "metastore" not in c]
        cpu = [c for c in runs if "spark.mljobs.device=cpu" in c]
        gpu = [c for c in runs if "spark.mljobs.device=cuda" in c]
        assert len(cpu) == 1 and len(gpu) == 1, (job, runs)
        assert "spark.plugins" not in cpu[0] and "rapids" not in cpu[0]
        assert "spark.plugins=com.nvidia.spark.SQLPlugin" in gpu[0] and "rapids-4-spark_2.12-" in gpu[0]
        assert "spark.rapids.sql.hasExtendedYearValues=false" in gpu[0]  # emr-gpu's settings
        assert "spark.rapids.sql.mode" not in gpu[0]  # executed on the GPU, not explainOnly
        assert str(tmp / "work" / "cpu" / "data") in cpu[0] and str(tmp / "work" / "gpu" / "data") in gpu[0]
        assert any(c.startswith(f".venv/bin/python -m mljobs.gpu check {job} ") for c in commands)
    # Nothing ran: no data directory, no logs.
    assert not (tmp / "work" / "cpu").exists() and not (tmp / "work" / "logs").exists()


def test_dry_run_report_shape(dry):
    proc, report, _ = dry
    assert report["dry_run"] is True and report["ok"] is False
    assert isinstance(report["gpu"], bool) and "dry run" in report["message"]
    assert {"tolerances", "data", "setup", "gpu_conf", "seconds", "budget_s"} <= set(report)
    assert report["budget_s"] == 480
    assert list(report["jobs"]) == list(JOBS)
    for job, entry in report["jobs"].items():
        assert {"cpu", "gpu", "speedup", "fallbacks", "equal", "checks"} <= set(entry), job
        for side in ("cpu", "gpu"):
            assert entry[side]["seconds"] is None and entry[side]["command"].startswith("./spark-submit.sh")
        assert entry["equal"] is None and entry["speedup"] is None
        assert entry["fallbacks"]["known"] is None and entry["fallbacks"]["unexpected"] is None
    assert json.loads(proc.stdout.strip().splitlines()[-1])["report"].endswith("gpu-check.json")


def test_without_a_gpu_it_stops_with_gpu_false(tmp_path):
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has nvidia-smi")
    out = tmp_path / "r.json"
    proc = run_check(["--out", str(out)], tmp_path)
    assert proc.returncode == 1
    report = json.loads(out.read_text())
    assert report["gpu"] is False and report["ok"] is False and "no GPU" in report["message"]
    assert report["jobs"] == {} and report["setup"] == []
    assert "+ " not in proc.stdout  # nothing was run


def test_comparison_tolerances():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    gc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gc)
    cpu = {"rows_scored": 100, "mean_probability": 0.2, "metrics": {"rows": 90, "accuracy": 0.8, "auc": 0.7,
                                                                     "logloss": 0.5}}
    close = {**cpu, "mean_probability": 0.205}
    far = {**cpu, "metrics": {**cpu["metrics"], "auc": 0.65}}
    fewer = {**cpu, "rows_scored": 99}
    assert gc.compare("predict", cpu, close)["equal"] is True
    assert gc.compare("predict", cpu, far)["equal"] is False
    assert gc.compare("predict", cpu, fewer)["equal"] is False
    assert gc.compare("predict", cpu, None)["equal"] is None
