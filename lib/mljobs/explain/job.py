"""The explain job body: model + table -> shap_local, shap_global, shap_interactions,
analysis.json and plots.

Flow (the rows are read once for SHAP; nothing is collected on the driver but samples
and aggregates):

1. ``load_model``, ``select_rows``, ``check_selection``: checks that need no Spark job: the model directory, the table, the feature columns
   and their types, --id-col / --group-by columns, the --where clause (parsed and
   analysed by Spark, so a bad clause fails here with Spark's message), the
   interactions budget. Then one cheap job: is the selection empty, and do the
   --explain-ids exist.
2. ``local_shap``, ``stage_local``: SHAP values per row in ``mapInPandas`` (``tree_shap`` exact, or ``kernel``), written
   once as the staged ``shap_local``. Its additivity errors are checked in SQL: a worst
   error above the tolerance fails the run before any table is replaced.
3. ``stage_global``, ``stage_interactions``, ``write_analysis``, ``write_plots``:
   ``shap_global`` (``aggregate``) and ``shap_interactions`` (sampled rows of the staged
   local table) are staged; analysis.json and the plots are written from the staged
   tables; then all tables are swapped in together (``tables.commit``).
"""
from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType

from mljobs import fs, tables, uris
from mljobs.device import device_for
from mljobs.emr import EmrStep
from mljobs.errors import BadDataError, InputError, MljobsError
from mljobs.clarify import existing_analysis, merge_explanations
from mljobs.explain import aggregate, clarify, kernel, tree_shap
from mljobs.explain.config import ExplainConfig, baseline_rows
from mljobs.explain.worker import input_columns
from mljobs.models.artifact import ModelArtifact, feature_columns, load_artifact
from mljobs.models.scoring import check_feature_columns
from mljobs.session import ARROW_BATCH, StageProgress, arrow_batch, results_root

LOCAL, GLOBAL, INTERACTIONS = "shap_local", "shap_global", "shap_interactions"
TABLES = (LOCAL, GLOBAL, INTERACTIONS)
DEFAULT_ID = "row_id"
# Rows per batch for interactions: each row yields features^2 output rows.
INTERACTION_BATCH_VALUES = 100_000
_FEATURE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_columns(df: DataFrame, art: ModelArtifact, cfg: ExplainConfig) -> None:
    """Every column the run needs exists, with a type the model can take; errors name them."""
    check_feature_columns(df, art)
    by_lower = {c.lower(): c for c in df.columns}
    for what, cols in (("--id-col", [cfg.id_col] if cfg.id_col else []), ("--group-by", cfg.grouping_columns)):
        absent = [c for c in cols if c.lower() not in by_lower]
        if absent:
            raise InputError(f"{what}: the table has no column {', '.join(absent)}")
    reserved = set(tree_shap.OUT_COLUMNS)
    clash = [c for c in ([cfg.id_col] if cfg.id_col else []) + cfg.grouping_columns
             if c in reserved or c.startswith(("shap_", "value_"))]
    if clash:
        raise MljobsError(f"column names {clash} clash with output columns ({', '.join(sorted(reserved))}, shap_*, value_*)")


def select_rows(spark: SparkSession, cfg: ExplainConfig, art: ModelArtifact) -> tuple[DataFrame, str, list[str]]:
    """The rows to explain: (frame of passthrough + value_<f> columns, id column, passthrough)."""
    df = tables.read_table(spark, cfg.table, cfg.where)
    check_columns(df, art, cfg)
    if cfg.sample is not None and cfg.sample < 1.0:
        df = df.sample(withReplacement=False, fraction=cfg.sample, seed=cfg.seed)
    sel, id_col, passthrough = model_inputs(df, art, cfg.id_col, cfg.grouping_columns)
    # SHAP costs far more per row than reading it, and a filter often keeps the rows of a
    # few files only (one month of a table partitioned by month): spread the rows evenly
    # over at least every core, at the price of one shuffle of the feature columns.
    parts = max(sel.rdd.getNumPartitions(), sel.sparkSession.sparkContext.defaultParallelism)
    return sel.repartition(parts), id_col, passthrough


def model_inputs(df: DataFrame, art: ModelArtifact, id_col: str | None,
                 grouping_columns: list[str]) -> tuple[DataFrame, str, list[str]]:
    """(id, grouping columns, value_<f> doubles in model order), the id column and the passthrough
    columns. Without an id column, a generated ``row_id``: unique within the run, stable across
    runs on the same files and partitioning."""
    by_lower = {c.lower(): c for c in df.columns}
    if id_col:
        id_col = by_lower[id_col.lower()]
        id_expr = F.col(f"`{id_col}`")
    else:
        id_col, id_expr = DEFAULT_ID, F.monotonically_increasing_id()
    passthrough = [id_col] + [by_lower[c.lower()] for c in grouping_columns if by_lower[c.lower()] != id_col]
    cols = [id_expr.alias(id_col)] + [F.col(f"`{c}`") for c in passthrough[1:]]
    cols += [v.alias(n) for v, n in zip(feature_columns(df, art), input_columns(art.features))]
    return df.select(*cols), id_col, passthrough


def check_selection(sel: DataFrame, id_col: str, explain_ids: list[str]) -> None:
    """One cheap job before the heavy one: an empty selection or unknown ids are errors."""
    if not explain_ids:
        if sel.isEmpty():
            raise InputError("the selection is empty: no rows to explain (check --where / --sample)")
        return
    found = {r[0] for r in sel.where(F.col(f"`{id_col}`").cast("string").isin(explain_ids))
             .select(F.col(f"`{id_col}`").cast("string")).distinct().collect()}
    if not found and sel.isEmpty():
        raise InputError("the selection is empty: no rows to explain (check --where / --sample)")
    unknown = [i for i in explain_ids if i not in found]
    if unknown:
        raise InputError(f"--explain-ids: no row with {id_col} = {', '.join(unknown)} in the selection")


def interaction_budget(cfg: ExplainConfig, n_features: int) -> None:
    values = cfg.interactions * n_features * n_features
    if cfg.interactions and values > cfg.max_interaction_values:
        most = cfg.max_interaction_values // (n_features * n_features)
        raise MljobsError(
            f"--interactions {cfg.interactions} asks for {values:,} interaction values "
            f"({cfg.interactions:,} rows x {n_features}^2 features), over the budget of "
            f"{cfg.max_interaction_values:,} (max_interaction_values): use --interactions {most} or less, "
            "or raise max_interaction_values in conf/explain.yaml")


def _sample(df: DataFrame, id_col: str, n: int, seed: int) -> DataFrame:
    """n rows chosen by a seeded hash of the id: the same rows on every run, no full collect."""
    return df.orderBy(F.xxhash64(F.col(f"`{id_col}`"), F.lit(seed)), F.col(f"`{id_col}`")).limit(n)


def _empty_interactions(spark: SparkSession, id_type) -> DataFrame:
    from pyspark.sql.types import DoubleType, StructField, StructType

    schema = StructType([StructField(DEFAULT_ID, id_type), StructField("feature_a", StringType()),
                         StructField("feature_b", StringType()), StructField("value", DoubleType())])
    return spark.createDataFrame([], schema)


def rows_with_ids(df: DataFrame, id_col: str, ids: list[str]) -> DataFrame:
    """The rows whose id, as a string, is one of ``ids``."""
    return df.where(F.col(f"`{id_col}`").cast("string").isin(ids))


def local_totals(local: DataFrame) -> DataFrame:
    """One row over shap_local: rows n, worst additivity error, mean base value and prediction."""
    return local.agg(F.count(F.lit(1)).alias("n"), F.max("additivity_error").alias("err"),
                     F.avg("base_value").alias("base"), F.avg("prediction").alias("pred"))


def interaction_strength(inter: DataFrame) -> DataFrame:
    """mean(|interaction value|) per ordered feature pair, for the interactions plot."""
    return inter.groupBy("feature_a", "feature_b").agg(F.avg(F.abs("value")).alias("mean_abs"))


class Model(NamedTuple):
    """The model as the SHAP tasks take it."""

    art: ModelArtifact
    model_bytes: bytes
    objective: str
    trees: int


@dataclass(frozen=True)
class Explanation:
    """What the steps of one run share: the session, the options, the model and the rows' layout."""

    spark: SparkSession
    cfg: ExplainConfig
    model: Model
    id_col: str
    passthrough: tuple
    device: str
    nthread: int
    props: dict
    progress: Any

    @property
    def art(self) -> ModelArtifact:
        return self.model.art

    @property
    def features(self) -> list[str]:
        return list(self.model.art.features)


class LocalStats(NamedTuple):
    rows: int
    max_err: float
    base_value: float
    mean_prediction: float
    shap_s: float


def output_dirs(spark: SparkSession, cfg: ExplainConfig, art: ModelArtifact):
    """Where analysis.json goes (--output, else <results>/explain/<study>), checked with --plots."""
    out_dir = cfg.output or uris.join(results_root(spark), "explain", art.study)
    fs.check_location(spark, out_dir, "output directory")
    fs.check_location(spark, cfg.plots_dir, "plot directory")
    return out_dir


def load_model(cfg: ExplainConfig, art: ModelArtifact) -> Model:
    """The model checked for what we can explain, and the interactions within their budget."""
    bad_names = [f for f in art.features if not _FEATURE_NAME.match(f)]
    if bad_names:
        raise InputError(f"model features {bad_names} are not plain column names")
    model_bytes = art.model_bytes()
    facts = tree_shap.check_booster(art.booster(nthread=1), art.features)
    interaction_budget(cfg, len(art.features))
    return Model(art, model_bytes, facts["objective"] or art.objective, facts["trees"])


def explanation(spark: SparkSession, cfg: ExplainConfig, model: Model, id_col: str, passthrough: list[str],
                progress) -> Explanation:
    """This run's shared facts: the selection's layout, the device and the table properties."""
    art = model.art
    props = {"mljobs.model": art.where(), "mljobs.study": art.study, "mljobs.run_id": uuid.uuid4().hex[:12],
             "mljobs.method": cfg.method, "mljobs.table": cfg.table, "mljobs.features": ",".join(art.features)}
    return Explanation(spark, cfg, model, id_col, tuple(passthrough), device_for(spark),
                       int(spark.conf.get("spark.task.cpus", "1")), props, progress)


def local_shap(ex: Explanation, sel: DataFrame, diagnostics: bool = False) -> tuple[DataFrame, str | None]:
    """Per-row SHAP values (lazy) and, for Kernel SHAP, what the background is."""
    cfg, features, passthrough = ex.cfg, ex.features, list(ex.passthrough)
    if cfg.method == "tree":
        ex.progress(f"exact TreeSHAP (xgboost pred_contribs, {ex.device}) on {cfg.table}; model {ex.art.study} "
                    f"({ex.model.trees} trees, {len(features)} features); batches of {cfg.batch_rows:,} rows")
        return tree_shap.contributions(sel, features, passthrough, ex.model.model_bytes, ex.model.objective,
                                       ex.device, ex.nthread, diagnostics=diagnostics), None
    if cfg.baseline is not None:
        bg = np.asarray(baseline_rows(cfg.baseline, features), dtype=np.float64)
        weights, bg_source = np.ones(len(bg)), f"{len(bg)} baseline rows"
    else:
        bg, weights = kernel.kmeans_background(sel, features, cfg.num_clusters, cfg.seed)
        bg_source = f"{len(bg)} k-means centres"
    ex.progress(f"Kernel SHAP on {cfg.table} (background: {bg_source}, num_samples {cfg.num_samples}, "
                f"use_logit {cfg.use_logit}); model {ex.art.study} ({ex.model.trees} trees)")
    return kernel.contributions(sel, features, passthrough, ex.model.model_bytes, bg, weights, cfg.num_samples,
                                cfg.use_logit, cfg.seed, ex.nthread), bg_source


def stage_local(ex: Explanation, local: DataFrame) -> tuple[DataFrame, LocalStats]:
    """Compute and stage shap_local (the one heavy job); fail when its values do not add up."""
    t_shap = time.monotonic()
    with StageProgress(ex.spark, ex.progress):
        local_name = tables.stage(ex.spark, ex.cfg.out_db, LOCAL, local, ex.props)
    shap_s = time.monotonic() - t_shap
    staged_local = ex.spark.table(local_name)
    st = local_totals(staged_local).first()
    rows = int(st["n"])
    if rows == 0:
        raise InputError("the selection is empty: no rows to explain (check --where / --sample)")
    stats = LocalStats(rows, float(st["err"]), float(st["base"]), float(st["pred"]), shap_s)
    ex.progress(f"explained {rows:,} rows in {shap_s:.1f}s ({rows / max(shap_s, 1e-9):,.0f} rows/s); "
                f"worst additivity error {stats.max_err:.2e}")
    if not stats.max_err <= ex.cfg.additivity_tol:
        raise BadDataError(f"SHAP values do not add up to the model output: worst relative error "
                           f"{stats.max_err:.3g} > {ex.cfg.additivity_tol:g} (see {LOCAL}.additivity_error); "
                           "no table was replaced")
    return staged_local, stats


def stage_global(ex: Explanation, staged_local: DataFrame):
    """Stage shap_global; returns it as pandas (a few rows per feature and group)."""
    cfg = ex.cfg
    glob = aggregate.global_shap(staged_local, ex.features, cfg.group_by, cfg.agg_method, cfg.median)
    return ex.spark.table(tables.stage(ex.spark, cfg.out_db, GLOBAL, glob, ex.props)).toPandas()


def stage_interactions(ex: Explanation, staged_local: DataFrame, rows: int, id_type):
    """Stage shap_interactions (empty without --interactions); returns (rows sampled, pair strengths)."""
    cfg, features, id_col = ex.cfg, ex.features, ex.id_col
    if not cfg.interactions:
        empty = _empty_interactions(ex.spark, id_type).withColumnRenamed(DEFAULT_ID, id_col)
        tables.stage(ex.spark, cfg.out_db, INTERACTIONS, empty, ex.props)
        return 0, None
    n = min(cfg.interactions, rows)
    if n < cfg.interactions:
        ex.progress(f"--interactions {cfg.interactions}: the selection has {rows:,} rows; using all of them")
    ex.progress(f"SHAP interaction values for {n:,} sampled rows ({n * len(features) ** 2:,} values)")
    ex.spark.conf.set(ARROW_BATCH, str(max(1, min(cfg.batch_rows, INTERACTION_BATCH_VALUES // len(features) ** 2))))
    rows_for = _sample(staged_local.select(id_col, *input_columns(features)), id_col, n, cfg.seed)
    inter = tree_shap.interactions(rows_for, features, id_col, ex.model.model_bytes, ex.device, ex.nthread)
    staged = tables.stage(ex.spark, cfg.out_db, INTERACTIONS, inter, ex.props)
    return n, interaction_strength(ex.spark.table(staged)).toPandas()


def global_values_of(global_pd, agg_method: str) -> dict[str, float]:
    """{feature: value of agg_method} over all rows, most important first."""
    overall = global_pd[global_pd["group_by"] == aggregate.GLOBAL].sort_values("rank")
    return {r.feature: float(getattr(r, agg_method)) for r in overall.itertuples()}


def analysis_extra(ex: Explanation, global_pd, rows: int, bg_source: str | None) -> dict:
    """The ``mljobs`` part of analysis.json: how the values were made, and the per-group values."""
    cfg, art = ex.cfg, ex.art
    groups = global_pd[global_pd["group_by"] != aggregate.GLOBAL]
    extra = {"method": cfg.method, "agg_method": cfg.agg_method, "median": cfg.median, "rows": rows,
             "model": art.where(), "study": art.study, "table": cfg.table,
             "where": cfg.where, "sample": cfg.sample, "output": "margin (log-odds)"
             if cfg.method == "tree" or cfg.use_logit else "prediction",
             "groups": {g: {v: dict(zip(d.sort_values("rank")["feature"], d.sort_values("rank")[cfg.agg_method]))
                            for v, d in gd.groupby("group_value")}
                        for g, gd in groups.groupby("group_by")}}
    if cfg.method == "kernel":
        extra.update({"num_samples": cfg.num_samples, "use_logit": cfg.use_logit, "baseline": bg_source})
    return extra


def write_analysis(ex: Explanation, out_dir, global_pd, stats: LocalStats, bg_source: str | None) -> str:
    """analysis.json (Clarify's layout) under out_dir, merged with the one there (the bias job's
    sections stay); returns its final location."""
    doc = clarify.analysis_json(ex.cfg.method_key, global_values_of(global_pd, ex.cfg.agg_method),
                                stats.base_value, analysis_extra(ex, global_pd, stats.rows, bg_source))
    doc = merge_explanations(existing_analysis(ex.spark, out_dir), doc)  # keeps the bias job's sections
    with fs.output_dir(ex.spark, out_dir) as out:
        written = clarify.write_analysis(out.local / "analysis.json", doc)
    return out.final(written)


def write_plots(ex: Explanation, out_dir, staged_local: DataFrame, global_pd, inter_pd) -> list[str]:
    """The PNGs (none with --no-plots) under --plots or out_dir; returns their final locations."""
    cfg, id_col = ex.cfg, ex.id_col
    if not cfg.plots:
        return []
    from mljobs.explain import plots

    plots_dir = cfg.plots_dir or out_dir
    ex.progress(f"plots under {plots_dir}")
    sample_pd = _sample(staged_local, id_col, cfg.plot_rows, cfg.seed).toPandas()
    ids_pd = rows_with_ids(staged_local, id_col, cfg.explain_ids).toPandas() if cfg.explain_ids else None
    with fs.output_dir(ex.spark, plots_dir) as pout:
        made = plots.make_plots(sample_pd, ex.features, global_pd, inter_pd, ids_pd, id_col, pout.local,
                                agg_method=cfg.agg_method, top_k=cfg.top_k,
                                max_groups=cfg.max_groups_plotted, study=ex.art.study)
    return [pout.final(x) for x in made]


def summary_of(ex: Explanation, stats: LocalStats, global_pd, inter_rows: int, done: list[str],
               analysis_path, plot_paths: list[str], t0: float) -> dict:
    cfg, art = ex.cfg, ex.art
    global_values = global_values_of(global_pd, cfg.agg_method)
    groups = global_pd[global_pd["group_by"] != aggregate.GLOBAL]
    return {
        "model": art.where(), "study": art.study, "table": cfg.table, "method": cfg.method,
        "device": ex.device if cfg.method == "tree" else "cpu", "agg_method": cfg.agg_method,
        "rows_explained": stats.rows, "rows_per_s": round(stats.rows / max(stats.shap_s, 1e-9), 1),
        "shap_seconds": round(stats.shap_s, 2),
        "base_value": stats.base_value, "mean_prediction": stats.mean_prediction,
        "max_additivity_error": stats.max_err, "additivity_tol": cfg.additivity_tol,
        "global_shap": global_values, "top_features": list(global_values)[:10],
        "groupings": cfg.group_by, "groups": int(groups[["group_by", "group_value"]].drop_duplicates().shape[0]),
        "interaction_rows": inter_rows, "tables": done, "analysis_json": str(analysis_path),
        "plots": plot_paths, "seconds": round(time.monotonic() - t0, 2),
    }


def run_explain(spark: SparkSession, cfg: ExplainConfig, progress=print, diagnostics: bool = False) -> dict:
    """Explain ``cfg.model`` on the rows of ``cfg.table``; returns the summary (without job/status)."""
    t0 = time.monotonic()
    art = load_artifact(cfg.model)
    out_dir = output_dirs(spark, cfg, art)
    model = load_model(cfg, art)
    sel, id_col, passthrough = select_rows(spark, cfg, art)
    check_selection(sel, id_col, cfg.explain_ids)
    ex = explanation(spark, cfg, model, id_col, passthrough, progress)
    try:
        with arrow_batch(spark, cfg.batch_rows):
            local, bg_source = local_shap(ex, sel, diagnostics)
            staged_local, stats = stage_local(ex, local)
            global_pd = stage_global(ex, staged_local)
            inter_rows, inter_pd = stage_interactions(ex, staged_local, stats.rows, sel.schema[id_col].dataType)
            analysis_path = write_analysis(ex, out_dir, global_pd, stats, bg_source)
            plot_paths = write_plots(ex, out_dir, staged_local, global_pd, inter_pd)
            done = tables.commit(spark, cfg.out_db, list(TABLES))
    except BaseException:
        tables.discard(spark, cfg.out_db, list(TABLES))  # the previous good tables stay in place
        raise
    return summary_of(ex, stats, global_pd, inter_rows, done, analysis_path, plot_paths, t0)


# ---- what the rest of the system knows about this job (see mljobs.registry)
NAME = "explain"
CONFIG = ExplainConfig
run = run_explain
EMR_STEP = EmrStep(needs=("table", "study"), label=lambda p: p.table,
                   args=lambda p: ["--model", p.model_dir(), "--table", p.table, *p.where_args()])
GPU_FALLBACKS: list = []  # none of its own (tests/test_gpu_readiness.py)
