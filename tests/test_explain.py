"""The explain job on Spark: exact SHAP against the shap library and xgboost, additivity,
aggregates against numpy, groups, interactions, Kernel SHAP against exact values,
analysis.json, plots, bad input, atomic replacement, and the command line."""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from helpers import run_cli, last_json

from mljobs.errors import BadDataError, InputError, MljobsError
from mljobs.explain.config import ExplainConfig
from mljobs.explain.job import run_explain
from mljobs.ingest.schema import FEATURES, LABEL
from mljobs.models.artifact import ModelArtifact, save_artifact

FEATS = list(FEATURES)
DB = "explt"


def quiet(_msg):
    pass


def airline_rows(bts_frame: pd.DataFrame, every: int = 90) -> pd.DataFrame:
    """About 3,600 real flights spread over the year, typed as the ingested table."""
    d = bts_frame[bts_frame[LABEL].notna()].iloc[::every].reset_index(drop=True)
    out = pd.DataFrame({
        "flight_id": np.arange(1000, 1000 + len(d), dtype=np.int64),
        "Year": d.Year.astype("int32"), "Quarter": d.Quarter.astype("int32"), "Month": d.Month.astype("int32"),
        "DayOfWeek": d.DayOfWeek.astype("int32"),
        "Flight_Number_Reporting_Airline": d.Flight_Number_Reporting_Airline.astype("int32"),
        "DOT_ID_Reporting_Airline": d.DOT_ID_Reporting_Airline.astype("int32"),
        "OriginCityMarketID": d.OriginCityMarketID.astype("int32"),
        "DestCityMarketID": d.DestCityMarketID.astype("int32"),
        "DepTime": pd.to_numeric(d.DepTime).astype("float64"),
        "DepDelay": d.DepDelay, "DepDel15": d.DepDel15, "AirTime": d.AirTime, "Distance": d.Distance,
        LABEL: d[LABEL].astype("int32"), "Reporting_Airline": d.Reporting_Airline, "Origin": d.Origin,
    })
    # A few missing values: xgboost routes them by its default direction, and so must we.
    out.loc[out.index % 97 == 5, "DepDelay"] = np.nan
    out.loc[out.index % 101 == 7, "AirTime"] = np.nan
    return out


def train(frame: pd.DataFrame, feats: list[str], rounds: int = 25, depth: int = 4, **params) -> xgb.Booster:
    dm = xgb.DMatrix(frame[feats].astype("float32"), label=frame[LABEL], feature_names=feats, missing=np.nan)
    p = {"objective": "binary:logistic", "max_depth": depth, "eta": 0.3, "nthread": 2, "seed": 1, **params}
    return xgb.train(p, dm, num_boost_round=rounds)


def write_model(directory: Path, booster, feats, family="xgboost", study="flights_test") -> Path:
    return save_artifact(directory, booster, ModelArtifact(study=study, family=family, label=LABEL, features=feats,
                                                           params={"max_depth": 4}))


def shap_x(frame: pd.DataFrame, feats: list[str]) -> np.ndarray:
    return frame[feats].to_numpy(dtype=np.float64, na_value=np.nan).astype(np.float32)


@pytest.fixture(scope="module")
def flights(spark, bts_frame):
    pdf = airline_rows(bts_frame)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {DB}")
    spark.sql(f"DROP TABLE IF EXISTS {DB}.flights")
    # Columns in another order than the model's features: they are matched by name.
    cols = ["flight_id", LABEL, "Reporting_Airline", "Origin"] + FEATS[::-1]
    spark.createDataFrame(pdf[cols]).write.format("parquet").saveAsTable(f"{DB}.flights")
    return pdf


@pytest.fixture(scope="module")
def model(flights, tmp_path_factory):
    booster = train(flights, FEATS)
    path = write_model(tmp_path_factory.mktemp("models") / "flights_test", booster, FEATS)
    return path, booster


@pytest.fixture(scope="module")
def first_run(spark, flights, model, tmp_path_factory):
    out = tmp_path_factory.mktemp("explain-out")
    cfg = ExplainConfig(model=str(model[0]), table=f"{DB}.flights", id_col="flight_id",
                        group_by=["Month", "Reporting_Airline"], interactions=150, out_db=DB, output=str(out),
                        explain_ids=["1003", "1010"], top_k=2, plot_rows=500)
    summary = run_explain(spark, cfg, quiet)
    local = spark.table(f"{DB}.shap_local").toPandas().sort_values("flight_id").reset_index(drop=True)
    return cfg, summary, local


def test_tree_values_equal_shap_treeexplainer_and_xgboost(flights, model, first_run):
    import shap

    _, booster = model
    cfg, summary, local = first_run
    assert summary["rows_explained"] == len(flights) == len(local)
    x = shap_x(flights.sort_values("flight_id"), FEATS)
    ours = local[[f"shap_{f}" for f in FEATS]].to_numpy()
    explainer = shap.TreeExplainer(booster)
    reference = explainer.shap_values(x)
    assert np.abs(ours - reference).max() <= 1e-5
    assert np.abs(local["base_value"] - explainer.expected_value).max() <= 1e-5
    native = booster.predict(xgb.DMatrix(x, feature_names=FEATS), pred_contribs=True)
    assert np.abs(ours - native[:, :-1]).max() <= 1e-6
    # missing values went to the booster as missing (NaN), not as 0
    assert local["value_DepDelay"].isna().sum() == flights["DepDelay"].isna().sum() > 0
    # additivity: sum of SHAP + base value = margin, and prediction = the model's probability
    margin = booster.predict(xgb.DMatrix(x, feature_names=FEATS), output_margin=True)
    assert np.abs(ours.sum(axis=1) + local["base_value"] - margin).max() <= 1e-4
    assert np.abs(local["margin"] - margin).max() <= 1e-5
    assert np.abs(local["prediction"] - booster.predict(xgb.DMatrix(x, feature_names=FEATS))).max() <= 1e-6
    assert summary["max_additivity_error"] == pytest.approx(local["additivity_error"].max())
    assert 0 <= summary["max_additivity_error"] <= 1e-4
    assert summary["base_value"] == pytest.approx(float(explainer.expected_value), abs=1e-5)
    assert summary["rows_per_s"] > 0 and summary["device"] == "cpu"


def _numpy_aggregates(values: np.ndarray) -> dict:
    return {"rows": len(values), "mean_abs": np.mean(np.abs(values)), "median": np.median(values),
            "mean_sq": np.mean(values ** 2), "mean": np.mean(values)}


def test_aggregates_equal_numpy_globally_and_per_group(spark, first_run):
    cfg, summary, local = first_run
    glob = spark.table(f"{DB}.shap_global").toPandas()
    assert set(glob["group_by"]) == {"(all)", "Month", "Reporting_Airline"}
    checked = 0
    scopes = [("(all)", None, local)]
    scopes += [("Month", str(m), d) for m, d in local.groupby("Month")]
    scopes += [("Reporting_Airline", a, d) for a, d in local.groupby("Reporting_Airline")]
    for group_by, value, rows in scopes:
        sel = glob[(glob["group_by"] == group_by)
                   & (glob["group_value"].isna() if value is None else glob["group_value"] == value)]
        assert len(sel) == len(FEATS), (group_by, value)
        for r in sel.itertuples():
            exp = _numpy_aggregates(rows[f"shap_{r.feature}"].to_numpy())
            assert r.rows == exp["rows"]
            for k in ("mean_abs", "median", "mean_sq", "mean"):
                assert getattr(r, k) == pytest.approx(exp[k], rel=1e-9, abs=1e-12), (group_by, value, r.feature, k)
            checked += 1
        ranked = sel.sort_values("rank")
        assert list(ranked["rank"]) == list(range(1, len(FEATS) + 1))
        assert ranked["mean_abs"].is_monotonic_decreasing
    assert checked == len(FEATS) * (1 + local["Month"].nunique() + local["Reporting_Airline"].nunique())
    overall = glob[glob["group_by"] == "(all)"].sort_values("rank")
    assert summary["global_shap"] == pytest.approx(dict(zip(overall["feature"], overall["mean_abs"])))
    assert summary["top_features"][0] == "DepDelay"  # the departure delay drives arrival delay
    assert summary["groups"] == local["Month"].nunique() + local["Reporting_Airline"].nunique()


def test_median_and_mean_sq_agg_methods_rank_and_report(spark, flights, model, tmp_path):
    cfg = ExplainConfig(model=str(model[0]), table=f"{DB}.flights", where="Month IN (3, 4)", agg_method="median",
                        out_db="explt_med", output=str(tmp_path), plots=False)
    summary = run_explain(spark, cfg, quiet)
    local = spark.table("explt_med.shap_local").toPandas()
    assert len(local) == (flights["Month"].isin([3, 4])).sum() == summary["rows_explained"]
    medians = {f: float(np.median(local[f"shap_{f}"])) for f in FEATS}
    assert summary["global_shap"] == pytest.approx(medians, abs=1e-12)
    assert list(summary["global_shap"]) == sorted(medians, key=lambda f: (-abs(medians[f]), f))
    doc = json.loads((tmp_path / "analysis.json").read_text())
    assert doc["explanations"]["tree_shap"]["label0"]["global_shap_values"] == pytest.approx(medians, abs=1e-12)
    # A second run into the same directory replaces the explanations and keeps what the bias
    # job wrote there (Clarify's merged analysis.json).
    bias = {"label": "ArrDel15", "label_value_or_threshold": "1", "facets": {"Origin": [{"value_or_threshold": "JFK"}]}}
    (tmp_path / "analysis.json").write_text(json.dumps({**doc, "pre_training_bias_metrics": bias}))
    # the approximate median is within the data's rank error
    cfg2 = ExplainConfig(model=str(model[0]), table=f"{DB}.flights", where="Month IN (3, 4)", agg_method="mean_sq",
                         median="approx", out_db="explt_med", output=str(tmp_path), plots=False)
    s2 = run_explain(spark, cfg2, quiet)
    doc2 = json.loads((tmp_path / "analysis.json").read_text())
    assert doc2["pre_training_bias_metrics"] == bias and doc2["mljobs"]["agg_method"] == "mean_sq"
    assert s2["global_shap"] == pytest.approx({f: float(np.mean(local[f"shap_{f}"] ** 2)) for f in FEATS}, rel=1e-9)
    glob = spark.table("explt_med.shap_global").toPandas().set_index("feature")
    for f in FEATS:
        v = np.sort(local[f"shap_{f}"].to_numpy())
        lo, hi = np.searchsorted(v, glob.loc[f, "median"], "left"), np.searchsorted(v, glob.loc[f, "median"], "right")
        assert lo <= len(v) // 2 + 1 and hi >= len(v) // 2 - 1


def test_interactions_symmetric_and_sum_to_contributions(spark, model, first_run):
    _, booster = model
    cfg, summary, local = first_run
    inter = spark.table(f"{DB}.shap_interactions").toPandas()
    ids = inter["flight_id"].unique()
    assert len(ids) == summary["interaction_rows"] == 150
    assert len(inter) == 150 * len(FEATS) ** 2
    cube = (inter.pivot_table(index=["flight_id", "feature_a"], columns="feature_b", values="value")
            .reindex(columns=FEATS))
    sums = inter.groupby(["flight_id", "feature_a"])["value"].sum()
    contrib = local.set_index("flight_id").loc[ids, [f"shap_{f}" for f in FEATS]]
    for fid in ids[:40]:
        m = cube.loc[fid].reindex(FEATS).to_numpy()
        assert np.abs(m - m.T).max() <= 1e-6
        assert np.abs(sums.loc[fid].reindex(FEATS).to_numpy() - contrib.loc[fid].to_numpy()).max() <= 1e-4
    # and equal xgboost's own values for the same rows
    rows = local.set_index("flight_id").loc[ids[:20], [f"value_{f}" for f in FEATS]].to_numpy().astype(np.float32)
    native = booster.predict(xgb.DMatrix(rows, feature_names=FEATS, missing=np.nan), pred_interactions=True)
    for k, fid in enumerate(ids[:20]):
        assert np.abs(cube.loc[fid].reindex(FEATS).to_numpy() - native[k, :-1, :-1]).max() <= 1e-6



def test_rerun_gives_the_same_tables_without_duplicates(spark, first_run, tmp_path):
    """Idempotent: the same inputs give the same rows (the same interaction sample, chosen by
    a seeded hash of the id), each once."""
    cfg, summary, _ = first_run
    before = {t: spark.table(f"{DB}.{t}").toPandas() for t in ("shap_local", "shap_global", "shap_interactions")}
    again = run_explain(spark, dataclasses.replace(cfg, output=str(tmp_path), plots=False), quiet)
    assert not [v for v in spark.catalog.listTables() if v.isTemporary and v.name.startswith("_mljobs_")]
    assert again["tables"] == summary["tables"] and again["interaction_rows"] == summary["interaction_rows"]
    assert again["global_shap"] == pytest.approx(summary["global_shap"], rel=1e-12)
    keys = {"shap_local": ["flight_id"], "shap_global": ["group_by", "group_value", "feature"],
            "shap_interactions": ["flight_id", "feature_a", "feature_b"]}
    for t, key in keys.items():
        after = spark.table(f"{DB}.{t}").toPandas()
        assert not after.duplicated(key).any(), t
        pd.testing.assert_frame_equal(after.sort_values(key).reset_index(drop=True),
                                      before[t].sort_values(key).reset_index(drop=True), check_exact=False,
                                      rtol=1e-12, obj=t)


def test_analysis_json_has_clarifys_layout(first_run):
    cfg, summary, _ = first_run
    doc = json.loads(Path(summary["analysis_json"]).read_text())
    assert Path(summary["analysis_json"]).parent == Path(cfg.output)
    assert doc["version"] == "1.0" and list(doc["explanations"]) == ["tree_shap"]
    label0 = doc["explanations"]["tree_shap"]["label0"]
    assert set(label0) == {"global_shap_values", "expected_value"}
    assert list(label0["global_shap_values"]) == list(summary["global_shap"])
    assert label0["global_shap_values"] == pytest.approx(summary["global_shap"])
    assert label0["expected_value"] == pytest.approx(summary["base_value"])
    months = doc["mljobs"]["groups"]["Month"]
    assert set(months) == {str(m) for m in range(1, 13)} and set(months["1"]) == set(FEATS)


def _png_size(path: str) -> tuple[int, int]:
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def test_plots(first_run):
    _, summary, _ = first_run
    names = {Path(p).name for p in summary["plots"]}
    top2 = summary["top_features"][:2]
    assert names == {"global_importance.png", "beeswarm.png", "interactions.png", "groups_Month.png",
                     "groups_Reporting_Airline.png", "waterfall_1003.png", "waterfall_1010.png"} | {
        f"dependence_{f}.png" for f in top2}
    for p in summary["plots"]:
        w, h = _png_size(p)
        assert w > 300 and h > 200


def test_booster_is_loaded_once_per_worker_not_per_batch(spark, flights, model):
    from mljobs.explain import tree_shap
    from mljobs.explain.job import select_rows

    art_dir, _ = model
    from mljobs.models.artifact import load_artifact

    art = load_artifact(art_dir)
    cfg = ExplainConfig(model=str(art_dir), table=f"{DB}.flights", id_col="flight_id")
    sel, id_col, passthrough = select_rows(spark, cfg, art)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "100")
    try:
        out = tree_shap.contributions(sel.repartition(6), FEATS, passthrough, art.model_bytes(), "binary:logistic",
                                      diagnostics=True).select("_pid", "_loads").toPandas()
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    assert len(out) == len(flights)
    batches = math.ceil(len(flights) / 100)
    workers = out["_pid"].nunique()
    assert workers < batches
    # one load per worker process for this model, whatever the number of batches and tasks
    assert (out.groupby("_pid")["_loads"].nunique() == 1).all(), out.groupby("_pid")["_loads"].unique()


def test_random_forest_artifact_is_exact_too(spark, flights, tmp_path):
    import shap

    rf = train(flights, FEATS, rounds=1, depth=5, num_parallel_tree=20, subsample=0.8, colsample_bynode=0.8, eta=1.0)
    path = write_model(tmp_path / "rf", rf, FEATS, family="random_forest", study="rf")
    cfg = ExplainConfig(model=str(path), table=f"{DB}.flights", id_col="flight_id", where="Month = 6",
                        out_db="explt_rf", output=str(tmp_path / "out"), plots=False)
    summary = run_explain(spark, cfg, quiet)
    local = spark.table("explt_rf.shap_local").toPandas().sort_values("flight_id")
    x = shap_x(flights[flights.Month == 6].sort_values("flight_id"), FEATS)
    ref = shap.TreeExplainer(rf).shap_values(x)
    assert len(local) == len(x) and np.abs(local[[f"shap_{f}" for f in FEATS]].to_numpy() - ref).max() <= 1e-5
    assert summary["max_additivity_error"] <= 1e-4


TINY = ["DepDelay", "Distance", "DepTime", "Month"]


@pytest.fixture(scope="module")
def tiny_model(flights, tmp_path_factory):
    booster = train(flights, TINY, rounds=8, depth=3)
    return write_model(tmp_path_factory.mktemp("tiny") / "tiny", booster, TINY, study="tiny"), booster


def brute_force_shapley(model, x: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Interventional Shapley values by definition: every coalition, background averaged."""
    m = x.shape[1]
    out = np.zeros_like(x, dtype=np.float64)
    for r, row in enumerate(x):
        value = {}
        for k in range(m + 1):
            for s in itertools.combinations(range(m), k):
                z = background.copy()
                z[:, list(s)] = row[list(s)]
                value[s] = float(model(z).mean())
        for i in range(m):
            for s, v in value.items():
                if i not in s:
                    w = math.factorial(len(s)) * math.factorial(m - len(s) - 1) / math.factorial(m)
                    out[r, i] += w * (value[tuple(sorted(s + (i,)))] - v)
    return out


def test_kernel_shap_with_baseline_rows_equals_exact_interventional_shap(spark, flights, tiny_model, tmp_path):
    import shap

    path, booster = tiny_model
    bg = flights[TINY].dropna().iloc[[3, 50, 700, 1500, 2500]].to_numpy(dtype=np.float64)
    common = dict(model=str(path), table=f"{DB}.flights", id_col="flight_id", where="flight_id < 1030",
                  method="kernel", out_db="explt_k", output=str(tmp_path), plots=False, baseline=bg.tolist())
    # 4 features: 14 coalitions, all enumerated, so Kernel SHAP is exact for the background
    summary = run_explain(spark, ExplainConfig(**common, use_logit=False), quiet)
    local = spark.table("explt_k.shap_local").toPandas().sort_values("flight_id")
    x = shap_x(flights[flights.flight_id < 1030].sort_values("flight_id"), TINY).astype(np.float64)

    def proba(z):
        return booster.predict(xgb.DMatrix(z.astype(np.float32), feature_names=TINY))

    exact = brute_force_shapley(proba, x, bg)
    assert len(local) == 30 == summary["rows_explained"]
    assert np.abs(local[[f"shap_{f}" for f in TINY]].to_numpy() - exact).max() <= 1e-6
    assert summary["method"] == "kernel" and summary["max_additivity_error"] <= 1e-4
    assert json.loads((tmp_path / "analysis.json").read_text())["explanations"]["kernel_shap"]["label0"][
        "expected_value"] == pytest.approx(float(proba(bg).mean()), abs=1e-6)
    # use_logit with one baseline row: log-odds values equal interventional TreeSHAP on the margin
    run_explain(spark, ExplainConfig(**{**common, "baseline": bg[:1].tolist()}, use_logit=True), quiet)
    local1 = spark.table("explt_k.shap_local").toPandas().sort_values("flight_id")
    ref1 = shap.TreeExplainer(booster, data=bg[:1].astype(np.float32), feature_perturbation="interventional",
                              model_output="raw")
    assert np.abs(local1[[f"shap_{f}" for f in TINY]].to_numpy() - ref1.shap_values(x.astype(np.float32))).max() <= 1e-5


def test_kernel_shap_with_kmeans_baseline_approximates_exact_values(spark, flights, tiny_model, tmp_path):
    path, booster = tiny_model
    cfg = ExplainConfig(model=str(path), table=f"{DB}.flights", id_col="flight_id", where="flight_id < 1060",
                        method="kernel", num_clusters=8, num_samples=200, use_logit=True, out_db="explt_k2",
                        output=str(tmp_path), plots=False)
    summary = run_explain(spark, cfg, quiet)
    kern = spark.table("explt_k2.shap_local").toPandas().sort_values("flight_id")
    exact = booster.predict(xgb.DMatrix(shap_x(flights[flights.flight_id < 1060].sort_values("flight_id"), TINY),
                                        feature_names=TINY), pred_contribs=True)[:, :-1]
    k = kern[[f"shap_{f}" for f in TINY]].to_numpy()
    # different baselines (k-means centres vs the training cover), so close, not equal
    assert np.corrcoef(k.ravel(), exact.ravel())[0, 1] > 0.9
    assert np.argmax(np.abs(k).mean(axis=0)) == np.argmax(np.abs(exact).mean(axis=0)) == TINY.index("DepDelay")
    assert summary["max_additivity_error"] <= 1e-4


def test_failed_run_leaves_the_previous_tables(spark, flights, model, first_run, tmp_path):
    before = spark.table(f"{DB}.shap_local").count()
    cfg = ExplainConfig(model=str(model[0]), table=f"{DB}.flights", where="Month = 1", out_db=DB,
                        output=str(tmp_path), plots=False, additivity_tol=1e-300)
    with pytest.raises(BadDataError, match="do not add up"):
        run_explain(spark, cfg, quiet)
    assert spark.table(f"{DB}.shap_local").count() == before == len(flights)
    assert spark.table(f"{DB}.shap_interactions").count() == 150 * len(FEATS) ** 2
    names = {t.name for t in spark.catalog.listTables(DB)}
    assert not any("__mljobs" in n for n in names), names


@pytest.mark.parametrize("kw, error, message", [
    (dict(where="Month >"), InputError, "--where 'Month >' is not valid SQL"),
    (dict(where="NoSuchColumn = 1"), InputError, "NoSuchColumn"),
    (dict(where="Month = 13"), InputError, "the selection is empty"),
    (dict(id_col="nope"), InputError, "--id-col: the table has no column nope"),
    (dict(group_by=["Carrier"]), InputError, "--group-by: the table has no column Carrier"),
    (dict(id_col="flight_id", explain_ids=["1001", "99"]), InputError, "no row with flight_id = 99"),
    (dict(interactions=200000), MljobsError, "use --interactions 118343 or less"),
])
def test_bad_input_is_a_clear_error_before_any_work(spark, model, kw, error, message, tmp_path):
    cfg = ExplainConfig(model=str(model[0]), table=f"{DB}.flights", out_db="explt_bad", output=str(tmp_path),
                        **kw)
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_explain(spark, cfg, quiet)
    assert not spark.catalog.tableExists("explt_bad.shap_local")
    assert not spark.catalog.tableExists("explt_bad.shap_local__mljobs_new")


def test_missing_or_mistyped_feature_columns_are_named(spark, flights, model, tmp_path):
    pdf = flights.drop(columns=["AirTime", "Distance"]).assign(Month=flights.Month.astype(str))
    spark.createDataFrame(pdf).write.mode("overwrite").saveAsTable(f"{DB}.flights_broken")
    cfg = ExplainConfig(model=str(model[0]), table=f"{DB}.flights_broken", out_db="explt_bad")
    with pytest.raises(InputError, match=r"lacks the model's feature columns \['AirTime', 'Distance'\]"):
        run_explain(spark, cfg, quiet)
    spark.createDataFrame(flights.assign(Month=flights.Month.astype(str))).write.mode("overwrite") \
        .saveAsTable(f"{DB}.flights_broken")
    with pytest.raises(InputError, match=r"type the model cannot take: Month \(string\)"):
        run_explain(spark, cfg, quiet)


@pytest.mark.parametrize("kw, message", [
    (dict(model="/no/such/model"), "no such directory"),
    (dict(agg_method="max"), "unknown --agg-method 'max'"),
    (dict(table="a.b.c"), "invalid table name"),
    (dict(sample=1.5), "--sample must be within"),
    (dict(method="kernel", interactions=10), "--interactions needs --method tree"),
    (dict(baseline=[[1, 2]]), "--baseline is a Kernel SHAP option"),
])
def test_bad_arguments_fail_in_validation(model, kw, message):
    base = dict(model=str(model[0]), table=f"{DB}.flights")
    with pytest.raises(MljobsError, match=message.replace("(", r"\(")):
        ExplainConfig(**{**base, **kw})


def test_not_a_model_directory(spark, tmp_path):
    cfg = ExplainConfig(model=str(tmp_path), table=f"{DB}.flights")
    with pytest.raises(InputError, match="not a model directory"):
        run_explain(spark, cfg, quiet)



@pytest.mark.slow
def test_cli_end_to_end(bts_frame, tmp_path):
    """spark-submit: ingest real flights, explain them, then a bad argument."""
    raw = tmp_path / "raw"
    raw.mkdir()
    bts_frame.iloc[::150].to_csv(raw / "flights.csv", index=False)
    data = tmp_path / "data"
    ing = run_cli(["./spark-submit.sh", "ingest", "--input", str(raw), "--table", "airline.flights",
                   "--data-dir", str(data)])
    assert ing.returncode == 0, ing.stderr[-3000:]
    frame = airline_rows(bts_frame)
    booster = train(frame, FEATS, rounds=10)
    model_dir = write_model(data / "models" / "cli_study", booster, FEATS, study="cli_study")
    proc = run_cli(["./spark-submit.sh", "explain", "--model", str(model_dir), "--table", "airline.flights",
                    "--group-by", "Reporting_Airline", "--interactions", "50", "--top-k", "1",
                    "--data-dir", str(data), "--summary", str(tmp_path / "s.json")])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = last_json(proc.stdout)
    assert summary == json.loads((tmp_path / "s.json").read_text())
    accepted = last_json(ing.stdout)["rows_accepted"]
    assert summary["status"] == "ok" and summary["rows_explained"] == accepted > 1500
    assert summary["tables"] == ["explain.shap_local", "explain.shap_global", "explain.shap_interactions"]
    assert summary["analysis_json"] == str(data / "explain" / "cli_study" / "analysis.json")
    assert summary["max_additivity_error"] <= 1e-4 and summary["top_features"][0] == "DepDelay"
    assert (data / "explain" / "cli_study" / "beeswarm.png").is_file()
    assert "[explain" in proc.stdout + proc.stderr  # progress lines (spark-submit merges the streams)
    q = run_cli(["./spark-submit.sh", "sql", "--data-dir", str(data),
                 "SELECT count(*) AS n FROM explain.shap_global WHERE group_by = '(all)'"])
    assert q.returncode == 0, q.stderr[-3000:]
    table = [[c.strip() for c in line.strip().strip("|").split("|")]
             for line in q.stdout.splitlines() if line.startswith("|")]
    assert table == [["n"], [str(len(FEATS))]]  # one (all) row per model feature
    assert last_json(q.stdout)["rows_shown"] == 1

    bad = run_cli(["./spark-submit.sh", "explain", "--model", str(model_dir), "--table", "airline.flights",
                   "--agg-method", "max", "--data-dir", str(data)])
    assert bad.returncode == 2 and "invalid choice: 'max'" in last_json(bad.stdout)["error"]
    missing = run_cli(["./spark-submit.sh", "explain", "--model", str(tmp_path / "nope"), "--table",
                       "airline.flights", "--data-dir", str(data)])
    assert missing.returncode == 2 and last_json(missing.stdout)["status"] == "failed"
    assert "no such directory" in last_json(missing.stdout)["error"]
