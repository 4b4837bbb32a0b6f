"""The bias job body: SageMaker Clarify's pre- and post-training bias metrics of a Hive table.

1. ``select``: checks that need no heavy work — the table, --where (analysed by Spark), the
   label, facet, group and predicted-label columns and their types, the model artifact.
2. ``aggregate`` (``mljobs.bias.counts``): ONE grouped aggregation in Spark, rows counted by
   facet key x label x predicted label x subgroup (rows scored with --model in the same pass,
   through ``mljobs.models.scoring``); the counts come to the driver, the rows never do.
3. every metric but FT from the counts (``mljobs.bias.metrics``, smclarify's definitions);
   FT, when named, by a distributed kNN per facet value (``mljobs.bias.fliptest``); staged
   as <db>.bias_metrics, analysis.json (+ the report image) merged into --output (explain's
   SHAP values and other facets kept), then the table is swapped in.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType

from mljobs import clarify, fs, tables, uris
from mljobs.emr import EmrStep
from mljobs.bias import counts as bc
from mljobs.bias import fliptest, plots, report
from mljobs.bias.config import BiasConfig
from mljobs.device import device_for
from mljobs.errors import InputError
from mljobs.gpu import DRIVER_ROWS, UNSUPPORTED_CLASS, Known
from mljobs.models import scoring
from mljobs.models.artifact import load_artifact
from mljobs.session import results_root

PREDICTED_THRESHOLD = 0.5  # --model: a probability above it predicts the positive outcome (predict's rule)
TABLE = "bias_metrics"


@dataclass(frozen=True)
class Selection:
    df: DataFrame  # the selected rows (scored with --model: + probability)
    facet: str
    label: str
    group: str | None
    y: Column
    yhat: Column | None
    predicted_by: str | None
    study: str | None
    ft_features: list[str]  # FT's columns ([] unless FT is asked for)


def _ft_features(cfg: BiasConfig, df: DataFrame, used: list[str], model_features: list[str] | None) -> list[str]:
    """FT's columns: --flip-test-features, else the model's features, else the numeric columns,
    never the facet, label or predicted label (smclarify drops those from its frame)."""
    if "FT" not in cfg.metrics_of("post"):
        return []
    if cfg.flip_test_features:
        cols = [bc.column_of(df, c, "--flip-test-features", cfg.table) for c in cfg.flip_test_features]
        bad = [c for c in cols if not isinstance(df.schema[c].dataType, NumericType)]
        if bad:
            raise InputError(f"--flip-test-features {bad}: the flip test needs numeric columns")
    elif model_features is not None:
        cols = [bc.column_of(df, c, "--model feature", cfg.table) for c in model_features]
    else:
        cols = [f.name for f in df.schema if isinstance(f.dataType, NumericType)]
    skip = {c.lower() for c in used}
    return [c for c in cols if c.lower() not in skip and isinstance(df.schema[c].dataType, NumericType)]


def _predicted(spark: SparkSession, cfg: BiasConfig, df: DataFrame, keep: list[str]):
    """(rows, predicted-label column, what predicted it, model study, FT's columns)."""
    used = list(keep[:2]) + ([cfg.predicted_label_col] if cfg.predicted_label_col else [])
    if cfg.model:
        art = load_artifact(cfg.model)
        if art.model_format != "xgboost-json":
            raise InputError(f"--model {cfg.model}: a {art.model_format} model; bias scores with tune's xgboost models")
        clash = [c for c in keep if c.lower() in ("probability", "margin")]
        if clash:
            raise InputError(f"columns {clash} clash with the scores (probability, margin); rename them")
        ft = _ft_features(cfg, df, used, art.features)
        keep = list(dict.fromkeys(keep + ft))
        scored = scoring.score_table_rows(df, art, keep, device_for(spark), int(spark.conf.get("spark.task.cpus", "1")))
        return (scored, F.col("probability") > F.lit(PREDICTED_THRESHOLD), f"{art.where()} (probability > 0.5)",
                art.study, ft)
    if cfg.predicted_label_col:
        col = bc.column_of(df, cfg.predicted_label_col, "--predicted-label-col", cfg.table)
        values = cfg.predicted_label_values or ([] if cfg.predicted_label_threshold is not None else cfg.label_values)
        threshold = cfg.predicted_label_threshold if cfg.predicted_label_threshold is not None else (
            None if cfg.predicted_label_values else cfg.label_threshold)
        return df, bc.outcome(df, col, values, threshold, "--predicted-label"), col, None, _ft_features(cfg, df, used, None)
    return df, None, None, None, []


def select(spark: SparkSession, cfg: BiasConfig) -> Selection:
    """The selected rows and the label/facet/group columns, every name and type checked."""
    df = tables.read_table(spark, cfg.table, cfg.where)
    facet = bc.column_of(df, cfg.facet, "--facet", cfg.table)
    label = bc.column_of(df, cfg.label, "--label", cfg.table)
    group = bc.column_of(df, cfg.group_by, "--group-by", cfg.table) if cfg.group_by else None
    y = bc.outcome(df, label, cfg.label_values, cfg.label_threshold, "--label")
    bc.facet_key(df, facet, cfg)  # type checks of --facet-values/--facet-threshold
    keep = list(dict.fromkeys([facet, label] + ([group] if group else [])))
    scored, yhat, predicted_by, study, ft = _predicted(spark, cfg, df, keep)
    return Selection(scored, facet, label, group, y, yhat, predicted_by, study, ft)


def flip_tests(cfg: BiasConfig, sel: Selection, agg: bc.Aggregated, entries: list) -> dict:
    """FT per facet value ({value_or_threshold: Flip}), when asked for: one kNN pass for all
    values; the rows it reads (scored once with --model) are cached for its three passes."""
    if "FT" not in cfg.metrics_of("post"):
        return {}
    base = sel.df.where(sel.y.isNotNull()).select(bc.facet_key(sel.df, sel.facet, cfg).alias(bc.KEY),
                                                  sel.yhat.alias("_ft_yhat"), *[F.col(f"`{c}`") for c in sel.ft_features])
    base = base.where(F.col(bc.KEY).isNotNull()).persist()
    try:
        groups = [sensitive(F.col(bc.KEY)) for sensitive in bc.sensitive_predicates(agg, cfg)]
        flips = fliptest.flip_tests(base, groups, F.col("_ft_yhat"), sel.ft_features, cfg.flip_test_sample)
        return {value: flip for (value, _), flip in zip(entries, flips)}
    finally:
        base.unpersist()


def label_value(cfg: BiasConfig, agg: bc.Aggregated) -> str:
    """Clarify's label_value_or_threshold: the values, '(threshold, max]', or '1'."""
    if cfg.label_values:
        return ",".join(cfg.label_values)
    if cfg.label_threshold is not None:
        return bc.interval(cfg.label_threshold, agg.label_max)
    return "1"


def output_dir(spark: SparkSession, cfg: BiasConfig, sel: Selection) -> str:
    """--output, else <results>/bias/<model study, else the table's name>."""
    return cfg.output or str(uris.join(results_root(spark), "bias", sel.study or cfg.table.split(".")[-1]))


def write_outputs(spark: SparkSession, cfg: BiasConfig, out_dir: str, doc: dict, results, facet: str):
    """analysis.json in out_dir, merged with the one there (explain's, other facets), and the
    report image; returns (analysis.json, image or None) as published."""
    old = clarify.existing_analysis(spark, out_dir)
    with fs.output_dir(spark, out_dir) as out:
        written = clarify.write_analysis(out.local / "analysis.json", clarify.merge_bias(old, doc))
        image = plots.report_image(results, facet, out.local / f"bias_{facet}.png") if cfg.plots else None
        return out.final(written), (out.final(image) if image else None)


def stage_table(spark: SparkSession, cfg: BiasConfig, rows: list[tuple], run_id: str) -> None:
    df = spark.createDataFrame(rows, report.TABLE_SCHEMA)
    props = {"mljobs.table": cfg.table, "mljobs.where": cfg.where or "", "mljobs.run_id": run_id,
             "mljobs.label": cfg.label, "mljobs.facet": cfg.facet}
    tables.stage(spark, cfg.output_db, TABLE, df.coalesce(1), props, comment=f"bias metrics of {cfg.table}")


def run_bias(spark: SparkSession, cfg: BiasConfig, progress=print) -> dict:
    """The bias metrics of ``cfg.table``; returns the summary (without job/status)."""
    t0 = time.monotonic()
    sel = select(spark, cfg)
    out_dir = output_dir(spark, cfg, sel)
    fs.check_location(spark, out_dir, "--output")
    progress(f"counting {cfg.table}{' where ' + cfg.where if cfg.where else ''} by {sel.facet} x {sel.label}"
             f"{' x predicted (' + sel.predicted_by + ')' if sel.predicted_by else ''}"
             f"{' x ' + sel.group if sel.group else ''}")
    agg = bc.aggregate(sel.df, sel.facet, sel.y, sel.label, sel.yhat, sel.group, cfg)
    if not agg.cells:
        raise InputError(f"the selection is empty: no rows with a label in {cfg.table} (check --where)")
    entries = bc.facet_entries(agg, cfg)
    t_ft = time.monotonic()
    flips = flip_tests(cfg, sel, agg, entries)
    t_ft = time.monotonic() - t_ft
    results = report.compute_all(cfg, entries, flips)
    lv = label_value(cfg, agg)
    run_id = uuid.uuid4().hex[:12]
    try:
        stage_table(spark, cfg, report.table_rows(run_id, sel.facet, results), run_id)
        analysis, image = write_outputs(spark, cfg, out_dir, report.sections(cfg, sel.label, lv, sel.facet, results),
                                        results, sel.facet)
        done = tables.commit(spark, cfg.output_db, [TABLE])
    except BaseException:
        tables.discard(spark, cfg.output_db, [TABLE])  # the previous bias_metrics stay in place
        raise
    undefined = sum(m.error is not None for m in results)
    progress(f"{len(results)} metrics for {len(entries)} facet value(s), {undefined} undefined, into {done[0]}")
    return {"table": cfg.table, "where": cfg.where, "label": sel.label, "label_value_or_threshold": lv,
            "facet": sel.facet, "group_by": sel.group, "stages": list(cfg.stages), "predicted_by": sel.predicted_by,
            "rows": sum(c[4] for c in agg.cells), "rows_left_out_null_label": agg.dropped,
            "metrics_table": done[0], "analysis_json": analysis, "report_image": image,
            "metrics": [{"stage": report.STAGE_NAMES[m.stage], "value_or_threshold": m.value_or_threshold,
                         "metric": m.name, "value": clarify.json_value(m.value), "error": m.error} for m in results],
            "counts": report.group_counts(entries, sel.yhat is not None), "run_id": run_id,
            "flip_test": {v: {"rows_voted": f.voted, "tied_votes": f.tied} for v, f in flips.items()},
            "flip_test_seconds": round(t_ft, 2) if flips else None,
            "seconds": round(time.monotonic() - t0, 2)}


# ---- what the rest of the system knows about this job (see mljobs.registry)
NAME = "bias"
CONFIG = BiasConfig
run = run_bias
# After predict: the predictions (label and facet kept by the predict step) by the pipeline's
# facet, into explain's analysis.json (explain, the next step, keeps these sections).
EMR_STEP = EmrStep(needs=("table", "study"), label=lambda p: p.predictions_table(),
                   args=lambda p: ["--table", p.predictions_table(), "--label", p.label, "--facet", p.facet,
                                   "--predicted-label-col", "prediction", "--output", p.explain_dir(), "--no-plots"])
# Not yet checked by tests/test_gpu_readiness.py; what the plans hold beside plain SQL:
GPU_FALLBACKS = [
    Known("CollectLimitExec", "disabled by default", "bias/counts.py: the counts, collected with a cap",
          "the plugin leaves a collect with a limit on the CPU by default (its own note: on the GPU it can be "
          "slower); it hands the driver at most MAX_CELLS + 1 aggregated count rows (facet x label x predicted "
          "label x group) of the GPU aggregation, never table rows"),
    Known("RDDScanExec", UNSUPPORTED_CLASS, "bias/job.py stage_table: the bias_metrics rows",
          "one row per metric and facet value, computed on the driver from the counts; " + DRIVER_ROWS,
          columns=("metric", "value_or_threshold")),
    Known("InMemoryTableScanExec", "has been disabled",
          "bias/job.py flip_tests: FT's rows, cached for its three passes (group sizes, the voted rows, the kNN)",
          "rapids 25.04 leaves Spark's in-memory cache on the CPU under Spark 3.5 (NVIDIA/spark-rapids#10603); "
          "the scan feeds the kNN's Python tasks", required=False),
]
