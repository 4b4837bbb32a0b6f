"""The per-worker model cache: one load per key, least recently used dropped past the bound,
and an xgboost booster loaded once however often it is asked for."""
from __future__ import annotations

import numpy as np
import pytest

from mljobs import modelcache


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setenv("MLJOBS_MODEL_CACHE_SIZE", "2")
    monkeypatch.delitem(__import__("sys").modules, modelcache._STORE, raising=False)


def test_a_key_is_loaded_once_and_the_least_recently_used_goes_first(fresh):
    calls = []

    def loader(name):
        return lambda: calls.append(name) or f"model {name}"

    assert modelcache.get(("a",), loader("a")) == "model a"
    assert modelcache.get(("a",), loader("a")) == "model a"
    modelcache.get(("b",), loader("b"))
    modelcache.get(("a",), loader("a"))  # a is now the most recent
    modelcache.get(("c",), loader("c"))  # over the bound of 2: b goes
    assert calls == ["a", "b", "c"] and modelcache.load_count() == 3
    assert modelcache.cached_keys() == [("a",), ("c",)]
    modelcache.get(("b",), loader("b"))
    assert calls == ["a", "b", "c", "b"]


def test_xgboost_booster_is_read_once_per_sha(fresh):
    import xgboost as xgb

    x = np.random.default_rng(0).normal(size=(200, 3))
    booster = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(x, label=x[:, 0] > 0), num_boost_round=3)
    raw = bytes(booster.save_raw("json"))
    reads = []

    def model_bytes():
        reads.append(1)
        return raw

    b1 = modelcache.xgboost_booster("sha-1", model_bytes, ["f0", "f1", "f2"])
    b2 = modelcache.xgboost_booster("sha-1", model_bytes, ["f0", "f1", "f2"])
    assert b1 is b2 and len(reads) == 1 and b1.feature_names == ["f0", "f1", "f2"]
    dm = xgb.DMatrix(x, feature_names=["f0", "f1", "f2"])
    np.testing.assert_allclose(b1.predict(dm), booster.predict(xgb.DMatrix(x)))
