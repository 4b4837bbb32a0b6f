"""The explain job body: model + table -> shap_local, shap_global, shap_interactions,
analysis.json and plots.

Flow (the rows are read once for SHAP; nothing is collected on the driver but samples
and aggregates):

1. Checks that need no Spark job: the model directory, the table, the feature columns
   and their types, --id-col / --group-by columns, the --where clause (parsed and
   analysed by Spark, so a bad clause fails here with Spark's message), the
   interactions budget. Then one cheap job: is the selection empty, and do the
   --explain-ids exist.
2. SHAP values per row in ``mapInPandas`` (``tree_shap`` exact, or ``kernel``), written
   once as the staged ``shap_local``. Its additivity errors are checked in SQL: a worst
   error above the tolerance fails the run before any table is replaced.
3. ``shap_global`` (``aggregate``) and ``shap_interactions`` (sampled rows of the staged
   local table) are staged; analysis.json and the plots are written from the staged
   tables; then all tables are swapped in together (``tables.commit``).
"""
from __future__ import annotations

import re
import time
import uuid

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, NumericType, StringType

from mljobs.emr import EmrStep
from mljobs.config import parse_table_name
from mljobs.errors import BadDataError, InputError, MljobsError
from mljobs import tables
from mljobs.explain import aggregate, clarify, kernel, tree_shap
from mljobs.explain.config import ExplainConfig, baseline_rows
from mljobs.explain.worker import input_columns
from mljobs.models.artifact import ModelArtifact, feature_columns, load_artifact
from mljobs import fs
from mljobs.session import StageProgress, current_env, results_root
from mljobs.errors import error_text

LOCAL, GLOBAL, INTERACTIONS = "shap_local", "shap_global", "shap_interactions"
TABLES = (LOCAL, GLOBAL, INTERACTIONS)
DEFAULT_ID = "row_id"
ARROW_BATCH = "spark.sql.execution.arrow.maxRecordsPerBatch"
# Rows per batch for interactions: each row yields features^2 output rows.
INTERACTION_BATCH_VALUES = 100_000
_FEATURE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def device_for(spark: SparkSession) -> str:
    """cuda under the GPU environment (or when spark.mljobs.device says so), else cpu."""
    explicit = spark.conf.get("spark.mljobs.device", "") or ""
    if explicit:
        return explicit
    return "cuda" if current_env(spark.sparkContext.getConf()) == "emr-gpu" else "cpu"


def read_table(spark: SparkSession, table: str) -> DataFrame:
    db, name = parse_table_name(table)
    if not spark.catalog.tableExists(f"{db}.{name}"):
        raise InputError(f"table {db}.{name} does not exist")
    return spark.table(f"{db}.{name}")


def check_columns(df: DataFrame, art: ModelArtifact, cfg: ExplainConfig) -> None:
    """Every column the run needs exists, with a type the model can take; errors name them."""
    by_lower = {c.lower(): c for c in df.columns}
    missing = [f for f in art.features if f.lower() not in by_lower]
    if missing:
        raise InputError(f"the table lacks the model's feature columns {missing} "
                         f"(the model was trained on {', '.join(art.features)})")
    bad = []
    for f in art.features:
        dtype = df.schema[by_lower[f.lower()]].dataType
        ok = isinstance(dtype, (NumericType, BooleanType)) or (
            isinstance(dtype, StringType) and f in art.categorical_maps)
        if not ok:
            bad.append(f"{f} ({dtype.simpleString()})")
    if bad:
        raise InputError(f"feature columns of a type the model cannot take: {', '.join(bad)} "
                         "(numeric expected; strings only for features with categorical_maps)")
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
    df = read_table(spark, cfg.table)
    check_columns(df, art, cfg)
    by_lower = {c.lower(): c for c in df.columns}
    if cfg.where:
        try:
            df = df.where(cfg.where)
        except Exception as exc:  # ParseException / AnalysisException: Spark's message is the useful part
            raise InputError(f"--where {cfg.where!r} is not valid SQL for {cfg.table}: {error_text(exc)}") from None
    if cfg.sample is not None and cfg.sample < 1.0:
        df = df.sample(withReplacement=False, fraction=cfg.sample, seed=cfg.seed)
    if cfg.id_col:
        id_col = by_lower[cfg.id_col.lower()]
        id_expr = F.col(f"`{id_col}`")
    else:
        # Unique within the run; stable across runs on the same files and partitioning.
        id_col, id_expr = DEFAULT_ID, F.monotonically_increasing_id()
    passthrough = [id_col] + [by_lower[c.lower()] for c in cfg.grouping_columns if by_lower[c.lower()] != id_col]
    values = feature_columns(df, art)
    cols = [id_expr.alias(id_col)] + [F.col(f"`{c}`") for c in passthrough[1:]]
    cols += [v.alias(n) for v, n in zip(values, input_columns(art.features))]
    sel = df.select(*cols)
    # SHAP costs far more per row than reading it, and a filter often keeps the rows of a
    # few files only (one month of a table partitioned by month): spread the rows evenly
    # over at least every core, at the price of one shuffle of the feature columns.
    parts = max(sel.rdd.getNumPartitions(), sel.sparkSession.sparkContext.defaultParallelism)
    return sel.repartition(parts), id_col, passthrough


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


def run_explain(spark: SparkSession, cfg: ExplainConfig, progress=print, diagnostics: bool = False) -> dict:
    """Explain ``cfg.model`` on the rows of ``cfg.table``; returns the summary (without job/status)."""
    t0 = time.monotonic()
    art = load_artifact(cfg.model)
    out_dir = cfg.output or fs.join(results_root(spark), "explain", art.study)
    fs.check_location(spark, out_dir, "output directory")
    fs.check_location(spark, cfg.plots_dir, "plot directory")
    bad_names = [f for f in art.features if not _FEATURE_NAME.match(f)]
    if bad_names:
        raise InputError(f"model features {bad_names} are not plain column names")
    model_bytes = art.model_bytes()
    facts = tree_shap.check_booster(art.booster(nthread=1), art.features)
    objective = facts["objective"] or art.objective
    features = list(art.features)
    interaction_budget(cfg, len(features))
    sel, id_col, passthrough = select_rows(spark, cfg, art)
    check_selection(sel, id_col, cfg.explain_ids)

    device = device_for(spark)
    nthread = int(spark.conf.get("spark.task.cpus", "1"))
    run_id = uuid.uuid4().hex[:12]
    props = {"mljobs.model": art.where(), "mljobs.study": art.study, "mljobs.run_id": run_id,
             "mljobs.method": cfg.method, "mljobs.table": cfg.table, "mljobs.features": ",".join(features)}
    db = cfg.out_db
    old_batch = spark.conf.get(ARROW_BATCH, None)
    staged: list[str] = []
    try:
        spark.conf.set(ARROW_BATCH, str(cfg.batch_rows))
        if cfg.method == "kernel":
            if cfg.baseline is not None:
                bg = np.asarray(baseline_rows(cfg.baseline, features), dtype=np.float64)
                weights, bg_source = np.ones(len(bg)), f"{len(bg)} baseline rows"
            else:
                bg, weights = kernel.kmeans_background(sel, features, cfg.num_clusters, cfg.seed)
                bg_source = f"{len(bg)} k-means centres"
            progress(f"Kernel SHAP on {cfg.table} (background: {bg_source}, num_samples {cfg.num_samples}, "
                     f"use_logit {cfg.use_logit}); model {art.study} ({facts['trees']} trees)")
            local = kernel.contributions(sel, features, passthrough, model_bytes, bg, weights, cfg.num_samples,
                                         cfg.use_logit, cfg.seed, nthread)
        else:
            bg_source = None
            progress(f"exact TreeSHAP (xgboost pred_contribs, {device}) on {cfg.table}; model {art.study} "
                     f"({facts['trees']} trees, {len(features)} features); batches of {cfg.batch_rows:,} rows")
            local = tree_shap.contributions(sel, features, passthrough, model_bytes, objective, device, nthread,
                                            diagnostics=diagnostics)
        t_shap = time.monotonic()
        staged.append(LOCAL)
        with StageProgress(spark, progress):
            local_name = tables.stage(spark, db, LOCAL, local, props)
        shap_s = time.monotonic() - t_shap
        staged_local = spark.table(local_name)
        st = staged_local.agg(F.count(F.lit(1)).alias("n"), F.max("additivity_error").alias("err"),
                              F.avg("base_value").alias("base"), F.avg("prediction").alias("pred")).first()
        rows = int(st["n"])
        if rows == 0:
            raise InputError("the selection is empty: no rows to explain (check --where / --sample)")
        max_err = float(st["err"])
        progress(f"explained {rows:,} rows in {shap_s:.1f}s ({rows / max(shap_s, 1e-9):,.0f} rows/s); "
                 f"worst additivity error {max_err:.2e}")
        if not max_err <= cfg.additivity_tol:
            raise BadDataError(f"SHAP values do not add up to the model output: worst relative error {max_err:.3g} "
                               f"> {cfg.additivity_tol:g} (see {LOCAL}.additivity_error); no table was replaced")

        staged.append(GLOBAL)
        glob = aggregate.global_shap(staged_local, features, cfg.group_by, cfg.agg_method, cfg.median)
        tables.stage(spark, db, GLOBAL, glob, props)
        global_pd = spark.table(f"{db}.{GLOBAL}{tables.NEW}").toPandas()

        inter_rows = 0
        inter_pd = None
        staged.append(INTERACTIONS)
        if cfg.interactions:
            n = min(cfg.interactions, rows)
            if n < cfg.interactions:
                progress(f"--interactions {cfg.interactions}: the selection has {rows:,} rows; using all of them")
            progress(f"SHAP interaction values for {n:,} sampled rows ({n * len(features) ** 2:,} values)")
            spark.conf.set(ARROW_BATCH, str(max(1, min(cfg.batch_rows, INTERACTION_BATCH_VALUES // len(features) ** 2))))
            rows_for = _sample(staged_local.select(id_col, *input_columns(features)), id_col, n, cfg.seed)
            inter = tree_shap.interactions(rows_for, features, id_col, model_bytes, device, nthread)
            tables.stage(spark, db, INTERACTIONS, inter, props)
            inter_rows = n
            inter_pd = (spark.table(f"{db}.{INTERACTIONS}{tables.NEW}").groupBy("feature_a", "feature_b")
                        .agg(F.avg(F.abs("value")).alias("mean_abs")).toPandas())
        else:
            tables.stage(spark, db, INTERACTIONS, _empty_interactions(spark, sel.schema[id_col].dataType)
                         .withColumnRenamed(DEFAULT_ID, id_col), props)

        base_value = float(st["base"])
        overall = global_pd[global_pd["group_by"] == aggregate.GLOBAL].sort_values("rank")
        global_values = {r.feature: float(getattr(r, cfg.agg_method)) for r in overall.itertuples()}
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
        with fs.output_dir(spark, out_dir) as out:
            written = clarify.write_analysis(out.local / "analysis.json",
                                             clarify.analysis_json(cfg.method_key, global_values, base_value, extra))
        analysis_path = out.final(written)

        plot_paths: list[str] = []
        if cfg.plots:
            from mljobs.explain import plots

            plots_dir = cfg.plots_dir or out_dir
            progress(f"plots under {plots_dir}")
            sample_pd = _sample(staged_local, id_col, cfg.plot_rows, cfg.seed).toPandas()
            ids_pd = None
            if cfg.explain_ids:
                ids_pd = staged_local.where(F.col(f"`{id_col}`").cast("string").isin(cfg.explain_ids)).toPandas()
            with fs.output_dir(spark, plots_dir) as pout:
                made = plots.make_plots(sample_pd, features, global_pd, inter_pd, ids_pd, id_col, pout.local,
                                        agg_method=cfg.agg_method, top_k=cfg.top_k,
                                        max_groups=cfg.max_groups_plotted, study=art.study)
            plot_paths = [pout.final(x) for x in made]
        done = tables.commit(spark, db, list(TABLES))
        staged = []
    finally:
        if old_batch is None:
            spark.conf.unset(ARROW_BATCH)
        else:
            spark.conf.set(ARROW_BATCH, old_batch)
        if staged:
            tables.discard(spark, db, staged)

    top = list(global_values.items())[:10]
    return {
        "model": art.where(), "study": art.study, "table": cfg.table, "method": cfg.method,
        "device": device if cfg.method == "tree" else "cpu", "agg_method": cfg.agg_method,
        "rows_explained": rows, "rows_per_s": round(rows / max(shap_s, 1e-9), 1), "shap_seconds": round(shap_s, 2),
        "base_value": base_value, "mean_prediction": float(st["pred"]),
        "max_additivity_error": max_err, "additivity_tol": cfg.additivity_tol,
        "global_shap": global_values, "top_features": [f for f, _ in top],
        "groupings": cfg.group_by, "groups": int(groups[["group_by", "group_value"]].drop_duplicates().shape[0]),
        "interaction_rows": inter_rows, "tables": done, "analysis_json": str(analysis_path),
        "plots": plot_paths, "seconds": round(time.monotonic() - t0, 2),
    }


# ---- what the rest of the system knows about this job (see mljobs.registry)
NAME = "explain"
CONFIG = ExplainConfig
run = run_explain
EMR_STEP = EmrStep(needs=("table", "study"), label=lambda p: p.table,
                   args=lambda p: ["--model", p.model_dir(), "--table", p.table, *p.where_args()])
GPU_FALLBACKS: list = []  # none of its own (tests/test_gpu_readiness.py)
