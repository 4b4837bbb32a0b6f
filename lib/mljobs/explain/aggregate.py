"""Global and per-group SHAP aggregates in Spark SQL (one pass over ``shap_local``).

Aggregates follow SageMaker Clarify's ``agg_method`` definitions, over the rows of the
scope: ``mean_abs`` = mean(|phi|), ``median`` = median(phi) (signed, as Clarify), and
``mean_sq`` = mean(phi^2) (no square root, as Clarify). ``mean`` (signed) is added for
reference. All of them are computed for every scope; ``agg_method`` picks the value
reported in analysis.json and the ``rank`` order (by its absolute value).

The median is exact by default: Spark SQL's ``percentile(phi, 0.5)``, which interpolates
between the two middle values like ``numpy.median``; it keeps a count per distinct
value and group, so for very large tables ``median: approx`` switches to
``percentile_approx(phi, 0.5, 10000)`` (rank error at most rows/10000, and an actual
value of the data rather than an interpolation).
"""
from __future__ import annotations

import uuid

from pyspark.sql import DataFrame

APPROX_ACCURACY = 10000
GLOBAL = "(all)"
AGG_COLUMNS = ("mean_abs", "median", "mean_sq", "mean")


def _long(local: DataFrame, features: list[str], group_cols: list[str]) -> DataFrame:
    """(group cols..., feature, value): one row per row and feature."""
    from pyspark.sql import functions as F

    pairs = F.array(*[F.struct(F.lit(f).alias("feature"), F.col(f"`shap_{f}`").alias("value")) for f in features])
    # explode + field access rather than inline(): the same rows, and the RAPIDS
    # Accelerator runs explode on the GPU but not inline (GPU readiness, mljobs.gpu).
    keep = [F.col(f"`{c}`") for c in group_cols]
    return (local.select(*keep, F.explode(pairs).alias("_pair"))
                 .select(*keep, F.col("_pair.feature").alias("feature"), F.col("_pair.value").alias("value")))


def global_shap(local: DataFrame, features: list[str], groupings: list[str] | None = None,
                agg_method: str = "mean_abs", median: str = "exact") -> DataFrame:
    """Aggregates per feature over all rows (``group_by`` = '(all)') and per group of each
    grouping (``group_by`` = 'Year' or 'Year,Month', ``group_value`` its values joined by ',').

    Columns: group_by, group_value (NULL for all rows), feature, rows, mean_abs, median,
    mean_sq, mean, rank (1 = most important by ``agg_method``).
    """
    groupings = list(dict.fromkeys(groupings or []))
    sets = [g.split(",") for g in groupings]
    cols: list[str] = list(dict.fromkeys(c for s in sets for c in s))
    spark = local.sparkSession
    view = f"_mljobs_shap_long_{uuid.uuid4().hex[:12]}"
    _long(local, features, cols).createOrReplaceTempView(view)
    med = ("percentile(value, 0.5)" if median == "exact"
           else f"percentile_approx(value, 0.5, {APPROX_ACCURACY})")
    q = lambda c: f"`{c}`"  # noqa: E731
    grouping_sets = ", ".join(["(feature)"] + [f"(feature, {', '.join(q(c) for c in s)})" for s in sets])
    if sets:
        which = " ".join(
            "WHEN " + " AND ".join(f"grouping({q(c)}) = {0 if c in s else 1}" for c in cols) + f" THEN '{g}'"
            for g, s in zip(groupings, sets))
        group_by = f"CASE {which} ELSE '{GLOBAL}' END"
        value = "CASE " + " ".join(
            "WHEN " + " AND ".join(f"grouping({q(c)}) = {0 if c in s else 1}" for c in cols)
            + " THEN concat_ws(',', " + ", ".join(f"coalesce(cast({q(c)} AS string), 'NULL')" for c in s) + ")"
            for s in sets) + " END"
        by = f"GROUP BY feature, {', '.join(q(c) for c in cols)} GROUPING SETS ({grouping_sets})"
    else:
        group_by, value, by = f"'{GLOBAL}'", "CAST(NULL AS string)", "GROUP BY feature"
    agg = spark.sql(f"""
        SELECT {group_by} AS group_by, {value} AS group_value, feature,
               count(value) AS rows, avg(abs(value)) AS mean_abs, {med} AS median,
               avg(value * value) AS mean_sq, avg(value) AS mean
        FROM {view} {by}""")
    agg.createOrReplaceTempView(view + "_agg")
    out = spark.sql(f"""
        SELECT group_by, group_value, feature, rows, mean_abs, CAST(median AS double) AS median, mean_sq, mean,
               CAST(row_number() OVER (PARTITION BY group_by, group_value
                                       ORDER BY abs({agg_method}) DESC, feature) AS int) AS rank
        FROM {view}_agg""")
    # The plan is analysed: the views' names are no longer needed, so they do not pile up in the
    # session (a notebook's SHOW TABLES listed two per explain run).
    spark.catalog.dropTempView(view)
    spark.catalog.dropTempView(view + "_agg")
    return out
