"""Options of the train-text job: one dataclass, each default on its field, validated once when
built (conf/train-text.yaml, --config FILE and the flags are merged by mljobs.config.load_config)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mljobs.config import JobConfig, parse_table_name, validate_identifier
from mljobs.errors import MljobsError
from mljobs.studies.limits import check_seconds, coerce_seconds
from mljobs.models.text import ALGORITHMS
from mljobs.studies.space import SearchSpace, parse_param
from mljobs.uris import output_location

METRICS = {"accuracy": "maximize", "f1_macro": "maximize", "logloss": "minimize"}
STRATEGIES = ("random", "bayesian", "grid")
PRUNERS = ("none", "median", "successive_halving", "hyperband")
_STUDY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

# BlazingText's hyper-parameters under our names (docs/text.md maps them): epochs (the
# classifier's iterations), buckets, min_count, vector_dim, learning_rate (word2vec's step).
DEFAULT_SPACES: dict[str, dict[str, Any]] = {
    "ngram-lr": {"reg_param": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
                 "buckets": 1 << 20, "binary": True, "epochs": 100},
    "tfidf-lr": {"reg_param": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
                 "min_count": {"type": "int", "low": 1, "high": 3}, "epochs": 100},
    "word2vec-lr": {"reg_param": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
                    "vector_dim": {"type": "categorical", "values": [50, 100]}, "min_count": 2, "epochs": 100,
                    "w2v_epochs": 1, "learning_rate": 0.025},
}
_INT_PARAMS = {"epochs", "buckets", "min_count", "vector_dim", "w2v_epochs", "window", "max_vocab"}
KNOWN_PARAMS = {"reg_param", "elastic_net", "standardization", "binary", "learning_rate"} | _INT_PARAMS


def _check_bounds(name: str, low: float, high: float) -> None:
    where = f"search space: {name}"
    if name in _INT_PARAMS and low < 1:
        raise MljobsError(f"{where}: must be >= 1 (low = {low:g})")
    if name == "reg_param" and low < 0:
        raise MljobsError(f"{where}: must be >= 0 (low = {low:g})")
    if name == "elastic_net" and (low < 0 or high > 1):
        raise MljobsError(f"{where}: within [0, 1] (got {low:g}..{high:g})")
    if name == "learning_rate" and low <= 0:
        raise MljobsError(f"{where}: must be > 0 (low = {low:g})")


def parse_text_space(algorithm: str, spec: dict[str, Any] | None) -> SearchSpace:
    """The algorithm's search space: its defaults, with the given parameters over them."""
    merged = {**DEFAULT_SPACES[algorithm], **(spec or {})}
    unknown = sorted(set(merged) - KNOWN_PARAMS)
    if unknown:
        raise MljobsError(f"search space: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_PARAMS))}")
    params = tuple(parse_param(str(k), v, _INT_PARAMS, _check_bounds) for k, v in merged.items())
    if not any(p.kind != "fixed" for p in params):
        raise MljobsError("search space: nothing to tune (every parameter is fixed)")
    return SearchSpace(algorithm, params)


@dataclass
class TrainTextConfig(JobConfig):
    table: str
    text_col: str = "text"
    label_col: str = "label"
    algorithm: str = "ngram-lr"          # ngram-lr | tfidf-lr | word2vec-lr
    word_ngrams: int = 2                 # terms: tokens + their 2..N-grams (BlazingText word_ngrams)
    study: str | None = None             # None: text-<db>-<table>-<algorithm>
    metric: str = "accuracy"             # accuracy | f1_macro | logloss (minimised), over the CV folds
    strategy: str = "random"             # random | bayesian (TPE) | grid
    max_trials: int = 6
    max_parallel: int = 1                # trials at a time (each fit uses every task slot already)
    cv_folds: int = 3                    # stratified, deterministic given seed, on the 80 % training rows
    seed: int = 42
    max_runtime_per_trial: float | None = 1800.0
    time_budget: float | None = None
    pruner: str = "none"
    where: str | None = None
    out_db: str | None = None            # database of tuning_trials, text_validation, text_errors; None: the table's
    storage: str | None = None           # Optuna storage; None: <data-dir>/optuna/studies.db
    model_dir: str | None = None         # None: <results>/models/<study>
    plots_dir: str | None = None         # None: <results>/plots/text/<study>
    errors: int = 20                     # the most confidently wrong validation rows kept in text_errors
    search_space: dict[str, Any] | None = None  # per algorithm, over DEFAULT_SPACES
    space: SearchSpace | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def family(self) -> str:  # the trials table's name for it
        return self.algorithm

    @property
    def direction(self) -> str:
        return METRICS[self.metric]

    @property
    def db(self) -> str:
        return self.out_db or parse_table_name(self.table)[0]

    @classmethod
    def coerce(cls, values: dict[str, Any]) -> dict[str, Any]:
        """'none' for no per-trial limit; whole seconds as floats."""
        values = dict(values)
        if not values.get("table"):
            raise MljobsError("--table is required")
        return coerce_seconds(values)

    def validate(self) -> None:
        output_location(self.model_dir, "--model-dir")
        output_location(self.plots_dir, "--plots")
        db, name = parse_table_name(self.table)
        if self.study is None:
            self.study = f"text-{db}-{name}-{self.algorithm}"
        if not _STUDY.match(self.study):
            raise MljobsError(f"--study {self.study!r}: use letters, digits, '_', '-', '.' (at most 100)")
        for name_, valid in (("algorithm", ALGORITHMS), ("metric", METRICS), ("strategy", STRATEGIES),
                             ("pruner", PRUNERS)):
            if getattr(self, name_) not in valid:
                raise MljobsError(f"unknown {name_} {getattr(self, name_)!r}; choose one of {', '.join(valid)}")
        self._check_numbers()
        validate_identifier(self.text_col, "--text-col")
        validate_identifier(self.label_col, "--label-col")
        if self.text_col.lower() == self.label_col.lower():
            raise MljobsError("--text-col and --label-col name the same column")
        if self.out_db:
            validate_identifier(self.out_db, "--out-db")
        if self.where is not None and not str(self.where).strip():
            raise MljobsError("--where is empty")
        spaces = self.search_space or {}
        if not isinstance(spaces, dict):
            raise MljobsError("search_space: expected a mapping algorithm -> parameters")
        self.space = parse_text_space(self.algorithm, spaces.get(self.algorithm))

    def _check_numbers(self) -> None:
        for name in ("max_trials", "max_parallel", "cv_folds", "word_ngrams", "errors"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if name == "errors" else 1):
                raise MljobsError(f"{name} must be a positive integer, got {v!r}")
        if self.cv_folds < 2:
            raise MljobsError(f"cv_folds must be at least 2, got {self.cv_folds}")
        if self.word_ngrams > 5:
            raise MljobsError(f"word_ngrams must be 1..5, got {self.word_ngrams}")
        check_seconds(self)
