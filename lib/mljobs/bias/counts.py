"""The one grouped aggregation of the bias job: rows counted by facet key x positive label x
positive predicted label x subgroup, in Spark; only those counts reach the driver.

The facet key is the index of the matching --facet-values entry (-1: the rest), the facet
being above --facet-threshold (true/false), or the facet's own value (each value against
the rest). Rows whose label or predicted label is null are left out (and counted).
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, NumericType, StringType

from mljobs.bias.config import BiasConfig
from mljobs.bias.metrics import Counts
from mljobs.errors import InputError

MAX_CELLS = 200_000  # aggregated cells collected at most (facet values x 4 x subgroups)
KEY, Y, P, G, N = "_facet_key", "_y", "_yhat", "_group", "_n"


def column_of(df: DataFrame, name: str, flag: str, table: str) -> str:
    """The table's spelling of a column named in a flag; an error when it lacks it."""
    by_lower = {c.lower(): c for c in df.columns}
    if name.lower() not in by_lower:
        raise InputError(f"{flag} {name}: {table} has no such column (columns: {', '.join(df.columns)})")
    return by_lower[name.lower()]


def _typed_values(df: DataFrame, col: str, values: list[str], flag: str) -> list:
    """--*-values as the column's type: numbers for a numeric column, text otherwise."""
    dtype = df.schema[col].dataType
    if isinstance(dtype, BooleanType):
        return [v.strip().lower() in ("true", "1") for v in values]
    if isinstance(dtype, NumericType):
        try:
            return [float(v) for v in values]
        except ValueError:
            raise InputError(f"{flag} {values}: {col} is numeric ({dtype.simpleString()}); give numbers") from None
    return [str(v) for v in values]


def _cast(df: DataFrame, col: str) -> Column:
    dtype = df.schema[col].dataType
    c = F.col(f"`{col}`")
    if isinstance(dtype, NumericType):
        return c.cast("double")
    return c if isinstance(dtype, BooleanType) else c.cast(StringType())


def outcome(df: DataFrame, col: str, values: list[str], threshold: float | None, flag: str) -> Column:
    """Positive outcome: in the values, above the threshold, else (a numeric column) equal to 1."""
    numeric = isinstance(df.schema[col].dataType, NumericType)
    c = F.col(f"`{col}`")
    if values:
        return _cast(df, col).isin(_typed_values(df, col, values, flag + "-values"))
    if threshold is not None:
        if not numeric:
            raise InputError(f"{flag}-threshold needs a numeric column; {col} is {df.schema[col].dataType.simpleString()}")
        return c.cast("double") > F.lit(float(threshold))
    if not numeric:
        raise InputError(f"{flag} {col} is not numeric ({df.schema[col].dataType.simpleString()}): give {flag}-values "
                         f"(the positive outcomes) or {flag}-threshold")
    return c.cast("double") == F.lit(1.0)


def facet_key(df: DataFrame, col: str, cfg: BiasConfig) -> Column:
    if cfg.facet_values:
        values = _typed_values(df, col, cfg.facet_values, "--facet-values")
        c = _cast(df, col)
        key = F.lit(-1)
        for i in reversed(range(len(values))):
            key = F.when(c == F.lit(values[i]), F.lit(i)).otherwise(key)
        return key
    if cfg.facet_threshold is not None:
        if not isinstance(df.schema[col].dataType, NumericType):
            raise InputError(f"--facet-threshold needs a numeric facet; {col} is {df.schema[col].dataType.simpleString()}")
        return F.coalesce(F.col(f"`{col}`").cast("double") > F.lit(float(cfg.facet_threshold)), F.lit(False))
    return F.col(f"`{col}`")


@dataclass
class Aggregated:
    """The counts of one run: the cells, the maxima thresholds are reported with, rows left out."""

    cells: list[tuple]  # (facet key, y, yhat or None, group or None, rows)
    facet_max: float | None
    label_max: float | None
    dropped: int  # rows with a null label or predicted label


def aggregate(df: DataFrame, facet: str, label: Column, label_col: str, predicted: Column | None,
              group: str | None, cfg: BiasConfig) -> Aggregated:
    """One pass: counts per (facet key, y, yhat, group), the facet's and the label's maxima."""
    cols = [facet_key(df, facet, cfg).alias(KEY), label.alias(Y),
            (predicted if predicted is not None else F.lit(None).cast("boolean")).alias(P),
            (F.col(f"`{group}`") if group else F.lit(None)).alias(G),
            F.col(f"`{facet}`").alias("_facet"), F.col(f"`{label_col}`").alias("_label")]
    rows = df.select(*cols)
    kept = F.col(Y).isNotNull() & (F.col(P).isNotNull() if predicted is not None else F.lit(True))
    numeric_facet = isinstance(df.schema[facet].dataType, NumericType)
    numeric_label = isinstance(df.schema[label_col].dataType, NumericType)
    agg = (rows.groupBy(KEY, Y, P, G, kept.alias("_kept"))
           .agg(F.count(F.lit(1)).alias(N),
                F.max(F.col("_facet").cast("double") if numeric_facet else F.lit(None).cast("double")).alias("_fmax"),
                F.max(F.col("_label").cast("double") if numeric_label else F.lit(None).cast("double")).alias("_lmax")))
    got = agg.limit(MAX_CELLS + 1).collect()
    if len(got) > MAX_CELLS:
        raise InputError(f"more than {MAX_CELLS:,} (facet value, subgroup) cells: --facet {cfg.facet}"
                         f"{' / --group-by ' + cfg.group_by if cfg.group_by else ''} has too many distinct values")
    cells = [(r[KEY], bool(r[Y]), None if r[P] is None else bool(r[P]), r[G], int(r[N])) for r in got if r["_kept"]]
    fmax = [r["_fmax"] for r in got if r["_kept"] and r["_fmax"] is not None]
    lmax = [r["_lmax"] for r in got if r["_kept"] and r["_lmax"] is not None]
    return Aggregated(cells, max(fmax) if fmax else None, max(lmax) if lmax else None,
                      sum(int(r[N]) for r in got if not r["_kept"]))


def facet_entries(agg: Aggregated, cfg: BiasConfig) -> list[tuple[str, Counts]]:
    """(value_or_threshold, counts with the sensitive flag) per reported facet value, as Clarify
    names them: the values joined by ',', the interval '(threshold, max]', or each value."""
    def counts(sensitive) -> Counts:
        return Counts((sensitive(k), y, p, g, n) for k, y, p, g, n in agg.cells)

    if cfg.facet_values:
        present = {k for k, *_ in agg.cells}
        absent = [v for i, v in enumerate(cfg.facet_values) if i not in present]
        if absent:
            raise InputError(f"--facet-values {absent}: no selected row has --facet {cfg.facet} equal to it")
        return [(",".join(cfg.facet_values), counts(lambda k: k >= 0))]
    if cfg.facet_threshold is not None:
        if not any(k for k, *_ in agg.cells):
            raise InputError(f"--facet-threshold {cfg.facet_threshold}: no selected row has {cfg.facet} above it")
        return [(interval(cfg.facet_threshold, agg.facet_max), counts(lambda k: bool(k)))]
    values = sorted({k for k, *_ in agg.cells if k is not None})
    if len(values) > cfg.max_facet_values:
        raise InputError(f"--facet {cfg.facet} has {len(values):,} distinct values, more than the "
                         f"{cfg.max_facet_values} reported one by one: give --facet-values or --facet-threshold")
    return [(str(v), counts(lambda k, v=v: k == v)) for v in values]


def sensitive_predicates(agg: Aggregated, cfg: BiasConfig) -> list:
    """Per entry of ``facet_entries`` (same order): key column -> is the row in the group."""
    if cfg.facet_values:
        return [lambda key: key >= 0]
    if cfg.facet_threshold is not None:
        return [lambda key: key]
    values = sorted({k for k, *_ in agg.cells if k is not None})
    return [lambda key, v=v: key == F.lit(v) for v in values]


def interval(threshold: float, top: float | None) -> str:
    """Clarify's name of a threshold: the interval '(threshold, max]' of the positive side."""
    return f"({float(threshold)}, {float(top) if top is not None else float(threshold)}]"
