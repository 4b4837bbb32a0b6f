"""Options of the explain job (one dataclass, each default on its field); validated once,
when the config is built, before Spark starts."""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mljobs.config import JobConfig, parse_table_name, validate_identifier
from mljobs.errors import InputError, MljobsError
from mljobs.models.artifact import check_model_location
from mljobs.uris import output_location

METHODS = ("tree", "kernel")
AGG_METHODS = ("mean_abs", "median", "mean_sq")
MEDIANS = ("exact", "approx")
# Clarify names the method in analysis.json; ours is named the same way.
METHOD_KEYS = {"tree": "tree_shap", "kernel": "kernel_shap"}


@dataclass
class ExplainConfig(JobConfig):
    """Options of one explain run (the flags of ``jobs/explain.py``; conf/explain.yaml may set any)."""

    model: str
    table: str
    where: str | None = None
    sample: float | None = None
    id_col: str | None = None
    group_by: list[str] = field(default_factory=list)
    agg_method: str = "mean_abs"
    median: str = "exact"
    interactions: int = 0
    max_interaction_values: int = 20_000_000
    method: str = "tree"
    baseline: Any = None  # list of rows (lists or {feature: value}) or a CSV/JSON file path
    num_samples: int = 1000
    num_clusters: int = 10
    use_logit: bool = True
    out_db: str = "explain"
    output: str | None = None
    plots_dir: str | None = None
    plots: bool = True
    explain_ids: list[str] = field(default_factory=list)
    top_k: int = 5
    plot_rows: int = 2000
    max_groups_plotted: int = 8
    batch_rows: int = 10000
    additivity_tol: float = 1e-4
    seed: int = 42

    @classmethod
    def coerce(cls, values: dict[str, Any]) -> dict[str, Any]:
        """The --no-plots flag, and YAML strings for the list options."""
        values = dict(values)
        if values.pop("no_plots", False):
            values["plots"] = False
        if isinstance(values.get("group_by"), str):  # one grouping, like one --group-by argument
            values["group_by"] = [values["group_by"]]
        if isinstance(values.get("explain_ids"), str):
            values["explain_ids"] = [i.strip() for i in values["explain_ids"].split(",") if i.strip()]
        return values

    def validate(self) -> None:
        check_model_location(self.model)
        for flag, value in (("--output", self.output), ("--plots", self.plots_dir)):
            output_location(value, flag)
        parse_table_name(self.table)
        validate_identifier(self.out_db, "database name (--out-db)")
        if self.where is not None and not str(self.where).strip():
            raise MljobsError("--where is empty")
        if self.sample is not None and (math.isnan(self.sample) or not 0.0 < self.sample <= 1.0):
            raise MljobsError(f"--sample must be within (0, 1], got {self.sample}")
        if self.id_col is not None:
            validate_identifier(self.id_col, "column name (--id-col)")
        groupings = []
        for g in self.group_by or []:
            cols = [c.strip() for c in str(g).split(",") if c.strip()]
            if not cols:
                raise MljobsError(f"--group-by {g!r}: no column")
            for c in cols:
                validate_identifier(c, "column name (--group-by)")
            groupings.append(",".join(cols))
        self.group_by = groupings
        if self.agg_method not in AGG_METHODS:
            raise MljobsError(f"unknown --agg-method {self.agg_method!r}; valid: {', '.join(AGG_METHODS)}")
        if self.median not in MEDIANS:
            raise MljobsError(f"unknown median {self.median!r}; valid: {', '.join(MEDIANS)}")
        if self.method not in METHODS:
            raise MljobsError(f"unknown --method {self.method!r}; valid: {', '.join(METHODS)}")
        for name, value, low in (("--interactions", self.interactions, 0), ("--num-samples", self.num_samples, 1),
                                 ("--num-clusters", self.num_clusters, 1), ("--top-k", self.top_k, 0),
                                 ("--plot-rows", self.plot_rows, 1), ("batch_rows", self.batch_rows, 1),
                                 ("max_interaction_values", self.max_interaction_values, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise MljobsError(f"{name} must be an integer >= {low}, got {value!r}")
        if not (self.additivity_tol > 0):
            raise MljobsError(f"additivity_tol must be > 0, got {self.additivity_tol}")
        if self.interactions and self.method != "tree":
            raise MljobsError("--interactions needs --method tree (exact SHAP interaction values)")
        self.explain_ids = [str(i) for i in (self.explain_ids or [])]
        if self.baseline is not None and self.method != "kernel":
            raise MljobsError("--baseline is a Kernel SHAP option: add --method kernel")
        if isinstance(self.baseline, (str, Path)):
            if not Path(self.baseline).is_file():
                raise InputError(f"--baseline {self.baseline}: no such file (CSV with a header, or JSON rows)")
        elif self.baseline is not None and not (isinstance(self.baseline, list) and self.baseline):
            raise MljobsError("baseline must be a non-empty list of rows, or a CSV/JSON file")

    @property
    def method_key(self) -> str:
        return METHOD_KEYS[self.method]

    @property
    def grouping_columns(self) -> list[str]:
        """Every column named in --group-by, once, in order."""
        out: list[str] = []
        for g in self.group_by:
            for c in g.split(","):
                if c not in out:
                    out.append(c)
        return out


def baseline_rows(baseline: Any, features: list[str]) -> list[list[float]]:
    """Baseline rows in model feature order, from config rows or a CSV/JSON file.

    Rows are lists in feature order or mappings {feature: value}; null/missing is NaN.
    """
    if isinstance(baseline, (str, Path)):
        path = Path(baseline)
        if path.suffix.lower() == ".json":
            try:
                rows = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise InputError(f"--baseline {path}: not valid JSON ({exc})") from None
        else:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
    else:
        rows = baseline
    if not isinstance(rows, list) or not rows:
        raise InputError("the baseline has no rows")
    out = []
    for i, row in enumerate(rows):
        if isinstance(row, dict):
            missing = [f for f in features if f not in row]
            if missing:
                raise InputError(f"baseline row {i} lacks the model's features {missing}")
            values = [row[f] for f in features]
        elif isinstance(row, (list, tuple)):
            if len(row) != len(features):
                raise InputError(f"baseline row {i} has {len(row)} values; the model has {len(features)} "
                                 f"features ({', '.join(features)})")
            values = list(row)
        else:
            raise InputError(f"baseline row {i} is neither a list nor a mapping")
        try:
            out.append([float("nan") if v is None or v == "" else float(v) for v in values])
        except (TypeError, ValueError) as exc:
            raise InputError(f"baseline row {i}: {exc}") from None
    return out
