"""``analysis.json`` in the layout SageMaker Clarify writes for SHAP explanations::

    {"version": "1.0",
     "explanations": {"<method>": {"label0": {"global_shap_values": {feature: value, ...},
                                              "expected_value": base}}}}

``<method>`` is ``kernel_shap`` for ``--method kernel`` (Clarify's own key) and
``tree_shap`` for exact TreeSHAP, so a reader never mistakes exact values for Kernel
SHAP estimates. The values are the global aggregate of ``agg_method``. Clarify has no
per-group explanations; ours go under a separate ``mljobs`` key (readers of Clarify's
layout ignore unknown keys), with the method, agg_method, rows and the groups.
"""
from __future__ import annotations

import math
from typing import Any

from mljobs.clarify import VERSION, write_analysis  # noqa: F401 - write_analysis: explain's writer

LABEL = "label0"  # Clarify's name for the (first) model output


def _num(v) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def analysis_json(method_key: str, global_values: dict[str, float], expected_value: float,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": VERSION,
        "explanations": {
            method_key: {
                LABEL: {
                    "global_shap_values": {k: _num(v) for k, v in global_values.items()},
                    "expected_value": _num(expected_value),
                }
            }
        },
    }
    if extra:
        doc["mljobs"] = extra
    return doc
