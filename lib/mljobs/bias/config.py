"""Options of the bias job (one dataclass, each default on its field); validated once, when the
config is built, before Spark starts."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mljobs.config import JobConfig, parse_table_name, validate_identifier
from mljobs.errors import MljobsError
from mljobs.models.artifact import check_model_location
from mljobs.uris import output_location

PRE = ("CI", "DPL", "KL", "JS", "LP", "TVD", "KS", "CDDL")
POST = ("DPPL", "DI", "DCA", "DCR", "RD", "SD", "DAR", "DRR", "AD", "CDDPL", "TE", "FT", "GE")
NOT_IN_ALL = ("FT",)  # the flip test (a kNN pass per facet value): computed only when named in --methods
NEEDS_GROUP = ("CDDL", "CDDPL")
STAGES = ("pre", "post", "both")


def _list(value) -> list[str]:
    """'a,b', ['a', 'b'] or ['a,b'] -> ['a', 'b'] (values kept as text)."""
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    return [p.strip() for v in items for p in str(v).split(",") if p.strip()]


def _finite(value, flag: str) -> None:
    if value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise MljobsError(f"{flag} must be a finite number, got {value!r}")


@dataclass
class BiasConfig(JobConfig):
    """Options of one bias run (the flags of ``jobs/bias.py``; conf/bias.yaml may set any)."""

    table: str
    label: str
    facet: str
    label_values: list[str] = field(default_factory=list)  # positive outcome: label in these values ...
    label_threshold: float | None = None  # ... or label > this; neither: a numeric label's 1 is positive
    facet_values: list[str] = field(default_factory=list)  # sensitive group: facet in these values ...
    facet_threshold: float | None = None  # ... or facet > this; neither: each value against the rest
    group_by: str | None = None  # the subgroups of CDDL and CDDPL
    model: str | None = None  # predicted label: probability > 0.5 of this tune model ...
    predicted_label_col: str | None = None  # ... or this column, read like the label
    predicted_label_values: list[str] = field(default_factory=list)  # default: --label-values
    predicted_label_threshold: float | None = None  # default: --label-threshold
    where: str | None = None
    methods: list[str] = field(default_factory=lambda: ["all"])
    stage: str | None = None  # pre, post or both; default: both with a predicted label, else pre
    output: str | None = None  # where analysis.json goes; default <results>/bias/<model study or table>
    out_db: str | None = None  # the database of bias_metrics; default: the database of --table
    max_facet_values: int = 50  # cap on the facet's distinct values when each is reported against the rest
    plots: bool = True  # the report image bias_<facet>.png next to analysis.json
    flip_test_sample: int = 10_000  # FT: rows of the sensitive group voted on (a seeded sample beyond)
    flip_test_features: list[str] = field(default_factory=list)  # FT's columns; default: the model's
    # features, else every numeric column but the facet, label and predicted label

    @classmethod
    def coerce(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Lists from 'a,b' (flags and YAML); metric names upper-cased; --no-plots."""
        values = dict(values)
        if values.pop("no_plots", False):
            values["plots"] = False
        for k in ("label_values", "facet_values", "predicted_label_values", "flip_test_features"):
            if k in values:
                values[k] = _list(values[k])
        if "methods" in values:
            values["methods"] = [m if m.lower() == "all" else m.upper() for m in _list(values["methods"])]
        return values

    def validate(self) -> None:
        parse_table_name(self.table)
        for c in (self.label, self.facet, self.group_by, self.predicted_label_col):
            if c is not None:
                validate_identifier(c, "column name")
        if self.out_db is not None:
            validate_identifier(self.out_db, "database name (--out-db)")
        for name, values, threshold in (("label", self.label_values, self.label_threshold),
                                        ("facet", self.facet_values, self.facet_threshold),
                                        ("predicted-label", self.predicted_label_values,
                                         self.predicted_label_threshold)):
            if values and threshold is not None:
                raise MljobsError(f"give --{name}-values or --{name}-threshold, not both")
            _finite(threshold, f"--{name}-threshold")
        if self.facet.lower() == self.label.lower():
            raise MljobsError("--facet and --label name the same column")
        if self.model and self.predicted_label_col:
            raise MljobsError("give --model or --predicted-label-col, not both")
        if self.model:
            check_model_location(self.model)
        if (self.predicted_label_values or self.predicted_label_threshold is not None) \
                and not self.predicted_label_col:
            raise MljobsError("--predicted-label-values/--predicted-label-threshold need --predicted-label-col")
        if self.where is not None and not str(self.where).strip():
            raise MljobsError("--where is empty")
        for key in ("max_facet_values", "flip_test_sample"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise MljobsError(f"{key} must be an integer >= 1, got {v!r}")
        for c in self.flip_test_features:
            validate_identifier(c, "column name (--flip-test-features)")
        output_location(self.output, "--output")
        self._validate_stage_and_methods()

    def _validate_stage_and_methods(self) -> None:
        if self.stage is not None and self.stage not in STAGES:
            raise MljobsError(f"--stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if self.stage in ("post", "both") and not self.predicts:
            raise MljobsError(f"--stage {self.stage} needs a predicted label: --model DIR or --predicted-label-col COL")
        methods = self.methods or ["all"]
        if "all" in methods and len(methods) > 1:
            raise MljobsError("--methods: 'all' or a list of metrics, not both")
        if methods != ["all"]:
            unknown = [m for m in methods if m not in PRE + POST]
            if unknown:
                raise MljobsError(f"--methods: unknown metrics {unknown}; valid: all, {', '.join(PRE + POST)}")
            off = [m for m in methods if not ((m in PRE and "pre" in self.stages) or (m in POST and "post" in self.stages))]
            if off:
                raise MljobsError(f"--methods {off} are not metrics of the stage(s) computed ({', '.join(self.stages)}; "
                                  "post-training metrics need --model or --predicted-label-col)")
            grouped = [m for m in methods if m in NEEDS_GROUP]
            if grouped and not self.group_by:
                raise MljobsError(f"--methods {grouped} need --group-by COL")

    @property
    def predicts(self) -> bool:
        return bool(self.model or self.predicted_label_col)

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages computed: ('pre',), ('post',) or ('pre', 'post')."""
        stage = self.stage or ("both" if self.predicts else "pre")
        return ("pre", "post") if stage == "both" else (stage,)

    def metrics_of(self, stage: str) -> list[str]:
        """The metrics computed in a stage, in Clarify's order (sorted by name); FT only when named."""
        names = PRE if stage == "pre" else POST
        if self.methods in ([], ["all"]):
            return sorted(m for m in names if m not in NOT_IN_ALL)
        return sorted(m for m in names if m in self.methods)

    @property
    def output_db(self) -> str:
        return self.out_db or parse_table_name(self.table)[0]
