"""The bias job on Spark, with smclarify 0.5 (the library behind SageMaker Clarify's bias
analysis) as the oracle: every count-based metric of a categorical facet with given values,
each value against the rest, a continuous facet with a threshold, multi-valued labels, a
subgroup variable, real flights and a model's predictions, to 1e-9; planted bias; undefined
metrics; bad arguments; analysis.json merged with explain's; re-runs."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from helpers import last_json, run_cli
from smclarify.bias import report as sm

from mljobs.bias.config import BiasConfig
from mljobs.bias.job import run_bias
from mljobs.errors import InputError, MljobsError
from mljobs.explain import clarify as explain_clarify
from mljobs.models.artifact import ModelArtifact, save_artifact

DB = "biast"
TOL = 1e-9
WORST = {"diff": 0.0}  # the largest |ours - smclarify| seen, printed at the end of the module
COUNT_METRICS_PRE = ["CDDL", "CI", "DPL", "JS", "KL", "KS", "LP", "TVD"]
COUNT_METRICS_POST = ["AD", "CDDPL", "DAR", "DCA", "DCR", "DI", "DPPL", "DRR", "GE", "RD", "SD", "TE"]


def quiet(_msg):
    pass


def planted(n: int = 2400) -> pd.DataFrame:
    """Applicants with a planted bias: facet value 'c' has a positive rate of 0.3 against 0.6."""
    rng = np.random.default_rng(7)
    gender = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    region = rng.choice(["n", "s", "e", "w"], n)
    age = rng.uniform(18, 80, n).round(1)
    pos = rng.random(n) < np.where(gender == "c", 0.3, 0.6) + np.where(region == "n", 0.05, 0.0)
    outcome = np.where(pos, rng.choice(["approved", "pending"], n, p=[0.7, 0.3]), "rejected")
    flip = rng.random(n) < np.where(gender == "c", 0.25, 0.1)
    pred = np.where(flip, np.where(pos, "rejected", "approved"), outcome)
    score = pos * 0.5 + rng.uniform(0, 0.6, n)
    pscore = np.where(flip, 1 - score, score)
    return pd.DataFrame({"id": np.arange(n), "gender": gender, "region": region, "age": age, "outcome": outcome,
                         "pred": pred, "score": score, "pscore": pscore})


def flights(bts_frame: pd.DataFrame) -> pd.DataFrame:
    """About 4,000 real flights of 2013 with a label (0/1 ints, as smclarify reads them)."""
    d = bts_frame.iloc[::80].dropna(subset=["ArrDel15", "DepDel15"]).reset_index(drop=True)
    return pd.DataFrame({"Reporting_Airline": d.Reporting_Airline, "Origin": d.Origin, "Month": d.Month.astype("int32"),
                         "DayOfWeek": d.DayOfWeek.astype("int32"), "Distance": d.Distance.astype("float64"),
                         "DepDelay": d.DepDelay.astype("float64"), "ArrDel15": d.ArrDel15.astype("int32"),
                         "DepDel15": d.DepDel15.astype("int32")})


@pytest.fixture(scope="module")
def data(spark, bts_frame):
    spark.sql(f"DROP DATABASE IF EXISTS {DB} CASCADE")
    spark.sql(f"CREATE DATABASE {DB}")
    pl, fl = planted(), flights(bts_frame)
    spark.createDataFrame(pl).write.saveAsTable(f"{DB}.applicants")
    spark.createDataFrame(fl).write.saveAsTable(f"{DB}.flights")
    yield {"applicants": pl, "flights": fl}
    print(f"\nlargest |ours - smclarify|: {WORST['diff']:.3g}")


def oracle(df, facet, facet_values, label, label_values, pred=None, group=None, stage="pre"):
    """smclarify's bias_report as {(value_or_threshold, metric): value or 'error'}."""
    kind = sm.StageType.PRE_TRAINING if stage == "pre" else sm.StageType.POST_TRAINING
    names = COUNT_METRICS_PRE if stage == "pre" else COUNT_METRICS_POST
    out = sm.bias_report(df.copy(), sm.FacetColumn(facet, facet_values), sm.LabelColumn(label, df[label], label_values),
                         kind, sm.LabelColumn(pred, df[pred], label_values) if pred else None, metrics=names,
                         group_variable=df[group] if group else None)
    return {(f["value_or_threshold"], m["name"]): ("error" if "error" in m else m["value"])
            for f in out for m in f["metrics"]}


def ours(summary, stage="pre"):
    want = "pre_training" if stage == "pre" else "post_training"
    return {(m["value_or_threshold"], m["metric"]): ("error" if m["error"] else m["value"])
            for m in summary["metrics"] if m["stage"] == want}


def _num(v):
    return float(v.replace("Infinity", "inf")) if isinstance(v, str) else v


def assert_same(got: dict, want: dict):
    assert set(got) == set(want), (sorted(set(got) ^ set(want)))
    for key, w in want.items():
        g = got[key]
        assert (g == "error") == (w == "error"), (key, g, w)
        if w != "error":
            g, w = _num(g), _num(w)
            if math.isinf(w):
                assert g == w, (key, g, w)
                continue
            WORST["diff"] = max(WORST["diff"], abs(g - w))
            assert abs(g - w) <= TOL, (key, g, w)


def bias(tmp_path, **kw):
    kw.setdefault("output", str(tmp_path / "out"))
    return run_bias(kw.pop("spark"), BiasConfig(**kw), quiet)


def test_metrics_of_tiny_and_degenerate_counts_match_smclarify():
    """No Spark: the metrics of many tiny frames (empty groups, one label value, no positive
    predictions in a group: errors, infinities and Clarify's 0/0 = 0) equal smclarify's."""
    from mljobs.bias.metrics import Counts, compute

    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(60):
        n = int(rng.integers(2, 12))
        df = pd.DataFrame({"f": rng.choice(["x", "y"], n, p=[0.3, 0.7]), "y": rng.choice(["p", "q"], n),
                           "yhat": rng.choice(["p", "q"], n, p=[0.3, 0.7]), "g": rng.choice(["g1", "g2"], n)})
        if not (df.yhat == "p").any():
            continue  # smclarify refuses a report without any positive prediction
        cells = df.assign(n=1).groupby(["f", "y", "yhat", "g"]).n.sum().reset_index()
        counts = Counts((r.f == "x", r.y == "p", r.yhat == "p", r.g, r.n) for r in cells.itertuples())
        for stage, names in (("pre", COUNT_METRICS_PRE), ("post", COUNT_METRICS_POST)):
            want = oracle(df, "f", ["x"], "y", ["p"], "yhat", "g", stage)
            got = {}
            for name in names:
                v, err = compute(name, counts, grouped=True)
                got[("x", name)] = "error" if err else v
            assert_same(got, want)
            checked += 1
    assert checked > 80


def test_given_values_multivalued_label_and_groups_match_smclarify(spark, data, tmp_path):
    s = bias(tmp_path, spark=spark, table=f"{DB}.applicants", label="outcome", label_values=["approved", "pending"],
             facet="gender", facet_values=["c"], group_by="region", predicted_label_col="pred")
    df = data["applicants"]
    for stage in ("pre", "post"):
        assert_same(ours(s, stage), oracle(df, "gender", ["c"], "outcome", ["approved", "pending"], "pred", "region",
                                           stage))
    m = {k[1]: v for k, v in ours(s, "pre").items()} | {k[1]: v for k, v in ours(s, "post").items()}
    assert 0.25 < m["DPL"] < 0.4 and m["DI"] < 0.7 and m["CI"] > 0.5  # the planted bias, its sign and size
    assert s["label_value_or_threshold"] == "approved,pending" and s["rows"] == len(df)
    cell = s["counts"][0]
    assert cell["facet_rows"] == (df.gender == "c").sum() and cell["rest_rows"] == (df.gender != "c").sum()


def test_each_value_against_the_rest_matches_smclarify(spark, data, tmp_path):
    s = bias(tmp_path, spark=spark, table=f"{DB}.applicants", label="outcome", label_values=["approved"],
             facet="gender", predicted_label_col="pred")
    df = data["applicants"]
    for stage in ("pre", "post"):
        got = ours(s, stage)
        assert_same(got, oracle(df, "gender", None, "outcome", ["approved"], "pred", None, stage))
    cddl = next(m for m in s["metrics"] if m["metric"] == "CDDL")
    assert cddl["value"] is None and "--group-by" in cddl["error"]  # as Clarify: an error, not a value


def test_continuous_facet_and_label_thresholds_match_smclarify(spark, data, tmp_path):
    s = bias(tmp_path, spark=spark, table=f"{DB}.applicants", label="score", label_threshold=0.5, facet="age",
             facet_threshold=40.0, predicted_label_col="pscore", group_by="region")
    df = data["applicants"]
    for stage in ("pre", "post"):
        assert_same(ours(s, stage), oracle(df, "age", [40.0], "score", [0.5], "pscore", "region", stage))
    assert {m["value_or_threshold"] for m in s["metrics"]} == {f"(40.0, {df.age.max()}]"}
    assert s["label_value_or_threshold"] == f"(0.5, {df.score.max()}]"


def test_real_flights_each_airline_with_months_match_smclarify(spark, data, tmp_path):
    s = bias(tmp_path, spark=spark, table=f"{DB}.flights", label="ArrDel15", facet="Reporting_Airline",
             group_by="Month", predicted_label_col="DepDel15")
    df = data["flights"]
    for stage in ("pre", "post"):
        assert_same(ours(s, stage), oracle(df, "Reporting_Airline", None, "ArrDel15", [1], "DepDel15", "Month", stage))
    assert len({m["value_or_threshold"] for m in s["metrics"]}) == df.Reporting_Airline.nunique() > 5


def test_model_predictions_through_the_scoring_plumbing_match_smclarify(spark, data, tmp_path):
    df = data["flights"]
    feats = ["Month", "DayOfWeek", "Distance", "DepDelay"]
    x = df[feats].to_numpy(np.float32)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
                        xgb.DMatrix(x, label=df.ArrDel15, feature_names=feats), num_boost_round=8)
    save_artifact(tmp_path / "model", booster, ModelArtifact(study="tinybias", family="xgboost", label="ArrDel15",
                                                             features=feats, params={}))
    s = bias(tmp_path, spark=spark, table=f"{DB}.flights", label="ArrDel15", facet="Origin", facet_values=["JFK", "LGA"],
             model=str(tmp_path / "model"))
    ref = df.assign(yhat=(booster.predict(xgb.DMatrix(x, feature_names=feats)) > 0.5).astype("int32"))
    assert s["stages"] == ["pre", "post"] and "probability > 0.5" in s["predicted_by"]
    for stage in ("pre", "post"):
        assert_same(ours(s, stage), oracle(ref, "Origin", ["JFK", "LGA"], "ArrDel15", [1], "yhat", None, stage))


@pytest.mark.slow
def test_flip_test_matches_smclarify(spark, data, tmp_path):
    """FT (kNN over the feature columns), each gender against the rest, and a sampled group."""
    s = bias(tmp_path, spark=spark, table=f"{DB}.applicants", label="outcome", label_values=["approved"],
             facet="gender", predicted_label_col="pred", methods=["FT", "DI"], flip_test_features=["age", "score"])
    df = data["applicants"][["gender", "outcome", "pred", "age", "score"]]
    want = sm.bias_report(df.copy(), sm.FacetColumn("gender"), sm.LabelColumn("outcome", df.outcome, ["approved"]),
                          sm.StageType.POST_TRAINING, sm.LabelColumn("pred", df.pred, ["approved"]), metrics=["FT", "DI"])
    assert_same(ours(s, "post"), {(f["value_or_threshold"], m["name"]): m["value"] for f in want for m in f["metrics"]})
    assert all(m["value"] != 0 for m in s["metrics"] if m["metric"] == "FT")
    assert {v: t["tied_votes"] for v, t in s["flip_test"].items()} == {"a": 0, "b": 0, "c": 0}  # continuous: no ties
    few = bias(tmp_path, spark=spark, table=f"{DB}.applicants", label="outcome", label_values=["approved"],
               facet="gender", facet_values=["c"], predicted_label_col="pred", methods=["FT"], flip_test_sample=50,
               flip_test_features=["age", "score"])
    assert -1 <= few["metrics"][0]["value"] <= 1 and few["metrics"][0]["error"] is None


def test_flip_test_vote_rule_at_tied_distances():
    """No Spark: the vote from a row's state (its K nearest, and the rows more at the K-th
    distance), by hand: tied neighbours vote in proportion; a row is tied only when the choice
    of them could change the vote."""
    from mljobs.bias.fliptest import _vote

    def vote(dist, lab, extra=(0, 0), k=5):
        v, tied = _vote(np.array([dist], float).T, np.array([lab], np.int8).T, np.array([max(dist)], float),
                        np.array([extra[0]]), np.array([extra[1]]), k)
        return bool(v[0]), bool(tied[0])

    assert vote([1, 2, 3, 4, 5], [1, 1, 1, 0, 0]) == (True, False)  # no tie
    # 2 nearer (both positive), 4 at distance 3 (1 positive), a 5-vote takes 3: 2 + 3/4 > 2.5; tied
    assert vote([1, 2, 3, 3, 3], [1, 1, 0, 0, 1], extra=(1, 0)) == (True, True)
    # 4 nearer (all negative), 100 at the 5th distance (99 positive): any choice votes negative
    assert vote([1, 1, 1, 1, 2], [0, 0, 0, 0, 1], extra=(99, 98)) == (False, False)
    # 5 equal rows, 3 positive, 3 more at that distance, 0 positive: 3 * 5/8 < 2.5 -> negative; tied
    assert vote([2, 2, 2, 2, 2], [1, 1, 1, 0, 0], extra=(3, 0)) == (False, True)
    assert vote([0.5, 1, 2, 2, 2], [0, 1, 1, 1, 1], k=1) == (False, False)  # k = 1: the nearest


@pytest.mark.slow
def test_flip_test_on_tied_features_is_within_the_counted_ties_of_smclarify(spark, tmp_path):
    """Small integer features: many rows of the rest at exactly the k-th distance, where
    scikit-learn's choice is its tree's accident. Every FT is within tied / voted of
    smclarify's, some ties are counted, and where none is, FT equals smclarify's."""
    rng = np.random.default_rng(11)
    n = 900
    df = pd.DataFrame({"grp": rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]), "x1": rng.integers(0, 5, n),
                       "x2": rng.integers(0, 4, n), "y": (rng.random(n) < 0.5).astype(int)})
    df["pred"] = ((df.x1 + df.x2 + rng.integers(0, 3, n)) > 4).astype(int)
    spark.createDataFrame(df).write.mode("overwrite").saveAsTable(f"{DB}.tied")
    s = bias(tmp_path, spark=spark, table=f"{DB}.tied", label="y", label_values=["1"], facet="grp",
             predicted_label_col="pred", methods=["FT"], flip_test_features=["x1", "x2"])
    want = sm.bias_report(df.copy(), sm.FacetColumn("grp"), sm.LabelColumn("y", df.y, [1]), sm.StageType.POST_TRAINING,
                          sm.LabelColumn("pred", df.pred, [1]), metrics=["FT"])
    want = {f["value_or_threshold"]: f["metrics"][0]["value"] for f in want}
    got = {m["value_or_threshold"]: m["value"] for m in s["metrics"]}
    ties = s["flip_test"]
    assert set(got) == set(want) == set(ties)
    assert sum(t["tied_votes"] for t in ties.values()) > 0
    for v, w in want.items():
        assert ties[v]["rows_voted"] == int((df.grp == v).sum())
        assert abs(got[v] - w) <= ties[v]["tied_votes"] / ties[v]["rows_voted"] + 1e-12, (v, got[v], w, ties[v])
        if ties[v]["tied_votes"] == 0:
            assert abs(got[v] - w) <= TOL


def test_undefined_metrics_are_null_with_a_reason(spark, data, tmp_path):
    s = bias(tmp_path, spark=spark, table=f"{DB}.applicants", where="gender = 'c'", label="outcome",
             label_values=["approved"], facet="gender", facet_values=["c"], predicted_label_col="pred")
    by = {m["metric"]: m for m in s["metrics"]}
    assert by["GE"]["error"] is None and by["GE"]["value"] is not None  # over all rows: defined
    for name in ("CI", "DPL", "KL", "DI", "TE", "AD"):
        assert by[name]["value"] is None and by[name]["error"], name
    assert "negated facet set is empty" in by["CI"]["error"]
    rows = spark.table(f"{DB}.bias_metrics").where("metric = 'CI'").collect()
    assert rows[0]["value"] is None and "empty" in rows[0]["error"]


@pytest.mark.parametrize("kw, msg", [
    ({"label_values": ["1"], "label_threshold": 0.5}, "not both"),
    ({"stage": "post"}, "needs a predicted label"),
    ({"methods": "CI,FT"}, "not metrics of the stage"),
    ({"methods": "CDDL"}, "need --group-by"),
    ({"methods": "CI,XX"}, "unknown metrics"),
    ({"methods": "DI"}, "not metrics of the stage"),
    ({"model": "m", "predicted_label_col": "p"}, "not both"),
    ({"predicted_label_values": ["1"]}, "need --predicted-label-col"),
])
def test_bad_arguments_fail_before_spark(kw, msg):
    values = {"table": "a.b", "label": "y", "facet": "f", **kw}
    with pytest.raises(MljobsError, match=msg):
        BiasConfig(**BiasConfig.coerce(values))


@pytest.mark.parametrize("kw, msg", [
    ({"facet": "nope"}, "no such column"),
    ({"facet_values": ["z"]}, "no selected row has --facet gender equal to it"),
    ({"label": "outcome", "label_values": []}, "not numeric"),
    ({"where": "id < 0"}, "selection is empty"),
    ({"facet": "age"}, "distinct values"),
    ({"facet_threshold": 1.0}, "needs a numeric facet"),
])
def test_bad_input_is_one_clear_error(spark, data, tmp_path, kw, msg):
    values = {"table": f"{DB}.applicants", "label": "outcome", "label_values": ["approved"], "facet": "gender", **kw}
    with pytest.raises(InputError, match=msg):
        bias(tmp_path, spark=spark, **values)


def test_analysis_json_merges_with_explain_and_reruns_give_the_same_table(spark, data, tmp_path):
    out = tmp_path / "shared"
    explain_clarify.write_analysis(out / "analysis.json", explain_clarify.analysis_json("tree_shap", {"age": 0.5}, 0.1))
    common = dict(spark=spark, table=f"{DB}.applicants", label="outcome", label_values=["approved"],
                  predicted_label_col="pred", output=str(out))
    bias(tmp_path, facet="gender", facet_values=["c"], **common)
    first = spark.table(f"{DB}.bias_metrics").drop("run_id").orderBy("stage", "metric").collect()
    bias(tmp_path, facet="region", **common)
    s = bias(tmp_path, facet="gender", facet_values=["c"], **common)
    doc = json.loads(Path(s["analysis_json"]).read_text())
    assert Path(s["report_image"]) == out / "bias_gender.png" and (out / "bias_region.png").read_bytes()[:4] == b"\x89PNG"
    assert doc["explanations"]["tree_shap"]["label0"]["global_shap_values"] == {"age": 0.5}
    for key in ("pre_training_bias_metrics", "post_training_bias_metrics"):
        sec = doc[key]
        assert sec["label"] == "outcome" and sec["label_value_or_threshold"] == "approved"
        assert set(sec["facets"]) == {"gender", "region"} and len(sec["facets"]["region"]) == 4
        entry = sec["facets"]["gender"][0]
        assert entry["value_or_threshold"] == "c" and {"name", "description", "value"} <= set(entry["metrics"][0])
    again = spark.table(f"{DB}.bias_metrics").drop("run_id").orderBy("stage", "metric").collect()
    assert again == first and spark.table(f"{DB}.bias_metrics").select("run_id").distinct().count() == 1
    assert not spark.catalog.tableExists(f"{DB}.bias_metrics__mljobs_new")


def test_command_line_rejects_a_post_stage_without_predictions(tmp_path):
    res = run_cli(["./spark-submit.sh", "bias", "--table", "a.b", "--label", "y", "--facet", "f", "--stage", "post",
                   "--summary", str(tmp_path / "s.json")])
    assert res.returncode == 2 and "needs a predicted label" in last_json(res.stdout)["error"]
    assert json.loads((tmp_path / "s.json").read_text())["status"] == "failed"


def test_analysis_json_on_s3_is_merged_too(spark, data, tmp_path, moto_env):
    """--output s3a://...: the explain analysis.json already there is read through Hadoop and kept."""
    import boto3

    bucket = "mljobs-bias"
    s3 = boto3.client("s3", endpoint_url=moto_env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket=bucket)
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    for key, value in {"endpoint": moto_env["AWS_ENDPOINT_URL"], "path.style.access": "true",
                       "connection.ssl.enabled": "false", "endpoint.region": "us-east-1",
                       "aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
                       "access.key": "testing", "secret.key": "testing"}.items():
        hconf.set(f"fs.s3a.bucket.{bucket}.{key}", value)
    s3.put_object(Bucket=bucket, Key="out/analysis.json", Body=json.dumps(
        explain_clarify.analysis_json("kernel_shap", {"age": 0.25}, 0.0)).encode())
    s = bias(tmp_path, spark=spark, table=f"{DB}.applicants", label="outcome", label_values=["approved"],
             facet="gender", facet_values=["c"], output=f"s3a://{bucket}/out", methods=["CI", "DPL"])
    assert s["analysis_json"] == f"s3a://{bucket}/out/analysis.json"
    doc = json.loads(s3.get_object(Bucket=bucket, Key="out/analysis.json")["Body"].read())
    assert set(doc) == {"version", "explanations", "pre_training_bias_metrics"}
    assert [m["name"] for m in doc["pre_training_bias_metrics"]["facets"]["gender"][0]["metrics"]] == ["CI", "DPL"]
    assert s3.head_object(Bucket=bucket, Key="out/bias_gender.png")["ContentLength"] > 0
