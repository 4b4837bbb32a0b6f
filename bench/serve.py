#!/usr/bin/env python3
"""Benchmark: python -m mljobs.serve against the classic SageMaker ``serve.py`` (a Flask app,
the model loaded once, ``booster.predict(DMatrix)`` per request, Flask's threaded development
server), both on the same tune-like model, with the same clients.

Usage::

    PYTHONPATH=lib .venv/bin/python bench/serve.py [--quick] [--model DIR] [--seconds S] [--json-out FILE]

The model: ``--model DIR`` (a tune artifact), else xgboost trained here on synthetic flights-like
rows (the 13 HPO features + the carrier as a string feature), 200 trees of depth 6.

1. latency: 1-row CSV requests from 4 concurrent clients (http.client, kept alive where allowed) for S seconds
   (20; 5 with --quick): p50/p99 ms per server. Ours runs twice, with its defaults (gthread,
   ``--threads 4``) and with sync workers (``--threads 1``), the measurement behind that default.
2. throughput: 1,000-row CSV requests, same clients and duration: rows/s and the ratio to the baseline.
3. load: 20,000 requests (5,000 with --quick) to ours, 5 % malformed, the model directory replaced
   half-way through: counts of 2xx/4xx/5xx/dropped; every malformed request must be a 4xx.

Targets (reported, not asserted): p99 <= 10 ms for 1 row; >= 3x the baseline's rows/s at 1,000 rows.
Human-readable lines go to stderr; the LAST stdout line is JSON.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
sys.path.insert(0, str(ROOT / "bench"))
from benchlib import emit, log, machine_info  # noqa: E402

import numpy as np  # noqa: E402

CLIENTS = 4
CARRIERS = ["9E", "AA", "B6", "DL", "EV", "MQ", "UA", "US", "WN"]
NUMERIC = ["Year", "Quarter", "Month", "DayOfWeek", "Flight_Number_Reporting_Airline", "DOT_ID_Reporting_Airline",
           "OriginCityMarketID", "DestCityMarketID", "DepTime", "DepDelay", "DepDel15", "AirTime", "Distance"]
FEATURES = NUMERIC + ["Reporting_Airline"]

# The classic SageMaker bring-your-own-container serve.py, as users write it: Flask, the model
# loaded once, pandas to read the CSV, a DMatrix and booster.predict per request.
BASELINE = '''
import io, json, sys
import flask, numpy as np, pandas as pd, xgboost as xgb
meta = json.load(open(sys.argv[1] + "/metadata.json"))
booster = xgb.Booster(); booster.load_model(sys.argv[1] + "/model.json"); booster.set_param({"nthread": 1})
maps = {f: {v: i for i, v in enumerate(vals)} for f, vals in meta["categorical_maps"].items()}
app = flask.Flask(__name__)

@app.route("/ping", methods=["GET"])
def ping():
    return flask.Response("{}", status=200, mimetype="application/json")

@app.route("/invocations", methods=["POST"])
def invocations():
    if flask.request.content_type != "text/csv":
        return flask.Response("CSV only", status=415, mimetype="text/plain")
    df = pd.read_csv(io.StringIO(flask.request.data.decode("utf-8")), header=None, names=meta["features"])
    for f, m in maps.items():
        df[f] = df[f].map(m)
    pred = booster.predict(xgb.DMatrix(df.astype("float32"), missing=np.nan))
    return flask.Response("\\n".join(map(str, pred)), status=200, mimetype="text/csv")

app.run(host="127.0.0.1", port=int(sys.argv[2]), threaded=True)
'''


def synthetic_rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    month = rng.integers(1, 13, n)
    cols = [np.full(n, 2013), (month - 1) // 3 + 1, month, rng.integers(1, 8, n), rng.integers(1, 6000, n),
            rng.integers(19000, 21000, n), rng.integers(30000, 35000, n), rng.integers(30000, 35000, n),
            rng.integers(1, 2400, n), np.round(rng.gamma(1.2, 15, n) - 10), None, rng.uniform(20, 600, n),
            rng.uniform(80, 4900, n)]
    cols[10] = (cols[9] >= 15).astype(float)
    carrier = rng.integers(0, len(CARRIERS), n)
    x = np.c_[np.column_stack(cols), carrier].astype(np.float32)
    y = (cols[9] / 20 + (carrier == 3) * 0.5 + rng.normal(0, 1, n) > 0.8).astype(int)
    return x, y, [CARRIERS[c] for c in carrier]


def train_model(directory: Path, seed: int, trees: int = 200, depth: int = 6):
    import xgboost as xgb

    from mljobs.models.artifact import ModelArtifact, save_artifact

    x, y, _ = synthetic_rows(20_000, seed)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": depth, "eta": 0.1, "nthread": 2, "seed": seed,
                         "tree_method": "hist"}, xgb.DMatrix(x, label=y, feature_names=FEATURES), trees)
    art = ModelArtifact(study="bench-serve", family="xgboost", label="ArrDel15", features=FEATURES,
                        params={"max_depth": depth, "n_estimators": trees}, categorical_maps={"Reporting_Airline": CARRIERS})
    save_artifact(directory, booster, art)
    return art


def csv_rows(n: int, seed: int, features: list[str]) -> str:
    x, _, carriers = synthetic_rows(n, seed)
    lines = []
    for row, carrier in zip(x.tolist(), carriers):
        values = {f: (carrier if f == "Reporting_Airline" else f"{v:g}") for f, v in zip(FEATURES, row)}
        lines.append(",".join(values.get(f, "") for f in features))
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], port: int, name: str) -> subprocess.Popen:
    import requests

    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib")}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                time.sleep(1.0)  # every worker has loaded (ours logs it; a second is plenty for 0.05 s loads)
                return proc
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{name} did not answer /ping")


def drive(url: str, bodies: list[tuple[str, str]], seconds: float | None = None, total: int | None = None):
    """CLIENTS threads posting bodies round-robin, for ``seconds`` or ``total`` requests, each on
    one http.client connection (kept alive when the server allows; reopened when it closes it).
    Returns [(index of the body, status or the error, seconds)]."""
    import http.client
    from urllib.parse import urlsplit

    host, port = urlsplit(url).hostname, urlsplit(url).port
    out, lock, count = [], threading.Lock(), iter(range(total if total is not None else 10**12))
    stop_at = time.monotonic() + (seconds or 1e9)

    def client():
        conn = http.client.HTTPConnection(host, port, timeout=30)
        while time.monotonic() < stop_at:
            with lock:
                i = next(count, None)
            if i is None:
                return
            body, ctype = bodies[i % len(bodies)]
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/invocations", body=body.encode(), headers={"Content-Type": ctype})
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__
                conn.close()
            with lock:
                out.append((i % len(bodies), status, time.perf_counter() - t0))

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def measure(url: str, rows_per_request: int, seconds: float, features: list[str]) -> dict:
    bodies = [(csv_rows(rows_per_request, seed, features), "text/csv") for seed in range(20)]
    drive(url, bodies, seconds=min(1.0, seconds / 5))  # warm-up
    t0 = time.perf_counter()
    res = drive(url, bodies, seconds=seconds)
    wall = time.perf_counter() - t0
    ok = [s for _, st, s in res if st == 200]
    lat = np.array(ok) * 1000
    return {"requests": len(res), "ok": len(ok), "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2), "rows_per_s": round(len(ok) * rows_per_request / wall)}


def malformed_bodies(features: list[str]) -> list[tuple[str, str]]:
    good = csv_rows(1, 99, features).strip().split(",")
    return [(",".join(good[:-1]) + "\n", "text/csv"),  # a value short
            (",".join(["late"] + good[1:]) + "\n", "text/csv"),  # not a number
            ('{"instances": [[1, 2', "application/json"),  # malformed JSON
            ('[{"Dest": "LAX"}]', "application/json"),  # unknown / missing features
            ("", "text/csv"),  # empty
            ("<rows/>", "text/xml")]  # unsupported type


def load_test(url: str, total: int, model_dir: Path, features: list[str]) -> dict:
    """``total`` requests, every 20th malformed, the model replaced when half have been sent."""
    good = [(csv_rows(n, seed, features), "text/csv") for seed, n in enumerate([1, 10, 100] * 4)]
    bad = malformed_bodies(features)
    bodies = [bad[(i // 20) % len(bad)] if i % 20 == 19 else good[i % len(good)] for i in range(20 * len(bad))]
    swapped = threading.Event()

    def swap():
        # Sent requests are counted by time: a request takes about the same time all run long.
        time.sleep(half_time)
        train_model(model_dir, seed=11)
        swapped.set()

    t_probe = time.perf_counter()
    drive(url, bodies[:4], total=40)
    half_time = (time.perf_counter() - t_probe) / 40 * total / 2
    swapper = threading.Thread(target=swap)
    swapper.start()
    res = drive(url, bodies, total=total)
    swapper.join()
    is_bad = [i % 20 == 19 for i in range(len(bodies))]
    counts = {"2xx": 0, "4xx": 0, "5xx": 0, "dropped": 0}
    for _, st, _ in res:
        key = "dropped" if not isinstance(st, int) else f"{st // 100}xx"
        counts[key] = counts.get(key, 0) + 1
    malformed = [st for i, st, _ in res if is_bad[i]]
    return {"requests": len(res), **counts, "malformed": len(malformed),
            "malformed_not_4xx": sum(not (isinstance(st, int) and 400 <= st < 500) for st in malformed),
            "good_not_2xx": sum(st != 200 for i, st, _ in res if not is_bad[i]), "swapped": swapped.is_set()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 s per measurement, 5,000 load-test requests (< 5 min)")
    ap.add_argument("--model", help="a tune model directory (default: a 200-tree depth-6 model trained here)")
    ap.add_argument("--seconds", type=float, help="per measurement (default 20; 5 with --quick)")
    ap.add_argument("--json-out", help="also write the JSON line here")
    args = ap.parse_args(argv)
    seconds = args.seconds or (5.0 if args.quick else 20.0)
    total = 5_000 if args.quick else 20_000
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    model_dir = work / "model"
    if args.model:
        import shutil

        shutil.copytree(args.model, model_dir)
    else:
        train_model(model_dir, seed=1)
    from mljobs.models.artifact import load_artifact

    features = load_artifact(model_dir).features
    py = sys.executable
    (work / "baseline_serve.py").write_text(BASELINE)
    servers = {"ours_gthread": [], "ours_sync": ["--threads", "1"], "flask_baseline": None}  # ours_gthread: the defaults
    out = {"latency_1_row": {}, "throughput_1000_rows": {}}
    for name, extra in servers.items():
        port = free_port()
        cmd = [py, str(work / "baseline_serve.py"), str(model_dir), str(port)] if extra is None else \
            [py, "-m", "mljobs.serve", "--model", str(model_dir), "--port", str(port), "--workers", "2", *extra]
        proc = start(cmd, port, name)
        try:
            url = f"http://127.0.0.1:{port}"
            out["latency_1_row"][name] = measure(url, 1, seconds, features)
            out["throughput_1000_rows"][name] = measure(url, 1000, seconds, features)
            log(f"{name}: 1 row {out['latency_1_row'][name]}; 1000 rows {out['throughput_1000_rows'][name]}")
            if name == "ours_gthread":
                out["load_test"] = load_test(url, total, model_dir, features)
                log(f"load test: {out['load_test']}")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    best = max(("ours_sync", "ours_gthread"), key=lambda k: out["throughput_1000_rows"][k]["rows_per_s"])
    base = out["throughput_1000_rows"]["flask_baseline"]["rows_per_s"]
    out["ratio_rows_per_s_vs_baseline"] = {k: round(out["throughput_1000_rows"][k]["rows_per_s"] / base, 2)
                                           for k in ("ours_sync", "ours_gthread")}
    out["targets"] = {"p99_1_row_le_10ms": out["latency_1_row"]["ours_gthread"]["p99_ms"] <= 10,
                      "rows_per_s_ge_3x_baseline": out["ratio_rows_per_s_vs_baseline"][best] >= 3}
    import flask
    import gunicorn
    import xgboost
    from importlib.metadata import version

    out.update({"bench": "serve", "quick": args.quick, "seconds": seconds, "clients": CLIENTS, "features": len(features),
                "machine": machine_info(xgboost=xgboost.__version__, gunicorn=gunicorn.__version__,
                                        flask=version("flask"))})
    del flask
    emit(out, args.json_out)


if __name__ == "__main__":
    main()
