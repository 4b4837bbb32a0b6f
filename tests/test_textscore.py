"""predict-text's Arrow scorer (mljobs.models.textscore) against Spark ML's own transform: the
hash, the features and the probabilities of every algorithm, two and three classes, on real
review snippets and on edge cases."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import HashingTF, RegexTokenizer, SQLTransformer
from pyspark.sql import functions as F

from mljobs.datasets import reviews
from mljobs.models import textscore
from mljobs.models.text import LABEL_IDX, TEXT, TOKEN_PATTERN, TOKENS, label_stage, model_stages, prep_stages

EDGE = [None, "", "   ", "zzqx qqzv", "!!!", "a", "ÉCOLE Straße İstanbul ΣΊΣΥΦΟΣ", "can't-stop 😀😀 l'été, ½ ２０２６!",
        "x" * 61 + " " + "y" * 7, "great great great great"]


@pytest.fixture(scope="module")
def snippets():
    reviews.fetch()
    rows = [r for r in reviews.load("amazon") if r["label"]]
    return rows[::9][:240]


def frame(spark, snippets, classes: int):
    """Real snippets labelled with 2 classes (their own) or 3 (by rating), plus the edge cases."""
    def label(r):
        if classes == 2:
            return float(r["label"] == "positive")
        return 0.0 if r["rating"] < -1 else 1.0 if r["rating"] < 1.5 else 2.0
    data = [(i, r["text"], label(r)) for i, r in enumerate(snippets)]
    data += [(len(data) + i, t, float(i % classes)) for i, t in enumerate(EDGE)]
    return spark.createDataFrame(data, f"id int, {TEXT} string, {LABEL_IDX} double")


def fitted(df, algorithm: str, classes: int, **params) -> PipelineModel:
    base = {"reg_param": 0.01, "epochs": 20, "buckets": 1 << 12, "min_count": 1, "vector_dim": 12}
    stages = prep_stages(2 if algorithm != "word2vec-lr" else 1, algorithm)
    stages += model_stages(algorithm, {**base, **params}, classes, 7)
    return Pipeline(stages=stages + [label_stage([str(c) for c in range(classes)])]).fit(df)


def both_ways(model, df) -> tuple[np.ndarray, np.ndarray]:
    """(Spark ML's probabilities, the Arrow scorer's), rows in id order."""
    want = np.array([r.probability.toArray() for r in model.transform(df).orderBy("id").collect()])
    tokens, scorer = textscore.plan(model)
    got = textscore.score(tokens.transform(df), scorer, ["id"], "_p").orderBy("id").collect()
    return want, np.array([r["_p"] for r in got])


def test_the_hash_is_spark_hashingtfs(spark):
    terms = ["", "a", "ab", "abc", "abcd", "abcde", "it's great", "! !", "ÉCOLE", "😀", "straße l'été", "x" * 61,
             "２０２６", "y" * 8]
    for n in (1 << 18, 1000):
        df = spark.createDataFrame([(i, [t]) for i, t in enumerate(terms)], "i int, t array<string>")
        out = HashingTF(inputCol="t", outputCol="v", numFeatures=n).transform(df).orderBy("i").collect()
        assert list(textscore.bucket_index(pa.array(terms), n)) == [int(r.v.indices[0]) for r in out]


@pytest.mark.parametrize("algorithm,classes,params", [
    ("ngram-lr", 2, {"binary": True}),
    ("ngram-lr", 3, {"buckets": 1000}),
    ("tfidf-lr", 2, {}),
    ("tfidf-lr", 3, {"min_count": 2, "binary": True}),
    ("word2vec-lr", 2, {}),
    ("word2vec-lr", 3, {}),
])
def test_probabilities_equal_spark_mls(spark, snippets, algorithm, classes, params):
    df = frame(spark, snippets, classes)
    model = fitted(df, algorithm, classes, **params)
    want, got = both_ways(model, df)
    assert got.shape == want.shape == (len(snippets) + len(EDGE), classes)
    assert np.abs(got - want).max() < 1e-12, algorithm
    assert (got.argmax(axis=1) == want.argmax(axis=1)).all()
    assert len(set(map(tuple, want.round(6)))) > len(snippets) // 2  # the model is not constant


def test_min_tf_below_one_is_a_share_of_the_row(spark, snippets):
    """CountVectorizer's minTF < 1: a term must make up that share of its row's terms."""
    df = frame(spark, snippets, 2)
    model = fitted(df, "tfidf-lr", 2)
    cv = next(s for s in model.stages if s.__class__.__name__ == "CountVectorizerModel")
    cv.setMinTF(0.1)
    want, got = both_ways(model, df)
    assert np.abs(got - want).max() < 1e-12


def test_models_with_regex_tokenizer_score_the_same(spark, snippets):
    df = frame(spark, snippets, 2)
    model = fitted(df, "ngram-lr", 2)
    old = RegexTokenizer(inputCol="_t", outputCol=TOKENS, pattern=TOKEN_PATTERN, gaps=False, toLowercase=True,
                         minTokenLength=1)
    legacy = PipelineModel(stages=[SQLTransformer(statement=f"SELECT *, coalesce(`{TEXT}`, '') AS _t FROM __THIS__"),
                                   old, *model.stages[1:]])
    assert textscore.plan(legacy) is None  # two stages before the tokens: not a shape it knows
    older = PipelineModel(stages=[old, *model.stages[1:]])
    tokens, scorer = textscore.plan(older)
    with_t = df.withColumn("_t", F.coalesce(F.col(TEXT), F.lit("")))
    want, got = both_ways(older, with_t)
    assert np.abs(got - want).max() < 1e-12 and scorer.kind == "hash"


def test_an_unknown_pipeline_is_left_to_spark_ml(spark, snippets):
    df = frame(spark, snippets, 2)
    model = fitted(df, "ngram-lr", 2)
    extra = SQLTransformer(statement="SELECT *, upper(_text) AS _shout FROM __THIS__")
    assert textscore.plan(PipelineModel(stages=[*model.stages[:2], extra, *model.stages[2:]])) is None
    assert textscore.plan(PipelineModel(stages=model.stages[:-2])) is None


def test_probabilities_of_extreme_margins():
    m = np.array([[800.0, 1.0, -3.0], [np.inf, 0.0, 1.0], [-30.0, -31.0, -29.0]])
    p = textscore.probabilities(m, multinomial=True)
    assert np.allclose(p.sum(axis=1), 1.0) and p[0].argmax() == 0 and (p[1] == [1.0, 0.0, 0.0]).all()
    assert np.allclose(p[2], np.exp([-1.0, -2.0, 0.0]) / np.exp([-1.0, -2.0, 0.0]).sum())
    b = textscore.probabilities(np.array([[0.0], [40.0], [-800.0]]), multinomial=False)
    assert b[0].tolist() == [0.5, 0.5] and b[1, 1] > 0.999999 and b[2].tolist() == [1.0, 0.0]
