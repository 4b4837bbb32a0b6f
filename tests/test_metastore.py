"""The local shared metastore (mljobs.metastore): real server JVMs and real spark-submit
processes, each test on its own data dir, every server stopped at the end."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from helpers import ROOT, last_json, run_cli

from mljobs import metastore
from mljobs.session import data_dir_of


@pytest.fixture
def data_dir(tmp_path):
    yield tmp_path
    metastore.stop(tmp_path)  # never leak a server JVM


def _sql(data_dir, query, *flags) -> subprocess.Popen:
    return subprocess.Popen(["./spark-submit.sh", *flags, "sql", "--data-dir", str(data_dir), query], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _done(proc) -> str:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    return out


def _count(out: str) -> int:
    return int([ln for ln in out.splitlines() if ln.startswith("|") and ln.strip("| ").isdigit()][0].strip("| "))


def test_start_status_stop(data_dir):
    def cli(action):
        res = run_cli(["./spark-submit.sh", "metastore", action, "--data-dir", str(data_dir)])
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout.splitlines()[-1])

    started = cli("start")
    assert started["running"] and started["host"] == "127.0.0.1"
    assert cli("start")["pid"] == started["pid"]  # left running, reused
    assert cli("status")["port"] == started["port"]
    # --metastore jdbc:...: a database of the user's, here this very server, from another data dir
    url = metastore.connection_url(data_dir, started["port"])
    other = data_dir / "elsewhere"
    _done(_sql(other, "CREATE TABLE j AS SELECT 1 AS one", "--metastore", url))
    shown = [ln.split("|")[2].strip() for ln in _done(_sql(data_dir, "SHOW TABLES")).splitlines() if ln.count("|") == 4]
    assert "j" in shown and not (other / "metastore_db").exists()
    assert not cli("stop")["running"]
    assert not cli("status")["running"]


@pytest.mark.slow
def test_embedded_tables_survive_concurrent_server_jobs_and_a_killed_server(data_dir, bts_frame, tmp_path_factory):
    # an existing data dir from the embedded mode: the server opens the same metastore_db
    _done(_sql(data_dir, "CREATE TABLE t1 AS SELECT id FROM range(5)", "--metastore", "embedded"))
    write = _sql(data_dir, "CREATE TABLE t2 AS SELECT id FROM range(7)")  # the server: the default
    read = _sql(data_dir, "SELECT COUNT(*) FROM t1")
    _done(write)
    assert _count(_done(read)) == 5
    # the server dies in the middle of an ingest: it fails in seconds, in one line, and publishes nothing
    raw = tmp_path_factory.mktemp("raw")
    bts_frame.iloc[::300].to_csv(raw / "flights.csv", index=False)
    log = raw.parent / "ingest.log"
    ingest = _job(log, "ingest", "--input", str(raw), "--table", "default.flights", "--data-dir", str(data_dir))
    while "staging rows" not in log.read_text() and ingest.poll() is None:
        time.sleep(0.2)
    os.kill(metastore.read_record(data_dir)["pid"], 9)
    killed = time.monotonic()
    assert ingest.wait(timeout=300) == 2 and time.monotonic() - killed < 120, log.read_text()[-3000:]
    assert last_json(log.read_text())["error"].startswith("the metastore server stopped during the job")
    assert "Exception" not in log.read_text(), log.read_text()[-3000:]
    # the next job restarts it: the committed tables are intact, the ingest's table is not there
    assert "flights" not in _done(_sql(data_dir, "SHOW TABLES"))
    assert _count(_done(_sql(data_dir, "SELECT (SELECT COUNT(*) FROM t1) * 100 + (SELECT COUNT(*) FROM t2)"))) == 507
    assert metastore.status(data_dir)["running"]


def test_embedded_metastore_held_by_another_process_is_one_line(data_dir, tmp_path_factory):
    script = tmp_path_factory.mktemp("hold") / "hold.py"
    script.write_text(HOLD)
    holder = subprocess.Popen([sys.executable, str(script), str(ROOT / "lib"), str(data_dir)], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        res = run_cli(["./spark-submit.sh", "--metastore", "embedded", "sql", "--data-dir", str(data_dir), "SHOW TABLES"])
        assert res.returncode == 2
        lines = (res.stdout + res.stderr).strip().splitlines()  # spark-submit merges the streams
        assert len(lines) == 2, res.stdout[-2000:] + res.stderr[-2000:]  # one error line, the summary: no trace
        assert f"open in embedded mode by pid {holder.pid} (hold.py " in lines[0]
        assert last_json(res.stdout)["error"] == lines[0].removeprefix("error: ")
    finally:
        holder.communicate("done\n", timeout=60)
    # once the holder has gone, the same command works
    assert run_cli(["./spark-submit.sh", "--metastore", "embedded", "sql", "--data-dir", str(data_dir),
                    "SHOW TABLES"]).returncode == 0


# A process that opens data_dir's metastore embedded, says ready, and holds it until told.
HOLD = """
import sys
sys.path.insert(0, sys.argv[1])
from mljobs.session import build_session
spark = build_session("hold", data_dir=sys.argv[2], conf={"spark.master": "local[1]", "spark.ui.enabled": "false",
                                                          "spark.mljobs.metastore": "embedded"})
spark.sql("SHOW DATABASES").collect()
print("ready", flush=True)
sys.stdin.readline()
spark.stop()
"""


def _job(log, *args) -> subprocess.Popen:
    """A spark-submit job in the background, its output to a file (a pipe left unread would block it)."""
    env = {k: v for k, v in os.environ.items() if k != "MLJOBS_DATA_DIR"}
    return subprocess.Popen(["./spark-submit.sh", *args], cwd=ROOT, env=env, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, text=True)


def _finished(proc, log) -> dict:
    assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    return last_json(log.read_text())


def _while_running(procs, read, every_s: float = 2.0) -> list:
    """read() in this process every few seconds while the jobs run: the values seen."""
    seen = []
    while any(p.poll() is None for p in procs):
        seen.append(read())
        time.sleep(every_s)
    return seen


@pytest.mark.slow
def test_jobs_share_the_metastore_with_this_process(spark, bts_frame, tmp_path):
    """Two ingests at once, a tune study writing tuning_trials, an explain: each a spark-submit
    process on the suite's own data dir, while this process (the suite's session) reads."""
    ddir = str(data_dir_of(spark))
    spark.sql("CREATE DATABASE IF NOT EXISTS share")
    for name, rows in (("a", bts_frame.iloc[::150]), ("b", bts_frame.iloc[1::150])):
        (tmp_path / name).mkdir()
        rows.to_csv(tmp_path / name / "flights.csv", index=False)
    ingests = [_job(tmp_path / f"ingest-{n}.log", "ingest", "--input", str(tmp_path / n), "--table", f"share.{n}",
                    "--data-dir", ddir) for n in "ab"]
    shown = _while_running(ingests, lambda: {r.tableName for r in spark.sql("SHOW TABLES IN share").collect()
                                             if not r.isTemporary})  # the session's temp views are listed too
    accepted = [_finished(p, tmp_path / f"ingest-{n}.log")["rows_accepted"] for p, n in zip(ingests, "ab")]
    assert shown and all(s <= {"a", "b", "a_quarantine", "b_quarantine"} for s in shown)
    assert [spark.table(f"share.{n}").count() for n in "ab"] == accepted and min(accepted) > 1500

    tune = _job(tmp_path / "tune.log", "tune", "--table", "share.a", "--study", "shared", "--max-trials", "3",
                "--max-parallel", "1", "--cv-folds", "2", "--data-dir", ddir)

    def trials() -> int:
        if not spark.catalog.tableExists("share.tuning_trials"):
            return 0
        spark.sql("REFRESH TABLE share.tuning_trials")
        return spark.sql("SELECT COUNT(*) AS n FROM share.tuning_trials WHERE study = 'shared'").first().n

    seen = _while_running([tune], trials)
    model_dir = _finished(tune, tmp_path / "tune.log")["model_dir"]
    assert seen == sorted(seen) and trials() == 3  # never fewer than before, exact at the end

    explain = _job(tmp_path / "explain.log", "explain", "--model", model_dir, "--table", "share.b",
                   "--data-dir", ddir)
    counts = _while_running([explain], lambda: [spark.table(f"share.{n}").count() for n in "ab"])
    assert _finished(explain, tmp_path / "explain.log")["rows_explained"] == accepted[1]
    assert counts and all(c == accepted for c in counts)
