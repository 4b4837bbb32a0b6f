"""The bias metrics of a run in Clarify's analysis.json layout and as rows of <db>.bias_metrics."""
from __future__ import annotations

from dataclasses import dataclass

from mljobs import clarify
from mljobs.bias.config import BiasConfig
from mljobs.bias.metrics import DESCRIPTIONS, Counts, compute

SECTIONS = {"pre": "pre_training_bias_metrics", "post": "post_training_bias_metrics"}
STAGE_NAMES = {"pre": "pre_training", "post": "post_training"}


@dataclass(frozen=True)
class Metric:
    stage: str  # pre / post
    value_or_threshold: str
    name: str
    value: float | None
    error: str | None


def compute_all(cfg: BiasConfig, entries: list[tuple[str, Counts]], ft: dict | None = None) -> list[Metric]:
    """Every metric of every stage for every reported facet value (FT's values: ``ft``, by value)."""
    out = []
    for stage in cfg.stages:
        for value, counts in entries:
            for name in cfg.metrics_of(stage):
                if name == "FT":
                    v, err = ft[value].value, ft[value].error and f"FT: {ft[value].error}"
                else:
                    v, err = compute(name, counts, grouped=bool(cfg.group_by))
                out.append(Metric(stage, value, name, v, err))
    return out


def sections(cfg: BiasConfig, label: str, label_value: str, facet: str, results: list[Metric]) -> dict:
    """{pre_training_bias_metrics: ..., post_training_bias_metrics: ...} as Clarify writes them."""
    doc = {}
    for stage in cfg.stages:
        per_value: dict[str, list] = {}
        for m in results:
            if m.stage != stage:
                continue
            item = {"name": m.name, "description": DESCRIPTIONS[m.name], "value": clarify.json_value(m.value)}
            if m.error is not None:
                item["error"] = m.error
            per_value.setdefault(m.value_or_threshold, []).append(item)
        doc[SECTIONS[stage]] = {
            "label": label, "label_value_or_threshold": label_value,
            "facets": {facet: [{"value_or_threshold": v, "metrics": ms} for v, ms in per_value.items()]}}
    return doc


def table_rows(run_id: str, facet: str, results: list[Metric]) -> list[tuple]:
    """Rows of bias_metrics: run_id, stage, facet, value_or_threshold, metric, description, value, error."""
    return [(run_id, STAGE_NAMES[m.stage], facet, m.value_or_threshold, m.name, DESCRIPTIONS[m.name],
             m.value, m.error) for m in results]


TABLE_SCHEMA = ("run_id string, stage string, facet string, value_or_threshold string, metric string, "
                "description string, value double, error string")


def group_counts(entries: list[tuple[str, Counts]], predicted: bool) -> list[dict]:
    """The counts behind the metrics, per facet value and subgroup (for the summary)."""
    out = []
    for value, c in entries:
        for g in [...] + c.groups():
            row = {"value_or_threshold": value, **({} if g is ... else {"group": g})}
            for side, s in (("facet", True), ("rest", False)):
                row[f"{side}_rows"] = c.n(s=s, g=g)
                row[f"{side}_label_positive"] = c.n(s=s, y=True, g=g)
                if predicted:
                    row[f"{side}_predicted_positive"] = c.n(s=s, p=True, g=g)
                    row[f"{side}_true_positive"] = c.n(s=s, y=True, p=True, g=g)
            out.append(row)
    return out
