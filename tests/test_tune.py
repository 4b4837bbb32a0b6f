"""Tuning: search spaces, folds, metrics, both execution modes, the study loop, resume, faults."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import ROOT, run_cli

from mljobs.errors import InputError, MljobsError
from mljobs.tune.config import TuneConfig
from mljobs.tune.space import parse_space

FEATURES = ["Year", "Quarter", "Month", "DayOfWeek", "Flight_Number_Reporting_Airline", "DOT_ID_Reporting_Airline",
            "OriginCityMarketID", "DestCityMarketID", "DepTime", "DepDelay", "DepDel15", "AirTime", "Distance"]


def _flights_pdf(bts_frame, n: int, seed: int = 0):
    pdf = bts_frame[FEATURES + ["ArrDel15", "Reporting_Airline"]].copy()
    pdf["DepTime"] = pdf["DepTime"].astype("float64")
    pdf = pdf.dropna(subset=["ArrDel15"]).sample(n=n, random_state=seed).reset_index(drop=True)
    pdf["ArrDel15"] = pdf["ArrDel15"].astype("int32")
    return pdf


@pytest.fixture(scope="module")
def flights_table(spark, bts_frame):
    """4,000 real 2013 flights as a Hive table tune_t.flights (13 features, label, carrier as text)."""
    spark.sql("CREATE DATABASE IF NOT EXISTS tune_t")
    spark.createDataFrame(_flights_pdf(bts_frame, 4000)).write.mode("overwrite").saveAsTable("tune_t.flights")
    return "tune_t.flights"


def _cfg(**kw) -> TuneConfig:
    base = dict(table="tune_t.flights", study="s", features=FEATURES, max_trials=2, max_parallel=2)
    base.update(kw)
    return TuneConfig(**base)


# ---------------------------------------------------------------- search space and config

def test_default_spaces_are_the_reference_ranges():
    xgb = {p.name: (p.kind, p.low, p.high) for p in parse_space("xgboost", None).params}
    assert xgb == {"max_depth": ("int", 5, 15), "n_estimators": ("int", 100, 500), "colsample_bytree": ("float", 0.1, 1.0)}
    rf = {p.name: (p.kind, p.low, p.high) for p in parse_space("random_forest", None).params}
    assert rf["max_features"] == ("float", 0.1, 1.0) and rf["max_depth"] == ("int", 5, 15)


def test_space_kinds_and_grid():
    space = parse_space("xgboost", {
        "max_depth": {"type": "int", "low": 3, "high": 9, "step": 3},
        "learning_rate": {"type": "float", "low": 0.01, "high": 1.0, "log": True},
        "grow_policy": {"type": "categorical", "values": ["depthwise", "lossguide"]},
        "tree_method": "hist",
    })
    grid = space.grid()
    assert grid["max_depth"] == [3, 6, 9]
    assert grid["learning_rate"] == pytest.approx([0.01, 0.1, 1.0])
    assert grid["grow_policy"] == ["depthwise", "lossguide"]
    assert "tree_method" not in grid and space.fixed() == {"tree_method": "hist"}
    assert space.grid_size() == 18
    assert [p.sql_type for p in space.tuned] == ["bigint", "double", "string"]


@pytest.mark.parametrize("spec, message", [
    ({"max_depth": {"type": "int", "low": 9, "high": 3}}, "low .* > high"),
    ({"max_depth": {"type": "int", "low": -2, "high": 3}}, "must be > 0"),
    ({"learning_rate": {"type": "float", "low": 0, "high": 1, "log": True}}, "log-scale range needs low > 0"),
    ({"colsample_bytree": {"type": "float", "low": 0.5, "high": 1.5}}, "a fraction in"),
    ({"max_depth": {"type": "float", "low": 2, "high": 4}}, "must be of type int"),
    ({"max_depth": {"type": "range", "low": 2, "high": 4}}, "type must be int, float or categorical"),
    ({"max_depth": {"type": "int", "low": 2}}, "missing 'high'"),
    ({"max_depth": {"type": "int", "low": 2, "high": 4, "lo": 1}}, "unknown keys"),
    ({"grow_policy": {"type": "categorical", "values": []}}, "non-empty list"),
    ({"max_depth": 6}, "nothing to tune"),
])
def test_space_rejects_impossible_ranges(spec, message):
    with pytest.raises(MljobsError, match=message):
        parse_space("xgboost", spec)


def _load(tmp_path, yaml_values=None, **flags):
    from mljobs.config import load_config

    config = None
    if yaml_values is not None:
        config = tmp_path / "tune.yaml"
        config.write_text(yaml.safe_dump(yaml_values))
    return load_config(TuneConfig, {"table": "a.b", "study": "x", **flags}, "tune", config)


def test_config_merges_yaml_and_flags_and_validates(tmp_path):
    cfg = _load(tmp_path, max_trials=7, strategy="bayesian", features="A,B", num_workers=None, time_budget=None)
    assert (cfg.max_trials, cfg.max_parallel, cfg.cv_folds, cfg.strategy, cfg.metric) == (7, 2, 3, "bayesian", "accuracy")
    assert cfg.features == ["A", "B"] and cfg.direction == "maximize"
    assert cfg.max_runtime_per_trial == 3600.0 and cfg.space.family == "xgboost"
    assert _load(tmp_path, {"metric": "logloss"}).direction == "minimize"
    assert (_load(tmp_path, {"num_workers": "auto", "max_runtime_per_trial": "none", "time_budget": 60}).num_workers,
            _load(tmp_path, {"max_runtime_per_trial": "none"}).max_runtime_per_trial) == (None, None)
    for bad, message in [({"strategy": "annealing"}, "unknown strategy"), ({"cv_folds": 1}, "at least 2"),
                         ({"max_parallel": 0}, "positive integer"), ({"metric": "r2"}, "unknown metric"),
                         ({"family": "lightgbm"}, "unknown family"), ({"max_runtime_per_trial": -5}, "positive number"),
                         ({"colour": 1}, "unknown keys"), ({"space": 1}, "unknown keys"),
                         ({"family": "random_forest", "early_stopping_rounds": 5}, "one round")]:
        with pytest.raises(MljobsError, match=message):
            _load(tmp_path, bad)
    with pytest.raises(MljobsError, match="--study"):
        _load(tmp_path, study="../etc")
    with pytest.raises(MljobsError, match="--model-dir"):
        _load(tmp_path, model_dir="ftp://host/models")


# ---------------------------------------------------------------- metrics

def test_metrics_equal_sklearn_with_ties():
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    from mljobs.tune.metrics import compute_metric, metric_from_counts, score_counts

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 5000)
    p = np.round(np.clip(y * 0.3 + rng.random(5000) * 0.7, 0.001, 0.999), 2)  # rounded: many ties
    assert compute_metric("accuracy", p, y) == pytest.approx(accuracy_score(y, p > 0.5), abs=1e-12)
    assert compute_metric("f1", p, y) == pytest.approx(f1_score(y, p > 0.5), abs=1e-12)
    assert compute_metric("logloss", p, y) == pytest.approx(log_loss(y, p), abs=1e-12)
    assert compute_metric("auc", p, y) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    s, pos, neg = score_counts(p, y)
    order = np.random.default_rng(1).permutation(len(s))  # counts in any order (as Spark returns them)
    assert metric_from_counts("auc", s[order], pos[order], neg[order]) == pytest.approx(roc_auc_score(y, p), abs=1e-12)


# ---------------------------------------------------------------- folds

def test_folds_are_stratified_deterministic_and_independent_of_row_order(spark, flights_table):
    from pyspark.sql import functions as F

    from mljobs.tune.data import load_training_data

    a = load_training_data(spark, flights_table, None, FEATURES, 3, seed=11)
    counts = {(r["ArrDel15"], r["_fold"]): r["count"] for r in a.df.groupBy("ArrDel15", "_fold").count().collect()}
    for cls in (0, 1):
        sizes = [counts[(cls, f)] for f in range(3)]
        assert max(sizes) - min(sizes) <= 1, sizes
    assert sum(counts.values()) == a.rows == 4000
    # same table re-read through a different partitioning and row order: same folds
    spark.table(flights_table).repartition(7).orderBy(F.rand(5)).write.mode("overwrite").saveAsTable("tune_t.shuffled")
    b = load_training_data(spark, "tune_t.shuffled", None, FEATURES, 3, seed=11)
    key = FEATURES + ["ArrDel15", "_fold"]
    assert sorted(map(tuple, a.df.select(*key).collect())) == sorted(map(tuple, b.df.select(*key).collect()))
    c = load_training_data(spark, flights_table, None, FEATURES, 3, seed=12)
    assert [r["_fold"] for r in a.df.orderBy(*FEATURES).select("_fold").collect()] != \
           [r["_fold"] for r in c.df.orderBy(*FEATURES).select("_fold").collect()]  # another seed, other folds


def test_training_data_checks(spark, flights_table):
    from mljobs.tune.data import load_training_data

    with pytest.raises(InputError, match="does not exist"):
        load_training_data(spark, "tune_t.nope", None, None, 3, 1)
    with pytest.raises(InputError, match=r"feature columns \['Altitude'\]"):
        load_training_data(spark, flights_table, None, ["Altitude"], 3, 1)
    with pytest.raises(InputError, match="label column 'Late'"):
        load_training_data(spark, flights_table, "Late", None, 3, 1)
    with pytest.raises(InputError, match="no rows"):
        load_training_data(spark, flights_table, None, FEATURES, 3, 1, where="Month = 13")
    with pytest.raises(MljobsError, match="--where"):
        load_training_data(spark, flights_table, None, FEATURES, 3, 1, where="Mnth = 1")
    spark.sql("CREATE OR REPLACE TEMP VIEW three AS SELECT *, CAST(Month % 3 AS INT) AS cls FROM tune_t.flights")
    spark.table("three").write.mode("overwrite").saveAsTable("tune_t.three")
    with pytest.raises(InputError, match="must be binary 0/1; it has 3 distinct values"):
        load_training_data(spark, "tune_t.three", "cls", FEATURES, 3, 1)
    # BYOD default features: every numeric and string column but the label; strings indexed
    d = load_training_data(spark, flights_table, "ArrDel15", None, 3, 1)
    assert d.features == FEATURES + ["Reporting_Airline"]
    assert d.categorical_maps["Reporting_Airline"] == sorted(d.categorical_maps["Reporting_Airline"])
    assert len(d.categorical_maps["Reporting_Airline"]) >= 10


# ---------------------------------------------------------------- one configuration, both modes

@pytest.fixture(scope="module")
def training(spark, flights_table):
    from mljobs.tune.data import collect_arrays, load_training_data

    data = load_training_data(spark, flights_table, None, FEATURES, 3, seed=42)
    return data, collect_arrays(data)


def test_cv_score_equals_xgboost_trained_on_the_same_folds(spark, training):
    import xgboost as xgb
    from sklearn.metrics import accuracy_score

    from mljobs.tune.parallel import ParallelTrials

    data, arrays = training
    hp = {"max_depth": 5, "n_estimators": 30, "colsample_bytree": 0.7}
    ours = ParallelTrials(spark, arrays, "xgboost", 42, "accuracy", nthread=1)
    X, y, folds = arrays["X"], arrays["y"], arrays["fold"]
    for f in range(3):
        tr, va = folds != f, folds == f
        clf = xgb.XGBClassifier(n_estimators=30, max_depth=5, colsample_bytree=0.7, tree_method="hist",
                                random_state=42, n_jobs=1)
        clf.fit(X[tr], y[tr])
        expected = accuracy_score(y[va], clf.predict(X[va]))
        got = ours.evaluate_fold(hp, f, None)
        assert got["status"] == "ok" and got["value"] == pytest.approx(expected, abs=1e-9), (f, got, expected)
    ours.close()


@pytest.mark.slow
def test_parallel_and_distributed_modes_agree(spark, training):
    from mljobs.tune.distributed import DistributedTrials
    from mljobs.tune.parallel import ParallelTrials

    data, arrays = training
    df = data.df.cache()
    for family, metric, hp in [("xgboost", "auc", {"max_depth": 6, "n_estimators": 25, "colsample_bytree": 0.8}),
                               # subsample 1: no row sampling, whose draw depends on where rows sit
                               ("random_forest", "accuracy", {"max_depth": 6, "n_estimators": 15, "max_features": 0.5,
                                                              "subsample": 1.0})]:
        par = ParallelTrials(spark, arrays, family, 42, metric, nthread=1)
        dist = DistributedTrials(spark, df, data.features, data.label, family, 42, metric, num_workers=2)
        for f in (0, 2):
            a, b = par.evaluate_fold(hp, f, None), dist.evaluate_fold(hp, f, None)
            assert a["status"] == b["status"] == "ok", (a, b)
            assert a["value"] == pytest.approx(b["value"], abs=1e-6), (family, f, a, b)
    df.unpersist()


def test_trial_time_limit_and_failure_are_reported_not_raised(spark, training):
    from mljobs.tune.parallel import ParallelTrials

    _, arrays = training
    par = ParallelTrials(spark, arrays, "xgboost", 42, "accuracy", nthread=1)
    # A limit of 1 ms has passed by the first round's end (building the matrices alone takes longer),
    # however fast the machine: with 1 s, early stopping could end the fit "ok" before the limit.
    slow = par.evaluate_fold({"max_depth": 12, "n_estimators": 5000, "colsample_bytree": 1.0}, 0, time_left_s=0.001)
    # The state says it was stopped; the bound only rules out running all 5000 rounds (generous under load).
    assert slow["status"] == "timeout" and "time limit" in slow["error"] and slow["seconds"] < 300
    bad = par.evaluate_fold({"max_depth": 5, "n_estimators": 5, "grow_policy": "sideways"}, 0, None)
    assert bad["status"] == "failed" and "sideways" in bad["error"]


# ---------------------------------------------------------------- the study loop (in process)

def _run(spark, tmp_path, **kw):
    from mljobs.summary import Progress
    from mljobs.tune.job import run_tune

    kw.setdefault("storage", str(tmp_path / "studies.db"))
    kw.setdefault("model_dir", str(tmp_path / "model"))
    kw.setdefault("plots_dir", str(tmp_path / "plots"))
    kw.setdefault("search_space", {"xgboost": {"max_depth": {"type": "int", "low": 2, "high": 6},
                                               "n_estimators": {"type": "int", "low": 10, "high": 40},
                                               "colsample_bytree": {"type": "float", "low": 0.3, "high": 1.0}}})
    return run_tune(spark, _cfg(**kw), Progress("tune-test"))


@pytest.mark.slow
def test_study_writes_trials_table_model_and_plots_then_resumes(spark, flights_table, tmp_path):
    from mljobs.models.artifact import load_artifact

    s = _run(spark, tmp_path, study="s1", max_trials=4, mode="parallel", metric="auc")
    assert (s["trials_complete"], s["trials_new"], s["trials_failed"]) == (4, 4, 0)
    rows = spark.sql("SELECT * FROM tune_t.tuning_trials WHERE study = 's1' ORDER BY trial_number").collect()
    assert [r["trial_number"] for r in rows] == [0, 1, 2, 3]
    for r in rows:
        assert r["state"] == "COMPLETE" and r["mode"] == "parallel" and r["family"] == "xgboost"
        assert len(r["fold_values"]) == 3 and r["value"] == pytest.approx(np.mean(r["fold_values"]))
        assert r["value_std"] == pytest.approx(np.std(r["fold_values"], ddof=1))
        params = json.loads(r["params_json"])
        assert (r["p_max_depth"], r["p_n_estimators"]) == (params["max_depth"], params["n_estimators"])
        assert 2 <= r["p_max_depth"] <= 6 and r["rows"] == 4000 and r["seconds"] > 0
        assert r["started_at"] <= r["finished_at"]
    best = max(rows, key=lambda r: r["value"])
    assert s["best_value"] == pytest.approx(best["value"]) and s["best_params"] == json.loads(best["params_json"])

    art = load_artifact(s["model_dir"])
    assert art.features == FEATURES and art.label == "ArrDel15" and art.params == s["best_params"]
    assert art.rows == 4000 and art.table == "tune_t.flights" and art.cv_value == pytest.approx(s["best_value"])
    assert set(art.versions) >= {"xgboost", "pyspark", "mljobs"}
    booster = art.booster()
    assert booster.num_boosted_rounds() == s["best_params"]["n_estimators"]
    names = {Path(p).name for p in s["plots"]}
    assert {"optimization_history.png", "param_importances.png", "metric_vs_max_depth.png"} <= names
    assert all(Path(p).stat().st_size > 5000 for p in s["plots"])

    # same study again: nothing to do; a larger max_trials runs only the difference
    again = _run(spark, tmp_path, study="s1", max_trials=4, mode="parallel", metric="auc")
    assert again["trials_new"] == 0 and again["trials_complete"] == 4
    more = _run(spark, tmp_path, study="s1", max_trials=6, mode="parallel", metric="auc")
    assert more["trials_new"] == 2 and more["trials_complete"] == 6
    assert spark.sql("SELECT COUNT(*) c, COUNT(DISTINCT params_json) d FROM tune_t.tuning_trials WHERE study = 's1'").first().asDict() == {"c": 6, "d": 6}
    with pytest.raises(MljobsError, match="exists with other settings"):
        _run(spark, tmp_path, study="s1", max_trials=6, mode="parallel", metric="accuracy")


@pytest.mark.slow
def test_failed_and_timed_out_trials_are_recorded_and_the_study_goes_on(spark, flights_table, tmp_path):
    space = {"xgboost": {"max_depth": 10,
                         "n_estimators": {"type": "categorical", "values": [20, 400000]},
                         "grow_policy": {"type": "categorical", "values": ["depthwise", "sideways"]}}}
    s = _run(spark, tmp_path, study="faults", max_trials=10, mode="parallel", strategy="grid", search_space=space,
             max_runtime_per_trial=10.0)
    rows = spark.sql("SELECT * FROM tune_t.tuning_trials WHERE study = 'faults'").collect()
    by_params = {(json.loads(r["params_json"])["n_estimators"], json.loads(r["params_json"])["grow_policy"]): r for r in rows}
    assert len(rows) == 4 and len(by_params) == 4  # the grid has 4 points: max_trials is capped to it
    assert by_params[(20, "depthwise")]["state"] == "COMPLETE"
    timeout = by_params[(400000, "depthwise")]
    # Stopped (state, error), not run to its 40,000 rounds; the bound is generous for a loaded machine.
    assert timeout["state"] == "TIMEOUT" and "max_runtime_per_trial" in timeout["error"] and timeout["seconds"] < 300
    for n in (20, 400000):
        failed = by_params[(n, "sideways")]
        assert failed["state"] == "FAILED" and "sideways" in failed["error"]
    assert (s["trials_failed"], s["trials_timeout"], s["trials_complete"], s["max_trials"]) == (2, 1, 1, 4)
    assert s["model_dir"] is not None


@pytest.mark.slow
def test_bayesian_search_with_pruning_and_random_forest(spark, flights_table, tmp_path):
    space = {"random_forest": {"max_depth": {"type": "int", "low": 2, "high": 8},
                               "n_estimators": {"type": "int", "low": 5, "high": 30},
                               "max_features": {"type": "float", "low": 0.2, "high": 1.0}}}
    s = _run(spark, tmp_path, study="rf", family="random_forest", strategy="bayesian", pruner="median",
             max_trials=8, mode="parallel", search_space=space)
    assert s["trials_complete"] + s["trials_pruned"] == 8 and s["trials_failed"] == 0
    from mljobs.models.artifact import load_artifact

    art = load_artifact(s["model_dir"])
    assert art.family == "random_forest"
    cfg = json.loads(art.booster().save_config())
    assert int(cfg["learner"]["gradient_booster"]["gbtree_model_param"]["num_parallel_tree"]) == s["best_params"]["n_estimators"]


# ---------------------------------------------------------------- the CLI: bad arguments, kill and resume

def test_cli_rejects_bad_arguments_before_spark(tmp_path):
    data_dir = tmp_path / "data"  # build_session creates it: absent afterwards means no Spark started
    common = ["--table", "a.b", "--study", "x", "--data-dir", str(data_dir)]
    r = run_cli(["./spark-submit.sh", "tune", *common, "--strategy", "annealing"])
    assert r.returncode == 2 and "invalid choice" in r.stderr + r.stdout
    cfg = tmp_path / "t.yaml"
    cfg.write_text("search_space:\n  xgboost:\n    max_depth: {type: int, low: 9, high: 3}\n")
    r = run_cli(["./spark-submit.sh", "tune", *common, "--config", str(cfg)])
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 2 and summary["status"] == "failed" and "low (9) > high (3)" in summary["error"]
    assert not data_dir.exists()


def _count_complete(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as con:
        try:
            return con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


@pytest.mark.slow
def test_killed_run_resumes_without_rerunning_completed_trials(tmp_path, bts_frame):
    data_dir = tmp_path / "data"
    csv = tmp_path / "in" / "flights.csv"
    csv.parent.mkdir()
    _flights_pdf(bts_frame, 3000, seed=4).drop(columns=["Reporting_Airline"]).to_csv(csv, index=False)
    r = run_cli(["./spark-submit.sh", "ingest", "--input", str(csv), "--table", "k.flights", "--mode", "byod",
                 "--label", "ArrDel15", "--partition-by", "", "--data-dir", str(data_dir)])
    assert r.returncode == 0, r.stderr[-2000:]
    space = tmp_path / "tune.yaml"
    space.write_text(yaml.safe_dump({"search_space": {"xgboost": {
        "max_depth": {"type": "int", "low": 3, "high": 8}, "n_estimators": {"type": "int", "low": 150, "high": 300},
        "colsample_bytree": {"type": "float", "low": 0.5, "high": 1.0}}}}))
    cmd = ["./spark-submit.sh", "tune", "--table", "k.flights", "--study", "killme", "--max-trials", "6",
           "--max-parallel", "1", "--threads-per-trial", "1", "--config", str(space), "--data-dir", str(data_dir)]
    db = data_dir / "optuna" / "studies.db"
    env = {**os.environ, "PYSPARK_PYTHON": str(ROOT / ".venv" / "bin" / "python")}
    env.pop("MLJOBS_DATA_DIR", None)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while _count_complete(db) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # no goodbye: the running trial stays RUNNING in storage
    proc.wait()
    kept = _count_complete(db)
    assert 2 <= kept < 6, proc.stdout.read()[-3000:]
    r = run_cli(cmd)
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 0, r.stdout[-3000:]
    assert summary["trials_complete"] == 6 and summary["trials_before"] >= kept
    assert summary["trials_new"] == 6 - kept  # the completed ones were not run again
    with sqlite3.connect(db) as con:
        states = dict(con.execute("SELECT state, COUNT(*) FROM trials GROUP BY state").fetchall())
    assert states.get("COMPLETE") == 6 and states.get("RUNNING") is None
    assert Path(summary["model_dir"], "metadata.json").exists()

    # Distributed mode from spark-submit: Spark 3.5.5 leaves a barrier timer thread that kept
    # the JVM alive forever after the summary (SPARK-49479); the job must end on its own.
    r = run_cli(["./spark-submit.sh", "tune", "--table", "k.flights", "--study", "dist-cli", "--mode", "distributed",
                 "--max-parallel", "1", "--max-trials", "1", "--cv-folds", "2", "--config", str(space),
                 "--data-dir", str(data_dir)], timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1])["mode"] == "distributed"


@pytest.mark.slow
def test_distributed_mode_end_to_end_and_barrier_slot_check(spark, flights_table, tmp_path):
    with pytest.raises(MljobsError, match=r"needs num_workers × max_parallel = 2 × 2 = 4 task slots"):
        _run(spark, tmp_path, study="d0", max_trials=2, mode="distributed", num_workers=2, max_parallel=2)
    s = _run(spark, tmp_path, study="d1", max_trials=2, mode="distributed", max_parallel=1, metric="logloss")
    assert (s["mode"], s["num_workers"], s["trials_complete"], s["direction"]) == ("distributed", 2, 2, "minimize")
    modes = {r["mode"] for r in spark.sql("SELECT mode FROM tune_t.tuning_trials WHERE study = 'd1'").collect()}
    assert modes == {"distributed"}
    from mljobs.models.artifact import load_artifact

    assert load_artifact(s["model_dir"]).mode == "distributed"
