"""What the searching jobs (tune, train-text) share around a study: its time limits as options,
the opened study, and the interruption that keeps completed trials."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mljobs.errors import MljobsError

SECONDS = ("max_runtime_per_trial", "time_budget")


class Interrupted(MljobsError):
    exit_code = 130


@dataclass
class OpenStudy:
    study: object
    storage: str
    n_before: int
    max_trials: int


def coerce_seconds(values: dict[str, Any]) -> dict[str, Any]:
    """'none' for no per-trial limit; whole seconds as floats (``values`` changed in place)."""
    limit = values.get("max_runtime_per_trial")
    if isinstance(limit, str) and limit.lower() in ("none", "null"):
        values["max_runtime_per_trial"] = None
    for key in SECONDS:
        if isinstance(values.get(key), int) and not isinstance(values[key], bool):
            values[key] = float(values[key])
    return values


def check_seconds(cfg) -> None:
    """Each time limit of ``cfg``: None or a positive number of seconds."""
    for name in SECONDS:
        v = getattr(cfg, name)
        if v is not None and (not isinstance(v, (int, float)) or math.isnan(v) or v <= 0):
            raise MljobsError(f"{name} must be a positive number of seconds, got {v!r}")
