"""python -m mljobs.serve as a user runs it: a real gunicorn server in a subprocess, real HTTP,
a small real xgboost model with a string feature. Each content type gives booster.predict's
probabilities; bad input is a 4xx naming the problem and the server keeps serving; the model
is swapped (directory replaced, SIGHUP) under load without a failed request."""
from __future__ import annotations

import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
import xgboost as xgb

from helpers import ROOT
from mljobs.models.artifact import ModelArtifact, save_artifact

FEATURES = ["Distance", "DepDelay", "Carrier", "Month"]
CARRIERS = ["AA", "B6", "DL", "UA"]  # sorted: the position is the code
MAX_BODY = 6 * 1024 * 1024


def train(seed: int, rounds: int = 15) -> xgb.Booster:
    rng = np.random.default_rng(seed)
    n = 1500
    x = np.c_[rng.uniform(100, 3000, n), rng.normal(5, 30, n), rng.integers(0, 4, n), rng.integers(1, 13, n)]
    y = (x[:, 1] / 30 + (x[:, 2] == 2) + rng.normal(0, 0.7, n) > 0.6).astype(int)
    params = {"objective": "binary:logistic", "max_depth": 4, "eta": 0.3, "nthread": 1, "seed": seed}
    return xgb.train(params, xgb.DMatrix(x.astype(np.float32), label=y, feature_names=FEATURES), rounds)


def write_model(directory: Path, booster: xgb.Booster, study: str = "serve-test") -> ModelArtifact:
    art = ModelArtifact(study=study, family="xgboost", label="ArrDel15", features=FEATURES, params={"max_depth": 4},
                        categorical_maps={"Carrier": CARRIERS})
    save_artifact(directory, booster, art)
    return art


def rows() -> list[list]:
    """Raw rows in feature order: numbers, a carrier code, a missing value, an unseen carrier."""
    rng = np.random.default_rng(7)
    out = [[float(round(rng.uniform(100, 3000), 1)), float(round(rng.normal(5, 30), 2)), CARRIERS[i % 4], int(i % 12 + 1)]
           for i in range(40)]
    out[3][1] = None
    out[5][2] = "ZZ"  # not seen in training: missing
    return out


def expected(booster: xgb.Booster, raw: list[list]) -> np.ndarray:
    x = np.array([[np.nan if v is None else (CARRIERS.index(v) if v in CARRIERS else np.nan) if j == 2 else v
                   for j, v in enumerate(r)] for r in raw], dtype=np.float32)
    return booster.predict(xgb.DMatrix(x, feature_names=FEATURES, missing=np.nan))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, args: list[str], tmp: Path, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.err = tmp / f"serve-{self.port}.err"
        full_env = {**os.environ, "PYTHONPATH": str(ROOT / "lib"), **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "mljobs.serve", *args, "--port", str(self.port),
                                      "--workers", "2"], cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL,
                                     stderr=self.err.open("w"))
        self.pings = self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> list[int]:
        seen, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            try:
                code = requests.get(self.url + "/ping", timeout=5).status_code
            except requests.ConnectionError:
                time.sleep(0.05)
                continue
            seen.append(code)
            if code == 200 and self.log().count("loaded model") >= 2:  # both workers (a request may land on either)
                return seen
            time.sleep(0.02)
        raise AssertionError(f"no /ping 200 within {timeout} s: {seen[-5:]}\n{self.log()}")

    def log(self) -> str:
        return self.err.read_text()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve") / "model"
    booster = train(1)
    return d, booster, write_model(d, booster)


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    s = Server(["--model", str(model[0])], tmp_path_factory.mktemp("serve-logs"))
    yield s
    s.stop()


def post(server, body, ctype, accept=None, query="", **kw):
    headers = {"Content-Type": ctype, **({"Accept": accept} if accept else {})}
    return requests.post(server.url + "/invocations" + query, data=body, headers=headers, timeout=30, **kw)


def csv_body(raw):
    return "\n".join(",".join("" if v is None else str(v) for v in r) for r in raw) + "\n"


def arrow_table(raw):
    cols = list(zip(*raw))
    return pa.table({f: pa.array(list(c)) for f, c in zip(FEATURES[::-1], cols[::-1])})  # any column order


def parquet_body(raw):
    buf = io.BytesIO()
    pq.write_table(arrow_table(raw), buf)
    return buf.getvalue()


def arrow_body(raw):
    sink = pa.BufferOutputStream()
    table = arrow_table(raw)
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


BODIES = {
    "csv": (lambda raw: csv_body(raw), "text/csv"),
    "json-instances": (lambda raw: json.dumps({"instances": raw}), "application/json"),
    "json-records": (lambda raw: json.dumps([dict(zip(FEATURES, r)) for r in raw]), "application/json"),
    "json-instances-records": (lambda raw: json.dumps({"instances": [dict(zip(FEATURES, r)) for r in raw]}),
                               "application/json; charset=utf-8"),
    "parquet": (parquet_body, "application/x-parquet"),
    "arrow": (arrow_body, "application/vnd.apache.arrow.stream"),
}


def probabilities(resp) -> np.ndarray:
    assert resp.status_code == 200, resp.text
    if resp.headers["Content-Type"].startswith("text/csv"):
        return np.array([float(line.split(",")[0]) for line in resp.text.splitlines()])
    return np.array([p["probability"] for p in resp.json()["predictions"]])


def test_ping_answers_503_until_loaded_then_200_with_the_model(server, model):
    assert set(server.pings) <= {200, 503} and server.pings[-1] == 200
    assert server.pings == sorted(server.pings, reverse=True)  # 503s (if caught), then 200s only
    art = model[2]
    ping = requests.get(server.url + "/ping", timeout=5).json()
    assert ping["status"] == "ok" and ping["model_sha256"] == art.model_sha256
    for route in ("/models", "/metadata"):
        m = requests.get(server.url + route, timeout=5).json()["models"][0]
        assert m["model_sha256"] == art.model_sha256 and m["study"] == "serve-test" and m["features"] == FEATURES
        assert m["loaded_at"] and m["categorical_features"] == ["Carrier"]
    assert server.log().count("loaded model 'serve-test'") == 2  # one line per worker start


@pytest.mark.parametrize("kind", list(BODIES))
@pytest.mark.parametrize("accept", ["text/csv", "application/json"])
def test_every_content_type_gives_booster_predict(server, model, kind, accept):
    raw = rows()
    make, ctype = BODIES[kind]
    resp = post(server, make(raw), ctype, accept)
    assert resp.headers["Content-Type"] == accept
    np.testing.assert_allclose(probabilities(resp), expected(model[1], raw), rtol=0, atol=1e-6)


def test_a_large_csv_body_gives_the_same_and_names_a_bad_row(server, model):
    raw = rows() * 25  # 1,000 rows: past the size where pyarrow's CSV reader takes over
    np.testing.assert_allclose(probabilities(post(server, csv_body(raw), "text/csv")), expected(model[1], raw), atol=1e-6)
    bad = csv_body(raw).splitlines()
    bad[876] = bad[876].replace(",", ",late,", 1).rsplit(",", 1)[0]
    resp = post(server, "\n".join(bad), "text/csv")
    assert resp.status_code == 400 and resp.json()["error"].startswith("row 877: feature 'DepDelay' is not a number")


def test_threshold_gives_labels_beside_probabilities(server, model):
    raw = rows()
    want = expected(model[1], raw)
    js = post(server, json.dumps({"instances": raw}), "application/json", query="?threshold=0.4").json()
    assert [p["label"] for p in js["predictions"]] == [int(p > 0.4) for p in want]
    lines = post(server, csv_body(raw), "text/csv", "text/csv", query="?threshold=0.4").text.splitlines()
    assert [int(line.split(",")[1]) for line in lines] == [int(p > 0.4) for p in want]
    # SageMaker forwards per-request options only in the CustomAttributes header.
    hdr = requests.post(server.url + "/invocations", data=csv_body(raw), timeout=30, headers={
        "Content-Type": "text/csv", "Accept": "application/json", "X-Amzn-SageMaker-Custom-Attributes": "threshold=0.5"})
    assert [p["label"] for p in hdr.json()["predictions"]] == [int(p > 0.5) for p in want]


BAD = [
    ("short-row", "text/csv", "1200,3.5,AA,4\n800,AA,4\n", 400, "row 2: expected 4 values (Distance, DepDelay, Carrier, Month), got 3"),
    ("not-a-number", "text/csv", "1200,3.5,AA,4\n800,late,AA,4\n", 400, "row 2: feature 'DepDelay' is not a number: 'late'"),
    ("csv-header", "text/csv", "Distance,DepDelay,Carrier,Month\n1,2,AA,3\n", 400, "header row"),
    ("json-short", "application/json", '{"instances": [[1, 2, "AA"]]}', 400, "row 1: expected 4 values"),
    ("json-unknown", "application/json", '[{"Distance": 1, "DepDelay": 2, "Carrier": "AA", "Month": 1, "Dest": "LAX"}]',
     400, "record 1: unknown features ['Dest']"),
    ("json-missing", "application/json", '[{"Distance": 1, "Carrier": "AA", "Month": 1}]', 400,
     "record 1: missing features ['DepDelay']"),
    ("json-malformed", "application/json", '{"instances": [[1, 2', 400, "malformed JSON"),
    ("json-no-instances", "application/json", '{"rows": []}', 400, '"instances"'),
    ("json-empty-list", "application/json", '{"instances": []}', 400, "no rows"),
    ("json-nested", "application/json", '{"instances": [[1, [2], "AA", 3]]}', 400, "row 1: expected a list of values"),
    ("arrow-unknown", "application/vnd.apache.arrow.stream", "arrow:Dest", 400, "columns: unknown features ['Dest']"),
    ("parquet-missing", "application/x-parquet", "parquet:-Month", 400, "columns: missing features ['Month']"),
    ("parquet-garbage", "application/x-parquet", "not parquet at all", 400, "the body is not Parquet"),
    ("arrow-text", "application/vnd.apache.arrow.stream", "abc", 400, "the body is not an Arrow IPC stream"),
    ("empty", "text/csv", "", 400, "empty body"),
    ("blank", "application/json", "  \n", 400, "empty body"),
    ("not-utf8", "text/csv", b"\xff\xfe1,2", 400, "not UTF-8"),
    ("content-type", "text/xml", "<a/>", 415, "unsupported Content-Type 'text/xml'"),
    ("no-content-type", "", "1,2,AA,3", 415, "unsupported Content-Type"),
]


def bad_body(spec):
    if not isinstance(spec, str) or ":" not in spec or not spec.startswith(("arrow:", "parquet:")):
        return spec
    kind, change = spec.split(":")
    raw = rows()[:2]
    table = arrow_table(raw)
    table = table.drop([change[1:]]) if change.startswith("-") else table.append_column(change, pa.array(["x", "y"]))
    if kind == "parquet":
        buf = io.BytesIO()
        pq.write_table(table, buf)
        return buf.getvalue()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def assert_still_serving(server):
    assert requests.get(server.url + "/ping", timeout=5).status_code == 200
    assert post(server, "1200,3.5,AA,4\n", "text/csv").status_code == 200


@pytest.mark.parametrize("name,ctype,body,status,message", BAD, ids=[b[0] for b in BAD])
def test_bad_bodies_are_4xx_naming_the_problem(server, name, ctype, body, status, message):
    headers = {"Content-Type": ctype} if ctype else {}
    resp = requests.post(server.url + "/invocations", data=bad_body(body), headers=headers, timeout=30)
    assert resp.status_code == status, resp.text
    assert message in resp.json()["error"], resp.json()
    assert_still_serving(server)


@pytest.mark.parametrize("method,path,headers,query,status,message", [
    ("POST", "/invocations", {"Accept": "image/png"}, "", 406, "Accept one of text/csv, application/json"),
    ("POST", "/invocations", {}, "?threshold=high", 400, "threshold must be a number between 0 and 1"),
    ("POST", "/invocations", {}, "?threshold=1.5", 400, "threshold must be a number between 0 and 1"),
    ("POST", "/invocations", {}, "?treshold=0.5", 400, "unknown query parameters ['treshold']"),
    ("GET", "/invocations", {}, "", 405, "/invocations takes POST, not GET"),
    ("POST", "/ping", {}, "", 405, "/ping takes GET"),
    ("GET", "/predict", {}, "", 404, "no route '/predict'"),
], ids=["accept", "threshold-text", "threshold-range", "query-typo", "get-invocations", "post-ping", "unknown-path"])
def test_bad_requests_are_4xx(server, method, path, headers, query, status, message):
    resp = requests.request(method, server.url + path + query, data="1200,3.5,AA,4\n", timeout=30,
                            headers={"Content-Type": "text/csv", **headers})
    assert resp.status_code == status and message in resp.json()["error"], resp.text
    if status == 405:
        assert resp.headers["Allow"] in ("GET", "POST")
    assert_still_serving(server)


def test_a_body_over_6_mib_is_413_before_it_is_read(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.putrequest("POST", "/invocations")
    conn.putheader("Content-Type", "text/csv")
    conn.putheader("Content-Length", str(MAX_BODY + 1))
    conn.endheaders()  # no body sent: the answer comes from Content-Length alone
    resp = conn.getresponse()
    assert resp.status == 413 and "over the limit of 6291456" in json.loads(resp.read())["error"]
    conn.close()
    at_limit = "1200,3.5,AA,4" + "\n" * (MAX_BODY - 13)  # exactly the limit (blank lines are skipped)
    assert len(at_limit) == MAX_BODY and probabilities(post(server, at_limit, "text/csv")).shape == (1,)
    assert_still_serving(server)


def test_bad_arguments_exit_2_with_one_line_before_starting(tmp_path, model):
    for args, message in [(["--port", "0"], "--port: must be between 1 and 65535"),
                          (["--workers", "many"], "--workers: not a whole number"),
                          (["--model", str(tmp_path)], "not a model directory"),
                          (["--model", str(model[0]), "--bogus"], "unrecognized arguments: --bogus"),
                          (["train", "--model", str(model[0])], "invalid choice: 'train' (choose from 'serve')")]:
        proc = subprocess.run([sys.executable, "-m", "mljobs.serve", *args], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT / "lib")}, timeout=60)
        assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, \
            proc.stderr


class Client(threading.Thread):
    """Sends CSV requests back to back until stopped; records every outcome."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.server, self.stop, self.results = server, threading.Event(), []

    def run(self):
        session = requests.Session()
        body = csv_body(rows())
        while not self.stop.is_set():
            try:
                r = session.post(self.server.url + "/invocations", data=body, headers={"Content-Type": "text/csv"},
                                 timeout=30)
                self.results.append(r.status_code)
            except requests.RequestException as exc:
                self.results.append(repr(exc))


def live(server, key: str, workers: int = 2, tries: int = 40) -> set:
    """``key`` of the live model in each worker: /models asked until every worker has answered (a request
    lands on either, so a fixed number of answers may all come from one; one still loading answers 503)."""
    seen = {}
    for _ in range(tries):
        answer = requests.get(server.url + "/models", timeout=5)
        if answer.status_code == 200:
            model = answer.json()["models"][0]
            seen[model["worker_pid"]] = model[key]
            if len(seen) == workers:
                break
    return set(seen.values())


def live_shas(server) -> set[str]:
    return live(server, "model_sha256")


def wait_for(cond, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_model_swap_and_sighup_under_load_drop_nothing(tmp_path):
    """Started as SageMaker starts a container: ``serve``, the model from $SM_MODEL_DIR."""
    d = tmp_path / "model"
    old = write_model(d, train(1))
    srv = Server(["serve"], tmp_path, env={"SM_MODEL_DIR": str(d)})
    clients = [Client(srv), Client(srv)]
    try:
        for c in clients:
            c.start()
        time.sleep(0.5)
        # The tune job's replacement: a new directory renamed over the old one.
        new_booster = train(2, rounds=25)
        new = write_model(d, new_booster)
        assert new.model_sha256 != old.model_sha256
        wait_for(lambda: live_shas(srv) == {new.model_sha256})
        np.testing.assert_allclose(probabilities(post(srv, csv_body(rows()), "text/csv")),
                                   expected(new_booster, rows()), atol=1e-6)
        # A torn write (metadata.json describing another model file): logged, the old model keeps serving.
        meta = json.loads((d / "metadata.json").read_text())
        (d / "metadata.json.tmp").write_text(json.dumps({**meta, "model_sha256": "0" * 64}))
        os.replace(d / "metadata.json.tmp", d / "metadata.json")
        wait_for(lambda: srv.log().count("cannot load the model") >= 2)
        assert live_shas(srv) == {new.model_sha256}
        # SIGHUP: gunicorn replaces the workers gracefully; the new ones load what is on disk now.
        good = write_model(d, train(3))
        wait_for(lambda: live_shas(srv) == {good.model_sha256})
        pids = live(srv, "worker_pid")
        srv.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: not pids & live(srv, "worker_pid"))
        wait_for(lambda: srv.log().count("]: loaded model") == 4)  # 2 workers at start, 2 after SIGHUP
        assert live_shas(srv) == {good.model_sha256}
        time.sleep(0.5)
    finally:
        for c in clients:
            c.stop.set()
        for c in clients:
            c.join(timeout=30)
        srv.stop()
    results = [r for c in clients for r in c.results]
    assert len(results) > 20 and set(results) == {200}, [r for r in results if r != 200][:5]
    log = srv.log()
    assert "SIGHUP" in log and log.count("reloaded model") >= 2 and "sha256 differs" in log
    for secret in ("AWS_SECRET", "password"):
        assert secret not in log
