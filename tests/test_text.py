"""train-text and predict-text on real review snippets: features by hand, metrics against
scikit-learn, a reloaded model predicting as the trained one, resume, bad input."""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pyspark.ml.linalg import Vectors, VectorUDT
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StructField, StructType

from mljobs.datasets import reviews
from mljobs.errors import InputError, MljobsError
from mljobs.models.classes import class_metrics
from mljobs.models.text import (LABEL_IDX, PREDICTED, TEXT, load_text_model, model_stages, prediction_metrics,
                                prep_stages)
from mljobs.predict_text.config import PredictTextConfig
from mljobs.predict_text.job import run as run_predict_text
from mljobs.train_text.config import TrainTextConfig
from mljobs.train_text.data import load_text_data
from mljobs.train_text.job import run as run_train_text

quiet = lambda m: None  # noqa: E731

TOY = ["Great phone, great battery!", "terrible battery :(", "great price; terrible phone", "It's GREAT!!"]


def hand_terms(text: str, n: int) -> list[str]:
    tokens = [t.lower() for t in re.findall(r"[\w']+|[^\w'\s]", text)]
    return tokens + [" ".join(tokens[i:i + k]) for k in range(2, n + 1) for i in range(len(tokens) - k + 1)]


def test_tokens_ngrams_and_tfidf_equal_a_hand_computation(spark):
    from pyspark.ml import Pipeline

    df = spark.createDataFrame([(t,) for t in TOY], f"{TEXT} string")
    prep = Pipeline(stages=prep_stages(2, "tfidf-lr")).fit(df)
    feats = Pipeline(stages=model_stages("tfidf-lr", {"min_count": 1, "epochs": 1, "reg_param": 0.0},
                                         2, 1)[:2]).fit(prep.transform(df))
    vocab = feats.stages[0].vocabulary
    rows = feats.transform(prep.transform(df)).select(TEXT, "_terms", "_features").collect()
    terms = [hand_terms(t, 2) for t in TOY]
    assert [r["_terms"] for r in rows] == terms
    assert terms[3] == ["it's", "great", "!", "!", "it's great", "great !", "! !"]
    doc_freq = Counter(t for ts in terms for t in set(ts))
    m = len(TOY)
    for r, ts in zip(rows, terms):
        want = {t: c * math.log((m + 1) / (doc_freq[t] + 1)) for t, c in Counter(ts).items()}
        got = {vocab[i]: v for i, v in zip(r["_features"].indices, r["_features"].values) if v != 0}
        assert got.keys() == {t for t, v in want.items() if v != 0}
        assert all(abs(got[t] - want[t]) < 1e-12 for t in got)


def test_sql_tokens_equal_the_regex_tokenizers(spark):
    """Models saved before the SQL tokenizer use RegexTokenizer: both give the same tokens."""
    from pyspark.ml.feature import RegexTokenizer

    from mljobs.models.text import TOKEN_PATTERN, TOKENS

    texts = [r["text"] for r in reviews.load("amazon")] + TOY + [None, "", "  ", "ÉCOLE Straße İstanbul ΣΊΣΥΦΟΣ",
                                                                 "can't-stop 😀😀 l'été, ½ ２０２６!"]
    df = spark.createDataFrame(list(enumerate(texts)), f"i int, {TEXT} string")
    ours = prep_stages(1, "word2vec-lr")[0].transform(df).select("i", TOKENS)
    theirs = RegexTokenizer(inputCol="t", outputCol=TOKENS, pattern=TOKEN_PATTERN, gaps=False, toLowercase=True,
                            minTokenLength=1).transform(df.select("i", F.coalesce(TEXT, F.lit("")).alias("t")))
    got = dict(ours.collect())
    assert got == dict(theirs.select("i", TOKENS).collect()) and len(got) == len(texts)
    assert got[len(texts) - 1][:4] == ["can't", "-", "stop", "😀"]


def test_every_algorithm_fits_and_predicts(spark):
    from pyspark.ml import Pipeline

    df = spark.createDataFrame([(t, float(i % 2)) for i, t in enumerate(TOY * 3)], f"{TEXT} string, {LABEL_IDX} double")
    params = {"reg_param": 0.01, "epochs": 5, "buckets": 1 << 10, "min_count": 1, "vector_dim": 8}
    for algorithm in ("ngram-lr", "tfidf-lr", "word2vec-lr"):
        stages = prep_stages(2, algorithm) + model_stages(algorithm, params, 2, 7)
        out = Pipeline(stages=stages).fit(df).transform(df).select("prediction", "probability").collect()
        assert len(out) == 12 and all(abs(sum(r["probability"]) - 1) < 1e-9 for r in out), algorithm


def test_metrics_equal_scikit_learns(spark):
    from sklearn.metrics import accuracy_score, log_loss, precision_recall_fscore_support

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 200)
    p = rng.dirichlet([1, 1, 1], 200)
    p[:20, 2] = 0.0  # class 2 never predicted for some rows; keep rows summing to 1
    p = p / p.sum(axis=1, keepdims=True)
    pred = p.argmax(axis=1)
    schema = StructType([StructField(LABEL_IDX, DoubleType()), StructField("prediction", DoubleType()),
                         StructField("probability", VectorUDT())])
    df = spark.createDataFrame([(float(a), float(b), Vectors.dense(c)) for a, b, c in zip(y, pred, p)], schema)
    got = prediction_metrics(df, ["a", "b", "c"])
    prec, rec, f1, sup = precision_recall_fscore_support(y, pred, labels=[0, 1, 2], zero_division=0)
    assert got["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert got["macro_f1"] == pytest.approx(f1.mean(), abs=1e-12)
    assert [c["precision"] for c in got["per_class"]] == pytest.approx(list(prec), abs=1e-12)
    assert [c["recall"] for c in got["per_class"]] == pytest.approx(list(rec), abs=1e-12)
    assert [c["support"] for c in got["per_class"]] == list(sup)
    assert got["logloss"] == pytest.approx(log_loss(y, p, labels=[0, 1, 2]), abs=1e-9)
    # a class never predicted: precision 0 (scikit-learn's zero_division=0)
    assert class_metrics({(0, 0): 3, (1, 0): 2}, ["x", "y"])["per_class"][1] == \
        {"label": "y", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}


@pytest.fixture(scope="module")
def review_table(spark):
    """300 labelled Amazon snippets (stratified: every 12th row) plus 2 unlabelled ones, as a Hive table."""
    reviews.fetch()
    rows = reviews.load("amazon")
    some = [r for r in rows if r["label"]][::12][:300] + [r for r in rows if not r["label"]][:2]
    df = spark.createDataFrame([(r["id"], r["text"], r["rating"], r["label"]) for r in some],
                               "id string, text string, rating double, label string")
    spark.sql("CREATE DATABASE IF NOT EXISTS t_txt")
    df.write.mode("overwrite").saveAsTable("t_txt.amazon")
    return "t_txt.amazon"


def config(table, tmp, **kw):
    base = {"table": table, "algorithm": "tfidf-lr", "max_trials": 2, "cv_folds": 2, "study": "txt",
            "model_dir": str(tmp / "model"), "plots_dir": str(tmp / "plots"), "errors": 5,
            "search_space": {"tfidf-lr": {"epochs": 10}}}
    return TrainTextConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(spark, review_table, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("text")
    return tmp, run_train_text(spark, config(review_table, tmp), quiet)


def test_train_text_end_to_end(spark, trained):
    tmp, s = trained
    assert s["labels"] == ["negative", "positive"] and s["rows_null_label"] == 2 and s["rows"] == 300
    assert s["rows_train"] + s["rows_validation"] == 300 and 59 <= s["rows_validation"] <= 61  # 20 % of each class
    assert s["trials_complete"] == 2 and s["trials_new"] == 2
    v = s["validation"]
    assert v["rows"] == s["rows_validation"] and sum(map(sum, v["confusion"])) == v["rows"] and 0.5 < v["accuracy"] <= 1
    assert Path(s["plots"][0]).name == "confusion_matrix.png" and Path(s["plots"][0]).stat().st_size > 1000
    table = spark.table(s["validation_table"]).where("study = 'txt'").orderBy(F.col("label").asc_nulls_last())
    got = [(r.label, r.support) for r in table.collect()]
    assert got == [("negative", v["per_class"][0]["support"]), ("positive", v["per_class"][1]["support"]), (None, v["rows"])]
    assert table.collect()[-1].accuracy == pytest.approx(v["accuracy"])
    errors = spark.table(s["errors_table"]).where("study = 'txt'").orderBy("rank").collect()
    wrong = v["rows"] - sum(v["confusion"][i][i] for i in range(2))
    assert len(errors) == min(5, wrong) and all(e.label != e.predicted for e in errors)
    assert [e.confidence for e in errors] == sorted((e.confidence for e in errors), reverse=True)
    trials = spark.table(s["trials_table"]).where("study = 'txt'")
    assert trials.count() == 2 and set(trials.columns) >= {"p_reg_param", "p_min_count"}
    meta = json.loads((Path(s["model_dir"]) / "metadata.json").read_text())
    assert meta["labels"] == s["labels"] and meta["model_format"] == "spark-ml-text"


def test_reloaded_model_predicts_as_the_trained_one(spark, trained, review_table):
    tmp, s = trained
    meta, model = load_text_model(spark, s["model_dir"])
    data = load_text_data(spark, review_table, "text", "label", 2, 42)  # the same split (same seed)
    again = prediction_metrics(model.transform(data.validation), meta.labels)
    assert again["confusion"] == s["validation"]["confusion"]
    assert again["logloss"] == pytest.approx(s["validation"]["logloss"], abs=1e-12)


def test_predict_text_labels_every_row(spark, trained, review_table):
    tmp, s = trained
    out = run_predict_text(spark, PredictTextConfig(model=s["model_dir"], table=review_table, id_col="id",
                                                    keep=["label"], out_table="t_txt.preds"), quiet)
    assert out["rows_scored"] == 302 and out["out_table"] == "t_txt.preds"
    t = spark.table("t_txt.preds")
    assert t.columns[:3] == ["id", "label", "predicted_label"]
    row = t.where("id = '1_1'").first()
    assert set(row.probabilities) == {"negative", "positive"}
    assert sum(row.probabilities.values()) == pytest.approx(1.0)
    assert row.probability == max(row.probabilities.values())
    assert row.predicted_label == max(row.probabilities, key=row.probabilities.get)
    meta, model = load_text_model(spark, s["model_dir"])
    direct = model.transform(spark.table(review_table).select("id", F.col("text").alias(TEXT)))
    want = {r.id: (r.predicted_label, max(r.probability)) for r in direct.select("id", PREDICTED, "probability").collect()}
    got = {r.id: (r.predicted_label, r.probability) for r in t.select("id", "predicted_label", "probability").collect()}
    assert out["scorer"] == "arrow" and got.keys() == want.keys()
    assert all(got[k][0] == want[k][0] and abs(got[k][1] - want[k][1]) < 1e-12 for k in want)  # exp's last bit


def test_resume_runs_only_the_missing_trials(spark, trained, review_table):
    tmp, s = trained
    again = run_train_text(spark, config(review_table, tmp, max_trials=3), quiet)
    assert again["trials_before"] == 2 and again["trials_new"] == 1 and again["trials_complete"] == 3
    with pytest.raises(MljobsError, match="exists with other settings"):
        run_train_text(spark, config(review_table, tmp, word_ngrams=3), quiet)


def report_rows(spark, db: str) -> dict:
    return {name: sorted(map(tuple, spark.table(f"{db}.{name}").where("study = 'txt'").collect()), key=repr)
            for name in ("text_validation", "text_errors")}


def tables_in(spark, db: str) -> set[str]:
    """The tables of db (listTables also lists the session's temporary views, e.g. other tests')."""
    return {t.name for t in spark.catalog.listTables(db) if not t.isTemporary}


def test_a_failed_model_write_changes_no_table(spark, trained, review_table, tmp_path):
    from mljobs.tables import database_location

    tmp, s = trained
    (tmp_path / "occupied").write_text("a file where the model directory's parent should be")
    unwritable = str(tmp_path / "occupied" / "model")
    before, tables_before = report_rows(spark, "t_txt"), tables_in(spark, "t_txt")
    # The same study again (no new trials): the refit's report must not replace the last good run's.
    with pytest.raises(OSError):
        run_train_text(spark, config(review_table, tmp, model_dir=unwritable), quiet)
    assert report_rows(spark, "t_txt") == before
    assert tables_in(spark, "t_txt") == tables_before
    staging = Path(database_location(spark, "t_txt").removeprefix("file:")) / "_mljobs_staging"
    assert not list(staging.glob("train-text-*"))
    assert (Path(s["model_dir"]) / "metadata.json").exists()
    # A new study into a new database: no report table appears (tuning_trials, the study's record, does).
    with pytest.raises(OSError):
        run_train_text(spark, config(review_table, tmp_path, study="txt-fail", out_db="t_txt_fail", max_trials=1,
                                     model_dir=unwritable), quiet)
    assert tables_in(spark, "t_txt_fail") == {"tuning_trials"}


@pytest.mark.parametrize("make, kw, message", [
    ("SELECT id, text, label FROM t_txt.amazon", {"text_col": "body"}, "has no column body"),
    ("SELECT id, rating AS text, label FROM t_txt.amazon", {}, "text is double, not a string"),
    ("SELECT id, text, 'positive' AS label FROM t_txt.amazon", {}, "one class only"),
    ("SELECT id, text, label FROM t_txt.amazon WHERE false", {}, "no rows with both text and label"),
    ("SELECT id, text, array(label) AS label FROM t_txt.amazon", {}, "a label is a string, an integer or a boolean"),
])
def test_bad_input_is_refused_before_training(spark, review_table, tmp_path, make, kw, message):
    spark.sql(make).write.mode("overwrite").saveAsTable("t_txt.bad")
    with pytest.raises(InputError, match=message):
        run_train_text(spark, config("t_txt.bad", tmp_path, study=f"bad-{abs(hash(make)) % 10**6}", **kw), quiet)
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("kw, message", [
    ({"cv_folds": 1}, "cv_folds must be at least 2"),
    ({"algorithm": "bert"}, "unknown algorithm"),
    ({"text_col": "label"}, "same column"),
    ({"search_space": {"tfidf-lr": {"depth": 3}}}, "unknown parameter"),
    ({"search_space": {"tfidf-lr": {"reg_param": {"type": "float", "low": -1, "high": 1}}}}, "must be >= 0"),
])
def test_bad_options_fail_before_spark(kw, message, tmp_path):
    with pytest.raises(MljobsError, match=message):
        config("t_txt.amazon", tmp_path, **kw)


def test_predict_text_refuses_a_kept_column_named_like_its_own(tmp_path):
    from mljobs.predict_text.config import PredictTextConfig

    for name in ("_probs", "Predicted_Label"):
        with pytest.raises(MljobsError, match="clash with the output columns"):
            PredictTextConfig(model=str(tmp_path), table="t_txt.amazon", keep=[name])
