#!/usr/bin/env python3
"""Soak: several processes at once on one data dir through the local metastore server.

Usage::

    PYTHONPATH=lib .venv/bin/python bench/metastore.py [--processes P] [--minutes M] [--quick]
        [--workdir DIR] [--json-out FILE]

P workers (4; 2 with --quick) run for M minutes (3; 1 with --quick), each a loop of
``./spark-submit.sh`` jobs on one data dir, its kinds in turn (worker i starts at kind i):

* ingest: a generated CSV of 1,000-3,000 rows with unique ids (a range of its own) into
  ``soak.w<i>_<k>`` (byod), then recorded in the ledger with its id range;
* sql: ``SELECT COUNT(*), COUNT(DISTINCT id), SUM(id)`` of a table in the ledger (any worker's),
  compared with the ledger right away;
* tune: a 2-trial, 2-fold study of its own over ``soak.base`` (real 2013 flights, ingested
  before the clock starts).

When the clock has run out, every job has ended and the check runs in this process (its own
session on the same server): every ledger table's count, distinct ids and id sum equal its input
(none lost, none duplicated), every tune study has exactly 2 complete trials in
``soak.tuning_trials``, and no job failed. Reported: jobs by kind, failures, lost and duplicated
rows, median job seconds by kind, the server's peak RSS. Everything listens on 127.0.0.1 only.
Human-readable lines go to stderr; the LAST stdout line is JSON. Exit status 1 when a check fails.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
sys.path.insert(0, str(ROOT / "bench"))
from benchlib import RssPoller, emit, log, machine_info  # noqa: E402

KINDS = ("ingest", "sql", "tune")
TRIALS = 2


class Soak:
    def __init__(self, work: Path, deadline: float):
        self.work, self.data, self.deadline = work, work / "data", deadline
        self.lock = threading.Lock()
        self.ledger: dict[str, tuple[int, int]] = {}  # table -> (first id, rows)
        self.studies: list[str] = []
        self.jobs: list[dict] = []
        self.next_id = 0

    def job(self, kind: str, args: list[str]) -> subprocess.CompletedProcess:
        t0 = time.monotonic()
        env = {k: v for k, v in os.environ.items() if k != "MLJOBS_DATA_DIR"}
        res = subprocess.run(["./spark-submit.sh", *args, "--data-dir", str(self.data)], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=900)
        rec = {"kind": kind, "rc": res.returncode, "seconds": round(time.monotonic() - t0, 1)}
        with self.lock:
            self.jobs.append(rec)
            if res.returncode:
                rec["log"] = str(self.work / f"failed-{len(self.jobs)}-{kind}.log")
                Path(rec["log"]).write_text(" ".join(args) + "\n" + res.stdout + res.stderr)
                error = next((ln for ln in reversed(res.stdout.splitlines()) if ln.startswith("{")), "")
                log(f"[soak] {kind} FAILED rc={res.returncode} ({rec['log']}): {error[:300]}")
        return res

    def ingest(self, worker: int, k: int) -> None:
        rows = 1000 + (worker * 7919 + k * 104729) % 2001
        with self.lock:
            first, self.next_id = self.next_id, self.next_id + rows
        src = self.work / "inputs" / f"w{worker}_{k}"
        src.mkdir(parents=True)
        ids = range(first, first + rows)
        (src / "part.csv").write_text("id,x,label\n" + "".join(f"{i},{(i * 37) % 101 / 10},{i % 2}\n" for i in ids))
        table = f"soak.w{worker}_{k}"
        res = self.job("ingest", ["ingest", "--input", str(src), "--table", table, "--mode", "byod",
                                  "--label", "label", "--partition-by", ""])
        if res.returncode == 0:
            with self.lock:
                self.ledger[table] = (first, rows)

    def sql(self, worker: int, k: int) -> None:
        with self.lock:
            tables = sorted(self.ledger)
        if not tables:
            return
        table = tables[(worker + k) % len(tables)]
        res = self.job("sql", ["sql", f"SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS d, SUM(id) AS s FROM {table}"])
        if res.returncode == 0:
            row = next(ln for ln in res.stdout.splitlines() if ln.startswith("|") and ln.strip("| ")[0].isdigit())
            got = tuple(int(c) for c in row.strip("|").split("|"))
            if got != expected(*self.ledger[table]):
                with self.lock:
                    self.jobs.append({"kind": "sql-check", "rc": 1, "table": table, "got": got})

    def tune(self, worker: int, k: int) -> None:
        study = f"w{worker}_{k}"
        res = self.job("tune", ["tune", "--table", "soak.base", "--study", study, "--max-trials", str(TRIALS),
                                "--max-parallel", "1", "--cv-folds", "2"])
        if res.returncode == 0:
            with self.lock:
                self.studies.append(study)

    def worker(self, i: int) -> None:
        k = 0
        while time.monotonic() < self.deadline:
            getattr(self, KINDS[(i + k) % len(KINDS)])(i, k)
            k += 1


def expected(first: int, rows: int) -> tuple[int, int, int]:
    return rows, rows, sum(range(first, first + rows))


def base_table(soak: Soak) -> None:
    """soak.base: 2,000 real 2013 flights (airline ingest), before the clock starts."""
    from mljobs.datasets.airline import load_bts_frame

    raw = soak.work / "inputs" / "base"
    raw.mkdir(parents=True)
    load_bts_frame().iloc[::150].to_csv(raw / "flights.csv", index=False)
    res = soak.job("setup", ["ingest", "--input", str(raw), "--table", "soak.base"])
    if res.returncode:
        sys.exit(f"setup ingest failed: {res.stdout[-2000:]}")


def check(soak: Soak) -> dict:
    """Counts of every ledger table and trials of every study, read in this process."""
    from mljobs.session import build_session

    spark = build_session("soak-check", data_dir=soak.data, conf={"spark.master": "local[2]", "spark.ui.enabled": "false"})
    try:
        lost = dup = 0
        wrong = []
        for table, (first, rows) in sorted(soak.ledger.items()):
            got = tuple(spark.sql(f"SELECT COUNT(*), COUNT(DISTINCT id), SUM(id) FROM {table}").first())
            lost, dup = lost + max(0, rows - got[1]), dup + got[0] - got[1]
            if got != expected(first, rows):
                wrong.append(table)
                log(f"[soak] {table}: got {got}, expected {expected(first, rows)}")
        trials = {r.study: r.n for r in spark.sql(
            "SELECT study, COUNT(*) AS n FROM soak.tuning_trials WHERE state = 'COMPLETE' GROUP BY study").collect()}
        bad_studies = [s for s in soak.studies if trials.get(s) != TRIALS]
    finally:
        spark.stop()
    return {"lost_rows": lost, "duplicated_rows": dup, "tables_checked": len(soak.ledger), "tables_wrong": wrong,
            "studies_checked": len(soak.studies), "studies_wrong": bad_studies}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--processes", type=int)
    p.add_argument("--minutes", type=float)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--workdir")
    p.add_argument("--json-out")
    a = p.parse_args()
    procs = a.processes or (2 if a.quick else 4)
    minutes = a.minutes or (1.0 if a.quick else 3.0)
    work = Path(a.workdir or tempfile.mkdtemp(prefix="mljobs-soak-"))
    from mljobs import metastore

    soak = Soak(work, deadline=0)
    try:
        base_table(soak)
        server = metastore.running(soak.data)
        soak.deadline = time.monotonic() + minutes * 60
        log(f"[soak] {procs} processes for {minutes} min on {soak.data} (server pid {server['pid']})")
        t0 = time.monotonic()
        with RssPoller(pid=server["pid"]) as rss:
            threads = [threading.Thread(target=soak.worker, args=(i,)) for i in range(procs)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        wall = time.monotonic() - t0
        checked = check(soak)
    finally:
        metastore.stop(soak.data)
    jobs = [j for j in soak.jobs if j["kind"] != "setup"]
    failures = [j for j in jobs if j["rc"]]
    result = {"bench": "metastore-soak", "processes": procs, "minutes": minutes, "wall_seconds": round(wall, 1),
              "jobs": {k: sum(j["kind"] == k for j in jobs) for k in KINDS}, "failures": len(failures),
              "failed": [{k: j.get(k) for k in ("kind", "rc", "log")} for j in failures],
              "median_seconds": {k: statistics.median([j["seconds"] for j in jobs if j["kind"] == k] or [0])
                                 for k in KINDS},
              "server_peak_rss_mb": round(rss.peak / 2**20, 1), **checked, "machine": machine_info()}
    emit(result, a.json_out)
    ok = not failures and not checked["tables_wrong"] and not checked["studies_wrong"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
