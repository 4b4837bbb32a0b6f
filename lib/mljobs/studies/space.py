"""Search spaces: parameters parsed from YAML, validated, sampled through Optuna.

A parameter is one of::

    max_depth:        {type: int, low: 5, high: 15}                 # optional step, log
    learning_rate:    {type: float, low: 0.01, high: 0.3, log: true}
    grow_policy:      {type: categorical, values: [depthwise, lossguide]}
    tree_method:      hist                                           # a fixed value

A job gives its own names' rules (which are integers, which bounds hold) through ``parse_param``'s
``int_params`` and ``check`` (called with name, low, high for ranges and fixed numbers).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from mljobs.errors import MljobsError


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # int | float | categorical | fixed
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    values: tuple = ()
    grid_points: int = 3

    def suggest(self, trial) -> Any:
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.values))
        return self.values[0]

    def grid(self) -> list:
        """Values of this parameter in a grid search."""
        if self.kind == "categorical":
            return list(self.values)
        if self.kind == "int":
            step = int(self.step or 1)
            full = list(range(int(self.low), int(self.high) + 1, step))
            if self.step or len(full) <= self.grid_points:
                return full
            return sorted({int(round(v)) for v in _spaced(self.low, self.high, self.grid_points, self.log)})
        if self.step:
            n = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
            return [round(self.low + i * self.step, 12) for i in range(n)]
        return [round(v, 12) for v in _spaced(self.low, self.high, self.grid_points, self.log)]

    @property
    def sql_type(self) -> str:
        if self.kind == "int":
            return "bigint"
        if self.kind == "float":
            return "double"
        vals = self.values
        if vals and all(isinstance(v, bool) for v in vals):
            return "boolean"
        if vals and all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
            return "bigint"
        if vals and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            return "double"
        return "string"


def _spaced(low: float, high: float, n: int, log: bool) -> list[float]:
    if n <= 1:
        return [low]
    if log:
        a, b = math.log(low), math.log(high)
        return [math.exp(a + (b - a) * i / (n - 1)) for i in range(n)]
    return [low + (high - low) * i / (n - 1) for i in range(n)]


@dataclass(frozen=True)
class SearchSpace:
    family: str
    params: tuple[Param, ...]

    @property
    def tuned(self) -> list[Param]:
        return [p for p in self.params if p.kind != "fixed"]

    def fixed(self) -> dict[str, Any]:
        return {p.name: p.values[0] for p in self.params if p.kind == "fixed"}

    def suggest(self, trial) -> dict[str, Any]:
        return {p.name: p.suggest(trial) for p in self.params}

    def grid(self) -> dict[str, list]:
        return {p.name: p.grid() for p in self.tuned}

    def grid_size(self) -> int:
        n = 1
        for values in self.grid().values():
            n *= len(values)
        return n

    def names(self) -> list[str]:
        return [p.name for p in self.params]


def parse_param(name: str, body: Any, int_params=frozenset(), check: Callable | None = None) -> Param:
    """One parameter of a YAML search space."""
    check = check or (lambda *_: None)
    where = f"search space: {name}"
    if not name.isidentifier():
        raise MljobsError(f"{where}: not a valid parameter name")
    if not isinstance(body, dict):
        return _check_fixed(name, Param(name, "fixed", values=(body,)), check)
    kind = str(body.get("type", "")).lower()
    unknown = set(body) - {"type", "low", "high", "log", "step", "values", "grid_points"}
    if unknown:
        raise MljobsError(f"{where}: unknown keys {sorted(unknown)}")
    if kind in ("categorical", "choice"):
        values = body.get("values")
        if not isinstance(values, list) or not values:
            raise MljobsError(f"{where}: categorical needs a non-empty list 'values'")
        if len(set(map(repr, values))) != len(values):
            raise MljobsError(f"{where}: 'values' has duplicates")
        for v in values:
            _check_fixed(name, Param(name, "fixed", values=(v,)), check)
        return Param(name, "categorical", values=tuple(values))
    if kind not in ("int", "float"):
        raise MljobsError(f"{where}: type must be int, float or categorical (got {body.get('type')!r})")
    try:
        low, high = float(body["low"]), float(body["high"])
    except KeyError as exc:
        raise MljobsError(f"{where}: missing {exc.args[0]!r}") from None
    except (TypeError, ValueError):
        raise MljobsError(f"{where}: low and high must be numbers") from None
    if math.isnan(low) or math.isnan(high):
        raise MljobsError(f"{where}: NaN bounds")
    if low > high:
        raise MljobsError(f"{where}: low ({body['low']}) > high ({body['high']})")
    log = bool(body.get("log", False))
    step = body.get("step")
    if step is not None:
        step = float(step)
        if step <= 0:
            raise MljobsError(f"{where}: step must be > 0")
        if log:
            raise MljobsError(f"{where}: step and log cannot be combined (Optuna)")
    if log and low <= 0:
        raise MljobsError(f"{where}: a log-scale range needs low > 0")
    if kind == "int" and (low != int(low) or high != int(high)):
        raise MljobsError(f"{where}: int bounds must be integers")
    if name in int_params and kind != "int":
        raise MljobsError(f"{where}: must be of type int")
    grid_points = int(body.get("grid_points", 3))
    if grid_points < 1:
        raise MljobsError(f"{where}: grid_points must be >= 1")
    p = Param(name, kind, low=low, high=high, log=log, step=step, grid_points=grid_points)
    check(name, low, high)
    return p




def _check_fixed(name: str, p: Param, check) -> Param:
    v = p.values[0]
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        check(name, float(v), float(v))
    elif v is None or isinstance(v, (list, dict)):
        raise MljobsError(f"search space: {name}: a fixed value must be a number, string or boolean")
    return p
