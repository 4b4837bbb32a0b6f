"""``analysis.json``, the one file where SageMaker Clarify puts its analyses: SHAP
explanations (``explanations``, written by explain) and bias metrics
(``pre_training_bias_metrics`` / ``post_training_bias_metrics``, written by bias). Writing
one analysis keeps the others already in the file, as Clarify's merged output does.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

VERSION = "1.0"


def json_value(v) -> float | str | None:
    """A metric value for analysis.json: NaN as null, infinities as Clarify writes them."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, float) and math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return float(v)


def write_analysis(path: str | os.PathLike, doc: dict[str, Any]) -> Path:
    """Write atomically (temp file, then rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    tmp.replace(p)
    return p


def parse_analysis(text: str | None, where: str) -> dict[str, Any]:
    """An existing analysis.json's content ({} when there is none)."""
    if not text:
        return {}
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{where} is not valid JSON ({exc}); move it away or name another --output") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{where} is not a JSON object; move it away or name another --output")
    return doc


def existing_analysis(spark, out_dir: str) -> dict[str, Any]:
    """The analysis.json already in ``out_dir`` (local or a URI; {} when there is none): a
    broken one is an InputError before anything is replaced."""
    from mljobs import fs, uris
    from mljobs.errors import InputError

    where = str(uris.join(out_dir, "analysis.json"))
    try:
        return parse_analysis(fs.read_text(spark, where), where)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def merge_explanations(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``old`` with explain's new ``explanations`` and ``mljobs`` keys in place of its own: the
    bias sections stay; an earlier run's explanations (perhaps of another method) go."""
    out = {**old, "version": old.get("version", VERSION)}
    out["explanations"] = new.get("explanations", {})
    if "mljobs" in new:
        out["mljobs"] = new["mljobs"]
    return out


def merge_bias(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``old`` with the bias sections of ``new``: a section for the same label and positive
    outcome gains (or replaces) the new facets and keeps the others; any other key of ``old``
    (explain's ``explanations``) stays."""
    out = dict(old)
    out.setdefault("version", VERSION)
    for key, section in new.items():
        if key == "version":
            continue
        prev = out.get(key)
        same = isinstance(prev, dict) and all(
            prev.get(k) == section.get(k) for k in ("label", "label_value_or_threshold"))
        if same and isinstance(prev.get("facets"), dict):
            out[key] = {**prev, "facets": {**prev["facets"], **section["facets"]}}
        else:
            out[key] = section
    return out
