"""Exact TreeSHAP over a DataFrame: xgboost's ``pred_contribs`` / ``pred_interactions``
inside ``mapInPandas`` (driver side; the per-batch code is in ``worker``).

The model travels once as a broadcast of its bytes, keyed by its sha256; each Python
worker loads it once (``modelcache.xgboost_booster``). Batches are bounded by
``spark.sql.execution.arrow.maxRecordsPerBatch`` (set by the caller). Each batch
computes the margin too, and every row carries its additivity error
``|sum(phi) + phi0 - margin| / max(1, |margin|)``.
"""
from __future__ import annotations

import hashlib
import json

from pyspark.sql import DataFrame
from pyspark.sql.types import DoubleType, IntegerType, LongType, StringType, StructField, StructType

from mljobs.errors import InputError
from mljobs import modelcache
from mljobs.explain import worker

# Objectives whose prediction is sigmoid(margin); others ask the booster for it.
LOGISTIC = ("binary:logistic", "reg:logistic")
OUT_COLUMNS = ("prediction", "margin", "base_value", "additivity_error")


def ship_by_value() -> None:
    """The per-batch code and the model cache go to the workers by value."""
    modelcache.ship_by_value(worker)


def model_key(model_bytes: bytes) -> str:
    return hashlib.sha256(model_bytes).hexdigest()


def check_booster(booster, features: list[str]) -> dict:
    """Refuse models we cannot explain as one output; returns facts for the summary."""
    cfg = json.loads(booster.save_config())
    learner = cfg.get("learner", {})
    num_class = int(learner.get("learner_model_param", {}).get("num_class", "0") or 0)
    if num_class > 1:
        raise InputError(f"the model has {num_class} classes; only single-output models are explained")
    if booster.num_features() != len(features):
        raise InputError(f"the model has {booster.num_features()} features but metadata.json lists {len(features)}")
    return {"objective": learner.get("objective", {}).get("name"), "trees": len(booster.get_dump())}


def local_schema(sel: DataFrame, passthrough: list[str], features: list[str], diagnostics: bool = False) -> StructType:
    fields = [sel.schema[c] for c in passthrough]
    fields += [StructField(c, DoubleType()) for c in OUT_COLUMNS]
    fields += [StructField(f"shap_{f}", DoubleType()) for f in features]
    fields += [StructField(f"value_{f}", DoubleType()) for f in features]
    if diagnostics:
        fields += [StructField("_pid", LongType()), StructField("_loads", IntegerType())]
    return StructType(fields)


def contributions(sel: DataFrame, features: list[str], passthrough: list[str], model_bytes: bytes, objective: str,
                  device: str = "cpu", nthread: int = 1, diagnostics: bool = False) -> DataFrame:
    """Per-row SHAP values of ``sel`` (passthrough columns + ``value_<f>`` inputs): lazy."""
    ship_by_value()
    sc = sel.sparkSession.sparkContext
    bc = sc.broadcast(model_bytes)
    fn = worker.tree_contrib_fn(model_key(model_bytes), bc, features, passthrough, objective in LOGISTIC,
                                device=device, nthread=nthread, diagnostics=diagnostics)
    return sel.mapInPandas(fn, local_schema(sel, passthrough, features, diagnostics))


def interactions(sel: DataFrame, features: list[str], id_col: str, model_bytes: bytes,
                 device: str = "cpu", nthread: int = 1) -> DataFrame:
    """SHAP interaction values of the rows of ``sel`` in long format (id, feature_a, feature_b, value): lazy."""
    ship_by_value()
    bc = sel.sparkSession.sparkContext.broadcast(model_bytes)
    fn = worker.tree_interaction_fn(model_key(model_bytes), bc, features, id_col, device=device, nthread=nthread)
    schema = StructType([sel.schema[id_col], StructField("feature_a", StringType()),
                         StructField("feature_b", StringType()), StructField("value", DoubleType())])
    return sel.mapInPandas(fn, schema)
