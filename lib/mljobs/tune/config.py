"""The tuner definition: conf/tune.yaml, overridden by flags, validated in one place."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from mljobs.config import merge_yaml_and_flags, parse_table_name, validate_identifier
from mljobs.errors import MljobsError
from mljobs.tune.metrics import METRICS
from mljobs.tune.space import FAMILIES, SearchSpace, parse_space

STRATEGIES = ("random", "bayesian", "grid")
MODES = ("auto", "distributed", "parallel")
PRUNERS = ("none", "median", "successive_halving", "hyperband")
_STUDY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass
class TuneConfig:
    table: str
    study: str
    family: str = "xgboost"
    label: str | None = None
    features: list[str] | None = None
    metric: str = "accuracy"
    strategy: str = "random"
    max_trials: int = 10
    max_parallel: int = 2
    cv_folds: int = 3
    seed: int = 42
    mode: str = "auto"
    max_runtime_per_trial: float | None = 3600.0
    time_budget: float | None = None
    pruner: str = "none"
    early_stopping_rounds: int | None = None
    num_workers: int | None = None
    threads_per_trial: int | None = None
    parallel_max_bytes: int = 1 << 30
    max_categories: int = 1000
    where: str | None = None
    out_db: str | None = None
    storage: str | None = None
    model_dir: str | None = None
    plots_dir: str | None = None
    search_space: dict[str, Any] | None = None
    space: SearchSpace | None = field(default=None, repr=False)

    @property
    def direction(self) -> str:
        return METRICS[self.metric]

    @property
    def db(self) -> str:
        return self.out_db or parse_table_name(self.table)[0]

    def validate(self) -> "TuneConfig":
        parse_table_name(self.table)
        if not _STUDY.match(self.study or ""):
            raise MljobsError(f"--study {self.study!r}: use letters, digits, '_', '-', '.' (at most 100, not starting with a symbol)")
        if self.family not in FAMILIES:
            raise MljobsError(f"unknown family {self.family!r}; choose one of {', '.join(FAMILIES)}")
        if self.metric not in METRICS:
            raise MljobsError(f"unknown metric {self.metric!r}; choose one of {', '.join(METRICS)}")
        if self.strategy not in STRATEGIES:
            raise MljobsError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if self.mode not in MODES:
            raise MljobsError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.pruner not in PRUNERS:
            raise MljobsError(f"unknown pruner {self.pruner!r}; choose one of {', '.join(PRUNERS)}")
        for name in ("max_trials", "max_parallel", "cv_folds"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise MljobsError(f"{name} must be a positive integer, got {v!r}")
        if self.cv_folds < 2:
            raise MljobsError(f"cv_folds must be at least 2, got {self.cv_folds}")
        for name in ("max_runtime_per_trial", "time_budget"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, float)) or math.isnan(v) or v <= 0):
                raise MljobsError(f"{name} must be a positive number of seconds, got {v!r}")
        for name in ("num_workers", "threads_per_trial", "early_stopping_rounds"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise MljobsError(f"{name} must be a positive integer or auto, got {v!r}")
        if self.out_db:
            validate_identifier(self.out_db, "--out-db")
        if self.label:
            validate_identifier(self.label, "label")
        if self.features is not None:
            if not self.features:
                raise MljobsError("features: empty list")
            for f in self.features:
                validate_identifier(f, "feature")
            if len({f.lower() for f in self.features}) != len(self.features):
                raise MljobsError("features: duplicates")
        spaces = self.search_space or {}
        if not isinstance(spaces, dict):
            raise MljobsError("search_space: expected a mapping family -> parameters")
        self.space = parse_space(self.family, spaces.get(self.family))
        if self.early_stopping_rounds:
            if self.family == "random_forest":
                raise MljobsError("early stopping needs boosting rounds; random_forest trains one round")
        if self.strategy == "grid":
            size = self.space.grid_size()
            if size > 100_000:
                raise MljobsError(f"the grid has {size} points; give steps or fewer grid_points")
        return self


def _auto_int(v):
    if v is None or (isinstance(v, str) and v.lower() == "auto"):
        return None
    return v


def from_yaml_and_args(defaults: dict[str, Any], args) -> TuneConfig:
    """Merge conf/tune.yaml (defaults) with the flags that were given."""
    merged = merge_yaml_and_flags(defaults, args, set(TuneConfig.__dataclass_fields__) - {"space"}, "tune")
    if isinstance(merged.get("features"), str):
        merged["features"] = [f.strip() for f in merged["features"].split(",") if f.strip()]
    for key in ("num_workers", "threads_per_trial", "early_stopping_rounds", "time_budget"):
        merged[key] = _auto_int(merged.get(key))
    if isinstance(merged.get("max_runtime_per_trial"), str) and merged["max_runtime_per_trial"].lower() in ("none", "null"):
        merged["max_runtime_per_trial"] = None
    for key in ("max_runtime_per_trial", "time_budget"):
        if isinstance(merged.get(key), int):
            merged[key] = float(merged[key])
    if not merged.get("table") or not merged.get("study"):
        raise MljobsError("--table and --study are required")
    return TuneConfig(**merged).validate()
