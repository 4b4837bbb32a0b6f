"""Options of the tune job: one dataclass, each default on its field, validated once when built
(conf/tune.yaml, --config FILE and the flags are merged by mljobs.config.load_config)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mljobs.config import JobConfig, parse_table_name, validate_identifier
from mljobs.errors import MljobsError
from mljobs.studies.limits import check_seconds, coerce_seconds
from mljobs.tune.metrics import METRICS
from mljobs.tune.space import FAMILIES, SearchSpace, parse_space
from mljobs.uris import output_location

STRATEGIES = ("random", "bayesian", "grid")
MODES = ("auto", "distributed", "parallel")
PRUNERS = ("none", "median", "successive_halving", "hyperband")
MAX_GRID = 100_000
_STUDY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
# Keys whose YAML spelling 'auto' (or null) means "derive it at run time" (None).
_AUTO = ("num_workers", "threads_per_trial", "early_stopping_rounds", "time_budget")


@dataclass
class TuneConfig(JobConfig):
    table: str
    study: str
    family: str = "xgboost"              # xgboost | random_forest (xgboost's random-forest mode)
    label: str | None = None             # None: the table's mljobs.label property, else ArrDel15
    features: list[str] | None = None    # None: the table's mljobs.features, else every numeric/string column
    metric: str = "accuracy"             # accuracy | auc | logloss (minimised) | f1
    strategy: str = "random"             # random | bayesian (TPE) | grid
    max_trials: int = 10
    max_parallel: int = 2
    cv_folds: int = 3                    # stratified, deterministic given seed
    seed: int = 42
    mode: str = "auto"                   # auto | parallel (data fits one executor) | distributed (xgboost.spark)
    max_runtime_per_trial: float | None = 3600.0  # seconds; a trial past it is stopped and recorded TIMEOUT
    time_budget: float | None = None     # seconds for the whole run; None: no limit
    pruner: str = "none"                 # none | median | successive_halving | hyperband (fold by fold)
    early_stopping_rounds: int | None = None
    num_workers: int | None = None       # distributed mode: workers per fit (None: task slots / max_parallel)
    threads_per_trial: int | None = None  # parallel mode: xgboost threads per trial (None: slots / max_parallel)
    parallel_max_bytes: int = 1 << 30    # auto mode picks parallel up to this (and 1/4 of executor memory)
    max_categories: int = 1000           # string features with more distinct values are refused
    where: str | None = None
    out_db: str | None = None            # database of tuning_trials; None: the table's
    storage: str | None = None           # Optuna storage; None: <data-dir>/optuna/studies.db
    model_dir: str | None = None
    plots_dir: str | None = None
    search_space: dict[str, Any] | None = None  # per family; None: mljobs.tune.space.DEFAULT_SPACES
    # Derived from family and search_space by validate(); not an option.
    space: SearchSpace | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def direction(self) -> str:
        return METRICS[self.metric]

    @property
    def db(self) -> str:
        return self.out_db or parse_table_name(self.table)[0]

    @classmethod
    def coerce(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Flag/YAML spellings: 'A,B' features, 'auto' (or null) for the derived counts,
        'none' for no per-trial limit, whole seconds as floats."""
        values = dict(values)
        if not values.get("table") or not values.get("study"):
            raise MljobsError("--table and --study are required")
        if isinstance(values.get("features"), str):
            values["features"] = [f.strip() for f in values["features"].split(",") if f.strip()]
        for key in _AUTO:
            if isinstance(values.get(key), str) and values[key].lower() == "auto":
                values[key] = None
        return coerce_seconds(values)

    def validate(self) -> None:
        """Check every option and parse the search space."""
        output_location(self.model_dir, "--model-dir")
        output_location(self.plots_dir, "--plots")
        parse_table_name(self.table)
        if not _STUDY.match(self.study or ""):
            raise MljobsError(f"--study {self.study!r}: use letters, digits, '_', '-', '.' (at most 100, not starting with a symbol)")
        self._check_choices()
        self._check_numbers()
        self._check_columns()
        self._parse_space()

    def _check_choices(self) -> None:
        for name, valid in (("family", FAMILIES), ("metric", METRICS), ("strategy", STRATEGIES),
                            ("mode", MODES), ("pruner", PRUNERS)):
            value = getattr(self, name)
            if value not in valid:
                raise MljobsError(f"unknown {name} {value!r}; choose one of {', '.join(valid)}")

    def _check_numbers(self) -> None:
        for name in ("max_trials", "max_parallel", "cv_folds"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise MljobsError(f"{name} must be a positive integer, got {v!r}")
        if self.cv_folds < 2:
            raise MljobsError(f"cv_folds must be at least 2, got {self.cv_folds}")
        check_seconds(self)
        for name in ("num_workers", "threads_per_trial", "early_stopping_rounds"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise MljobsError(f"{name} must be a positive integer or auto, got {v!r}")

    def _check_columns(self) -> None:
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

    def _parse_space(self) -> None:
        spaces = self.search_space or {}
        if not isinstance(spaces, dict):
            raise MljobsError("search_space: expected a mapping family -> parameters")
        self.space = parse_space(self.family, spaces.get(self.family))
        if self.early_stopping_rounds and self.family == "random_forest":
            raise MljobsError("early stopping needs boosting rounds; random_forest trains one round")
        if self.strategy == "grid" and self.space.grid_size() > MAX_GRID:
            raise MljobsError(f"the grid has {self.space.grid_size()} points; give steps or fewer grid_points")
