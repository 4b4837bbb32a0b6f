"""The per-worker model cache: a model is loaded once per Python worker process, keyed by
its sha256, whatever the number of tasks and batches that score rows with it.

Spark reuses Python workers across tasks (``spark.python.worker.reuse``), so a cache that
lives as long as the process saves every task but the first from loading the model. The
cache is a small module registered in ``sys.modules``, not this module's globals: code
shipped to the workers by value (``ship_by_value``; a notebook or a test session has
mljobs on the driver only) gets fresh globals with every task. This module imports
nothing from mljobs for the same reason.

The cache is bounded (``MLJOBS_MODEL_CACHE_SIZE`` entries, default 4, least recently used
dropped first): a long-lived worker that scores with many models does not keep them all.
"""
from __future__ import annotations

import os
import sys
import types
from collections import OrderedDict
from typing import Any, Callable

_STORE = "_mljobs_model_cache"


def _store() -> types.ModuleType:
    mod = sys.modules.get(_STORE)
    if mod is None:
        mod = types.ModuleType(_STORE)
        mod.cache = OrderedDict()
        mod.loads = 0
        sys.modules[_STORE] = mod
    return mod


def capacity() -> int:
    try:
        return max(1, int(os.environ.get("MLJOBS_MODEL_CACHE_SIZE", "4")))
    except ValueError:
        return 4


def get(key: tuple, load: Callable[[], Any]) -> Any:
    """The model cached under ``key`` (its sha256 first, then what shapes the loaded object:
    device, threads ...); ``load()`` runs only on a miss."""
    store = _store()
    if key in store.cache:
        store.cache.move_to_end(key)
        return store.cache[key]
    model = load()
    store.cache[key] = model
    store.loads += 1
    while len(store.cache) > capacity():
        store.cache.popitem(last=False)
    return model


def load_count() -> int:
    """Models loaded by this process so far (misses)."""
    return _store().loads


def cached_keys() -> list[tuple]:
    return list(_store().cache)


def xgboost_booster(sha256: str, model_bytes: Callable[[], bytes], features: list[str], nthread: int = 1,
                    device: str = "cpu"):
    """An xgboost Booster from its JSON/UBJ bytes, once per process; ``model_bytes`` (e.g. a
    broadcast's value) is only read on a miss."""
    def load():
        import xgboost as xgb

        booster = xgb.Booster(model_file=bytearray(model_bytes()))
        booster.set_param({"nthread": nthread, "device": device})
        booster.feature_names = list(features)
        return booster

    return get(("xgboost", sha256, nthread, device), load)


def ship_by_value(*modules) -> None:
    """Pickle this module and ``modules`` by value into Spark's Python workers, so the
    workers need not have mljobs installed."""
    from pyspark import cloudpickle

    for module in (sys.modules[__name__], *modules):
        cloudpickle.register_pickle_by_value(module)
