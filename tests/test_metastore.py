"""The local shared metastore (mljobs.metastore): real server JVMs and real spark-submit
processes, each test on its own data dir, every server stopped at the end."""
from __future__ import annotations

import json
import os
import subprocess

import pytest
from helpers import ROOT, run_cli

from mljobs import metastore


SERVER = ("--metastore", "server")  # not yet the default (docs/metastore.md)


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
    assert not cli("stop")["running"]
    assert not cli("status")["running"]


@pytest.mark.slow
def test_embedded_tables_survive_concurrent_server_jobs_and_a_killed_server(data_dir):
    # an existing data dir from the embedded mode: the server opens the same metastore_db
    _done(_sql(data_dir, "CREATE TABLE t1 AS SELECT id FROM range(5)", "--metastore", "embedded"))
    write = _sql(data_dir, "CREATE TABLE t2 AS SELECT id FROM range(7)", *SERVER)
    read = _sql(data_dir, "SELECT COUNT(*) FROM t1", *SERVER)
    _done(write)
    assert _count(_done(read)) == 5
    os.kill(metastore.read_record(data_dir)["pid"], 9)  # the server dies; the next job restarts it
    assert _count(_done(_sql(data_dir, "SELECT (SELECT COUNT(*) FROM t1) * 100 + (SELECT COUNT(*) FROM t2)", *SERVER))) == 507
    assert metastore.status(data_dir)["running"]
