"""Text classifiers as Spark ML pipelines, shared by train-text (which fits them) and
predict-text (which applies them): the stages, the model directory (a ``PipelineModel`` +
``metadata.json``) and the metrics of a set of predictions.

A pipeline reads one string column, ``_text``, and adds ``prediction`` (the class index),
``probability`` (a vector over the classes, in ``labels`` order) and ``predicted_label``:

1. preprocessing (the same for every trial): NULL text as ''; lower-cased tokens (runs of
   letters, digits and apostrophes; every other non-space character a token of its own, so
   ``!`` and ``:(`` count); the word n-grams 2 .. ``word_ngrams`` appended to the tokens;
2. features: ``ngram-lr`` hashes the terms into ``buckets`` counts (fastText's and
   BlazingText's hashing trick), ``tfidf-lr`` counts the terms seen in at least ``min_count``
   documents and weights them by IDF, ``word2vec-lr`` averages word2vec embeddings of the
   tokens (``vector_dim`` wide, words seen fewer than ``min_count`` times dropped);
3. a (multinomial) logistic regression over those features.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mljobs.errors import InputError, error_text
from mljobs.models.classes import class_metrics

ALGORITHMS = ("ngram-lr", "tfidf-lr", "word2vec-lr")
TEXT = "_text"
TOKENS, TERMS, TF, FEATURES, LABEL_IDX = "_tokens", "_terms", "_tf", "_features", "_label_idx"
PREDICTED = "predicted_label"
# Letters/digits/apostrophes as words, any other visible character as a token of its own.
TOKEN_PATTERN = r"[\p{L}\p{N}']+|[^\p{L}\p{N}'\s]"
METADATA_FILE, PIPELINE_DIR = "metadata.json", "pipeline"
FORMAT = "spark-ml-text"
EPS = 2.220446049250313e-16  # probabilities clipped here in the log loss, as scikit-learn's (float64 eps)


def prep_stages(word_ngrams: int, algorithm: str) -> list:
    """Tokens (and the word n-grams) of ``_text``: transformers only, nothing to fit."""
    from pyspark.ml.feature import NGram, SQLTransformer

    from mljobs.tables import sql_literal

    # One SQL expression, not RegexTokenizer: the same tokens (Java's regex and lower-casing both
    # ways; tests/test_text.py compares them), without a UDF's string conversions; models saved
    # with RegexTokenizer keep it and predict as before.
    stages = [SQLTransformer(statement=f"SELECT *, regexp_extract_all(lower(coalesce(`{TEXT}`, '')), "
                                       f"{sql_literal(TOKEN_PATTERN)}, 0) AS `{TOKENS}` FROM __THIS__")]
    if algorithm == "word2vec-lr":
        return stages
    grams = [f"_ngrams{n}" for n in range(2, word_ngrams + 1)]
    stages += [NGram(n=n, inputCol=TOKENS, outputCol=g) for n, g in zip(range(2, word_ngrams + 1), grams)]
    terms = ", ".join([f"`{TOKENS}`", *[f"`{g}`" for g in grams]])
    stages.append(SQLTransformer(statement=f"SELECT *, concat({terms}) AS `{TERMS}` FROM __THIS__"))
    return stages


def model_stages(algorithm: str, params: dict[str, Any], n_classes: int, seed: int) -> list:
    """The stages fitted per trial: the features of ``algorithm`` and the classifier."""
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import IDF, CountVectorizer, HashingTF, Word2Vec

    if algorithm == "ngram-lr":
        feats = [HashingTF(inputCol=TERMS, outputCol=FEATURES, numFeatures=int(params["buckets"]),
                           binary=bool(params.get("binary", False)))]
    elif algorithm == "tfidf-lr":
        feats = [CountVectorizer(inputCol=TERMS, outputCol=TF, minDF=float(params["min_count"]),
                                 vocabSize=int(params.get("max_vocab", 1 << 18)), binary=bool(params.get("binary", False))),
                 IDF(inputCol=TF, outputCol=FEATURES)]
    else:
        feats = [Word2Vec(inputCol=TOKENS, outputCol=FEATURES, vectorSize=int(params["vector_dim"]),
                          minCount=int(params["min_count"]), maxIter=int(params.get("w2v_epochs", 1)),
                          stepSize=float(params.get("learning_rate", 0.025)), windowSize=int(params.get("window", 5)),
                          seed=seed)]
    lr = LogisticRegression(featuresCol=FEATURES, labelCol=LABEL_IDX, maxIter=int(params["epochs"]),
                            regParam=float(params["reg_param"]), elasticNetParam=float(params.get("elastic_net", 0.0)),
                            standardization=bool(params.get("standardization", algorithm == "word2vec-lr")),
                            family="multinomial" if n_classes > 2 else "binomial", tol=1e-6)
    return feats + [lr]


def label_stage(labels: list[str]):
    from pyspark.ml.feature import IndexToString

    return IndexToString(inputCol="prediction", outputCol=PREDICTED, labels=list(labels))


def probability_model(model):
    """A saved text PipelineModel cut to what scoring needs: the stages up to the classifier, which
    adds only ``probability`` (no ``rawPrediction`` and ``prediction`` vectors, no IndexToString)."""
    from pyspark.ml import PipelineModel
    from pyspark.ml.feature import IndexToString

    stages = [s for s in model.stages if not isinstance(s, IndexToString)]
    classifier = stages[-1].copy()
    classifier.setRawPredictionCol("").setPredictionCol("")
    return PipelineModel(stages=[*stages[:-1], classifier])


def label_columns(probs, labels: list[str]) -> tuple:
    """(predicted label, its probability, label -> probability map) from an array column of the
    class probabilities: the label is the first most probable class, the classifier's own rule
    (argmax of the probabilities; the binary threshold 0.5 is the same rule)."""
    from pyspark.sql import functions as F

    names = F.array(*[F.lit(x) for x in labels])
    top = F.array_max(probs)
    first_top = F.call_function("array_position", probs, top).cast("int")  # 1-based
    return F.element_at(names, first_top), top, F.map_from_arrays(names, probs)


# ---- the model directory
@dataclass
class TextModel:
    """metadata.json of a text model; ``pipeline`` is loaded on demand."""
    algorithm: str
    labels: list[str]
    text_col: str
    label_col: str
    params: dict[str, Any]
    word_ngrams: int
    table: str
    study: str
    rows_train: int
    rows_validation: int
    metric: str
    cv_value: float | None
    validation: dict[str, Any] = field(default_factory=dict)
    model_format: str = FORMAT
    created_at: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    location: str = ""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("location")
        return d


def _spark_uri(spark, where) -> str:
    """A location Spark ML's writer/reader opens: a file:// URI locally, s3:// as s3a:// off EMR."""
    from mljobs import fs
    from mljobs.session import env_of
    from mljobs.uris import normalize_path

    if not fs.is_uri(where):
        return Path(str(fs.local_of(where))).resolve().as_uri()
    return normalize_path(str(where), env_of(spark))


def save_text_model(spark, directory: str, pipeline_model, meta: TextModel) -> str:
    """PipelineModel under DIR/pipeline, then metadata.json last (a reader checks for it): local
    directories are written beside the old one and renamed over it."""
    from mljobs import fs

    import pyspark

    meta.created_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    meta.versions = {"pyspark": pyspark.__version__}
    body = json.dumps(meta.to_json(), indent=2, sort_keys=True) + "\n"
    if fs.is_uri(directory):
        fs.remove(spark, fs.join(directory, METADATA_FILE))
        pipeline_model.write().overwrite().save(_spark_uri(spark, fs.join(directory, PIPELINE_DIR)))
        stage = fs.temp_dir("mljobs-textmodel-")
        (stage / METADATA_FILE).write_text(body)
        fs.upload_tree(spark, stage, str(directory))
        meta.location = str(directory)
        return str(directory)
    target = fs.local_of(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    pipeline_model.write().overwrite().save(_spark_uri(spark, tmp / PIPELINE_DIR))
    (tmp / METADATA_FILE).write_text(body)
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    if old.exists():
        import shutil

        shutil.rmtree(old, ignore_errors=True)
    meta.location = str(target)
    return str(target)


def load_text_model(spark, directory: str) -> tuple[TextModel, Any]:
    """(metadata, PipelineModel) of a model directory; a clear InputError when it is not one."""
    from pyspark.ml import PipelineModel

    from mljobs import fs

    text = fs.read_text(spark, fs.join(directory, METADATA_FILE))
    if text is None:
        raise InputError(f"--model {directory}: no {METADATA_FILE} (train-text writes model directories)")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"--model {directory}: {METADATA_FILE} is not JSON ({exc})") from None
    if raw.get("model_format") != FORMAT:
        raise InputError(f"--model {directory}: a {raw.get('model_format', 'tune')!r} model, not a train-text model")
    known = set(TextModel.__dataclass_fields__)
    meta = TextModel(**{k: v for k, v in raw.items() if k in known})
    meta.location = str(directory)
    try:
        model = PipelineModel.load(_spark_uri(spark, fs.join(directory, PIPELINE_DIR)))
    except Exception as exc:
        raise InputError(f"--model {directory}: cannot load {PIPELINE_DIR}/: {error_text(exc)}") from None
    return meta, model


# ---- metrics of predictions
def prediction_metrics(pred, labels: list[str]) -> dict[str, Any]:
    """class_metrics and the log loss of a frame with ``_label_idx``, ``prediction`` and
    ``probability`` (one aggregation job)."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    p_true = F.element_at(vector_to_array("probability"), F.col(LABEL_IDX).cast("int") + 1)
    rows = (pred.groupBy(F.col(LABEL_IDX).cast("int").alias("t"), F.col("prediction").cast("int").alias("p"))
                .agg(F.count(F.lit(1)).alias("n"), F.sum(-F.log(F.greatest(p_true, F.lit(EPS)))).alias("ll"))
                .collect())
    out = class_metrics({(r["t"], r["p"]): r["n"] for r in rows}, labels)
    out["logloss"] = sum(r["ll"] for r in rows) / out["rows"] if out["rows"] else float("nan")
    return out


# ---- GPU readiness: what both text jobs' plans leave on the CPU (tests/test_gpu_readiness.py)
def gpu_fallbacks(ngrams: bool = True) -> list:
    """The fallbacks of the text pipeline itself, reported by train-text and predict-text alike
    (predict-text makes its n-grams in Python: ``ngrams=False``)."""
    from mljobs.gpu import Known

    known = [
        Known("Alias|AttributeReference|CaseWhen|Cast|CollectLimitExec|FileSourceScanExec|FilterExec|"
              "InsertIntoHadoopFsRelationCommand|IsNull|ScalaUDF|ShuffleExchangeExec|WriteFilesExec",
              "org.apache.spark.ml.linalg.", "models/text.py: features, probabilities and the saved stages' data "
              "(Spark ML vectors and matrices)",
              "Spark ML holds features, probabilities and model data as VectorUDT / MatrixUDT, user-defined types "
              "the plugin has no columnar form for: every expression and operator that makes, reads or writes one "
              "(HashingTF / CountVectorizer, IDF, the logistic regression's UDF, vector_to_array, the model files) "
              "stays on the CPU; the scan, the label columns and the tables' writes around them do not"),
        Known("ScalaUDF", "org.apache.spark.ml.feature.NGram", "models/text.py prep_stages: the word n-grams "
              "(Spark ML NGram)",
              "a Scala UDF with no GPU version (`spark.rapids.sql.rowBasedUDF.enabled` would only run it row by row "
              "inside a GPU plan); its input and output are plain string arrays"),
        Known("RegExpExtractAll", "Unsupported escaped character 'p'", "models/text.py prep_stages: the tokens "
              "(regexp_extract_all with TOKEN_PATTERN)",
              "the plugin's regular expressions have no Unicode classes (\\p{L}, \\p{N}), and the tokens are letters "
              "and digits of any script; models saved with RegexTokenizer run a Scala UDF there, on the CPU too"),
    ]
    return [k for k in known if ngrams or "NGram" not in k.reason]
