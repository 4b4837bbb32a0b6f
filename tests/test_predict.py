"""The predict job on Spark: a model made by the tune job scores a partitioned Hive table of real
flights; probabilities against xgboost's own predict on independently encoded rows, metrics
against scikit-learn, the training rows against the tune metadata, re-runs, failures that
leave the previous table, and bad input."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from chispa import assert_df_equality
from pyspark.sql import functions as F
from helpers import last_json, run_cli
from sklearn import metrics as skm

from mljobs.errors import InputError, MljobsError
from mljobs.ingest.schema import LABEL
from mljobs.models.artifact import load_artifact
from mljobs.predict.config import PredictConfig
from mljobs.predict.job import run_predict
from mljobs.tune.config import TuneConfig
from mljobs.tune.job import run_tune

DB = "predt"
FEATS = ["Month", "DayOfWeek", "DepTime", "Distance", "Origin", "Reporting_Airline"]
SPACE = {"xgboost": {"max_depth": {"type": "int", "low": 3, "high": 5},
                     "n_estimators": {"type": "int", "low": 20, "high": 40},
                     "colsample_bytree": {"type": "float", "low": 0.6, "high": 1.0}}}
LINEAGE = ["scored_at", "run_id"]


def quiet(_msg):
    pass


def flights_rows(bts_frame: pd.DataFrame) -> pd.DataFrame:
    """About 4,000 real flights of the year's first half, with a few missing values."""
    d = bts_frame[bts_frame["Month"] <= 6].iloc[::40].reset_index(drop=True)
    out = pd.DataFrame({
        "flight_id": np.arange(len(d), dtype=np.int64), "Month": d.Month.astype("int32"),
        "DayOfWeek": d.DayOfWeek.astype("int32"), "DepTime": pd.to_numeric(d.DepTime).astype("float64"),
        "Distance": d.Distance.astype("float64"), "Origin": d.Origin, "Reporting_Airline": d.Reporting_Airline,
        LABEL: d[LABEL].astype("float64"),  # NaN here, NULL in the table (cancelled flights)
    })
    out.loc[out.index % 53 == 3, "DepTime"] = np.nan
    out.loc[out.index % 61 == 5, "Origin"] = None
    return out


@pytest.fixture(scope="module")
def table(spark, bts_frame):
    """predt.flights partitioned by Month: the tune job trains on Jan-Mar."""
    pdf = flights_rows(bts_frame)
    spark.sql(f"DROP DATABASE IF EXISTS {DB} CASCADE")
    spark.sql(f"CREATE DATABASE {DB}")
    df = spark.createDataFrame(pdf).withColumn(LABEL, F.when(~F.isnan(LABEL), F.col(LABEL)).cast("int"))
    df.write.partitionBy("Month").format("parquet").saveAsTable(f"{DB}.flights")
    return pdf


@pytest.fixture(scope="module")
def model(spark, table, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("predict-model") / "m"
    cfg = TuneConfig(table=f"{DB}.flights", study="predict-test", features=FEATS, label=LABEL, where="Month <= 3",
                     max_trials=2, cv_folds=2, search_space=SPACE, model_dir=str(model_dir))
    run_tune(spark, cfg, quiet)
    return load_artifact(model_dir)


def encoded(pdf: pd.DataFrame, art) -> np.ndarray:
    """The features as the model takes them, encoded here with pandas (not with our code)."""
    cols = []
    for f in art.features:
        if f in art.categorical_maps:
            codes = {v: i for i, v in enumerate(art.categorical_maps[f])}
            cols.append(pdf[f].map(codes).astype("float64"))
        else:
            cols.append(pdf[f].astype("float64"))
    return np.column_stack(cols).astype(np.float32)


def predict(spark, model, **kw) -> dict:
    return run_predict(spark, PredictConfig(model=model.location, table=f"{DB}.flights", **kw), quiet)


def test_scores_equal_xgboost_and_metrics_equal_sklearn(spark, table, model):
    s = predict(spark, model, id_col="flight_id", keep=["Origin"], where="Month >= 4")
    out = spark.table(s["out_table"]).toPandas().sort_values("flight_id").reset_index(drop=True)
    src = table[table.Month >= 4].sort_values("flight_id").reset_index(drop=True)
    assert s["out_table"] == f"{DB}.predictions" and s["rows_scored"] == len(src) == len(out)
    assert s["partitioned_by"] == ["Month"]
    assert [c for c in out.columns] == ["flight_id", "Origin", LABEL, "probability", "prediction", "margin",
                                        "model_study", "model_sha256", "scored_at", "run_id", "Month"]
    booster = model.booster()
    expected = booster.predict(xgb.DMatrix(encoded(src, model), feature_names=model.features, missing=np.nan))
    np.testing.assert_allclose(out.probability, expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(out.prediction, (out.probability > 0.5).astype(int))
    assert (out.model_sha256 == model.model_sha256).all() and (out.run_id == s["run_id"]).all()

    labelled = src[LABEL].notna().to_numpy()
    m, y, p = s["metrics"], src[LABEL][labelled].astype(int), out.probability[labelled]
    assert m["rows"] == labelled.sum() and s["rows_null_label"] == (~labelled).sum() > 0
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, p > 0.5), abs=1e-12)
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-9)
    assert m["logloss"] == pytest.approx(skm.log_loss(y, p), abs=1e-9)
    assert m["precision"] == pytest.approx(skm.precision_score(y, p > 0.5), abs=1e-12)
    assert m["recall"] == pytest.approx(skm.recall_score(y, p > 0.5), abs=1e-12)
    assert m["f1"] == pytest.approx(skm.f1_score(y, p > 0.5), abs=1e-12)
    tn, fp, fn, tp = skm.confusion_matrix(y, p > 0.5).ravel()
    assert m["confusion"] == {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


def test_training_rows_reproduce_the_refit_metrics_tune_recorded(spark, table, model):
    s = predict(spark, model, where="Month <= 3", threshold=0.5)
    recorded = model.train_metrics
    assert recorded["rows"] == s["metrics"]["rows"] == int(((table.Month <= 3) & table[LABEL].notna()).sum())
    for k in ("accuracy", "auc", "logloss", "f1"):
        assert s["metrics"][k] == pytest.approx(recorded[k], abs=1e-9), k


def snapshot(spark):
    """The predictions table now (collected: the table's files change with the next run), without
    the columns that name the run."""
    df = spark.table(f"{DB}.predictions").drop(*LINEAGE)
    return spark.createDataFrame(df.collect(), df.schema)


def test_rerun_gives_the_same_table_and_a_failed_run_keeps_it(spark, table, model):
    predict(spark, model, id_col="flight_id", threshold=0.3)
    first = snapshot(spark)
    predict(spark, model, id_col="flight_id", threshold=0.3)
    assert_df_equality(first, snapshot(spark), ignore_row_order=True)
    first_pd = first.toPandas()
    assert (first_pd.prediction == (first_pd.probability > 0.3)).all()
    # A clause that passes analysis but fails inside the scoring tasks: the run fails, and
    # the table is still the previous one, with no staged table left behind.
    with pytest.raises(Exception, match="(?i)assert"):
        predict(spark, model, id_col="flight_id", where="assert_true(Month < 2) IS NULL")
    assert_df_equality(first, snapshot(spark), ignore_row_order=True)
    assert not spark.catalog.tableExists(f"{DB}.predictions__mljobs_new")


def test_bad_input_is_one_clear_error_and_writes_nothing(spark, table, model, tmp_path):
    spark.createDataFrame(table.drop(columns=["Distance"])).write.mode("overwrite").saveAsTable(f"{DB}.nodist")
    wrong = table.assign(Distance=table.Distance.astype(str))
    spark.createDataFrame(wrong).write.mode("overwrite").saveAsTable(f"{DB}.wrongtype")
    spark.createDataFrame(table.assign(**{LABEL: 2})).write.mode("overwrite").saveAsTable(f"{DB}.badlabel")
    torn = tmp_path / "torn"
    shutil.copytree(model.path, torn)
    (torn / "model.json").write_text((torn / "model.json").read_text().replace('"', "'", 1))
    cases = [
        (dict(table=f"{DB}.nodist"), "lacks the model's feature columns \\['Distance'\\]"),
        (dict(table=f"{DB}.wrongtype"), "Distance \\(string\\)"),
        (dict(table=f"{DB}.badlabel"), f"label {LABEL} must be 0/1"),
        (dict(table=f"{DB}.nosuch"), "does not exist"),
        (dict(model=str(torn)), "sha256 differs"),
        (dict(where="Month = 99"), "selection is empty"),
        (dict(keep=["Nope"]), "has no column Nope"),
    ]
    for kw, message in cases:
        out = kw.pop("table", f"{DB}.flights")
        with pytest.raises(InputError, match=message):
            run_predict(spark, PredictConfig(model=kw.pop("model", model.location), table=out,
                                             out_table=f"{DB}.never", **kw), quiet)
    assert not spark.catalog.tableExists(f"{DB}.never")
    for kw, message in [(dict(model="/no/such/dir"), "no such directory"), (dict(threshold=1.5), "threshold"),
                        (dict(keep=["probability"]), "clash"), (dict(out_table=f"{DB}.flights"), "is the table")]:
        with pytest.raises(MljobsError, match=message):
            PredictConfig(**{"model": model.location, "table": f"{DB}.flights", **kw})


def test_the_command_line_rejects_bad_arguments_before_spark(tmp_path):
    res = run_cli(["./spark-submit.sh", "predict", "--model", str(tmp_path), "--table", "a.b", "--threshold", "2"])
    assert res.returncode == 2 and "must be in [0, 1]" in last_json(res.stdout)["error"]
    res = run_cli(["./spark-submit.sh", "predict", "--model", str(tmp_path / "none"), "--table", "a.b",
                   "--summary", str(tmp_path / "s.json")])
    assert res.returncode == 2 and "no such directory" in last_json(res.stdout)["error"]
    assert json.loads(Path(tmp_path / "s.json").read_text())["status"] == "failed"
