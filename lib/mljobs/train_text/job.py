"""The train-text job: read and check the table, split 80/20 (stratified), preprocess once,
search the classifier's hyper-parameters with the shared Optuna study loop (CV folds on the 80 %),
fit the best configuration on the 80 %, validate it on the 20 %, stage the report tables' rows,
save the PipelineModel, then publish the report (a failed model write leaves every table as it
was) and plot the confusion matrix."""
from __future__ import annotations

import time
import uuid

from pyspark.sql import SparkSession

from mljobs import fs, tables
from mljobs.emr import EmrStep
from mljobs.errors import MljobsError
from mljobs.studies.limits import Interrupted, OpenStudy
from mljobs.gpu import DRIVER_ROWS, UNSUPPORTED_CLASS, Known
from mljobs.models.classes import plot_confusion
from mljobs.models.text import (TextModel, gpu_fallbacks, label_stage, prediction_metrics, prep_stages,
                                save_text_model)
from mljobs.session import data_dir_of
from mljobs.studies import study as st
from mljobs.studies.loop import TrialLoop, best_value, fmt_params
from mljobs.train_text import report
from mljobs.train_text.config import TrainTextConfig
from mljobs.train_text.data import TextData, load_text_data
from mljobs.train_text.trials import TextTrials


def output_dirs(spark, cfg: TrainTextConfig) -> tuple[str, str]:
    """The model and plot locations (defaults under the results root), checked reachable."""
    return fs.model_and_plot_dirs(spark, cfg.model_dir, cfg.plots_dir, cfg.study, "text")


def load_data(spark, cfg: TrainTextConfig, progress) -> TextData:
    progress(f"reading {cfg.table}: checking {cfg.text_col} and {cfg.label_col}, splitting 80/20 and "
             f"assigning {cfg.cv_folds} stratified folds")
    data = load_text_data(spark, cfg.table, cfg.text_col, cfg.label_col, cfg.cv_folds, cfg.seed, cfg.where)
    progress(f"{data.rows:,} labelled rows {data.class_counts} ({data.rows_null_label:,} without a label, "
             f"{data.rows_null_text:,} without text left out): {data.rows_train:,} training, "
             f"{data.rows_validation:,} validation")
    return data


def preprocess(cfg: TrainTextConfig, data: TextData):
    """Tokens and n-grams once for every trial: (prep PipelineModel, prepped training rows)."""
    from pyspark import StorageLevel
    from pyspark.ml import Pipeline

    prep = Pipeline(stages=prep_stages(cfg.word_ngrams, cfg.algorithm)).fit(data.train.limit(0))
    prepped = prep.transform(data.train).persist(StorageLevel.MEMORY_AND_DISK)
    prepped.count()
    return prep, prepped


def open_study(spark, cfg: TrainTextConfig, data: TextData, progress) -> OpenStudy:
    """Create or resume the study; close trials a stopped run left RUNNING."""
    identity = {"table": cfg.table, "where": cfg.where, "family": cfg.algorithm, "metric": cfg.metric,
                "text_col": cfg.text_col, "label_col": cfg.label_col, "word_ngrams": cfg.word_ngrams,
                "cv_folds": cfg.cv_folds, "seed": cfg.seed, "labels": data.labels}
    study, where, n_before = st.open_study(cfg, data_dir_of(spark), identity)
    closed = st.close_interrupted(study, stale_after_s=max(3600.0, 2 * (cfg.max_runtime_per_trial or 0)))
    if closed:
        progress(f"closed {closed} trial(s) a stopped run left RUNNING; their configurations run again")
    max_trials = min(cfg.max_trials, cfg.space.grid_size()) if cfg.strategy == "grid" else cfg.max_trials
    return OpenStudy(study, where, n_before, max_trials)


def fit_best(spark, cfg: TrainTextConfig, data: TextData, prep, prepped, ex: TextTrials, params: dict, progress):
    """The best configuration fitted on every training row: the whole PipelineModel (prep +
    features + classifier + label names) and its predictions on the validation rows."""
    from pyspark.ml import PipelineModel

    progress(f"fitting {fmt_params(params)} on all {data.rows_train:,} training rows")
    fitted = ex.fit(params, prepped)
    model = PipelineModel(stages=[*prep.stages, *fitted.stages, label_stage(data.labels)])
    return model, model.transform(data.validation)


REPORT_TABLES = ("text_validation", "text_errors")


def stage_report(spark, cfg: TrainTextConfig, pred, metrics: dict, run_id: str, staging: str) -> list:
    """The study's rows of text_validation and text_errors, staged (no table changes yet)."""
    rows = spark.createDataFrame(report.metric_rows(metrics, cfg.study, run_id), report.METRIC_SCHEMA)
    wrong = report.confidently_wrong(pred, cfg.errors, cfg.study, run_id)
    return [report.stage_study_partition(spark, cfg.db, name, df, cfg.study, staging)
            for name, df in zip(REPORT_TABLES, (rows, wrong))]


def save_and_publish(spark, cfg: TrainTextConfig, pred, metrics: dict, run_id: str, model_dir: str, model,
                     meta: TextModel) -> dict:
    """Stage the report, save the model, then publish the report: a failed model write (or a failed
    staging) changes no table; the staging folder goes either way."""
    staging = tables.staging_path(spark, cfg.db, f"train-text-{run_id}")
    try:
        staged = stage_report(spark, cfg, pred, metrics, run_id, staging)
        where = save_text_model(spark, model_dir, model, meta)
        names = [report.publish_study_partition(spark, s, f"{staging}/_replaced") for s in staged]
    finally:
        fs.remove(spark, staging)
    return {"model_dir": where, "validation_table": names[0], "errors_table": names[1]}


def write_plot(spark, cfg: TrainTextConfig, metrics: dict, plots_dir: str) -> list[str]:
    with fs.output_dir(spark, plots_dir) as out:
        plot = plot_confusion(metrics["confusion"], [c["label"] for c in metrics["per_class"]],
                                     f"{cfg.study}: validation accuracy {metrics['accuracy']:.3f}", out.local)
        return [out.final(plot)]


def study_counts(study) -> dict:
    states = [st.trial_state(t) for t in study.get_trials(deepcopy=False)]
    return {"trials_complete": states.count(st.COMPLETE), "trials_pruned": states.count(st.PRUNED),
            "trials_failed": states.count(st.FAILED), "trials_timeout": states.count(st.TIMEOUT),
            "trials_interrupted": states.count(st.INTERRUPTED)}


def run(spark: SparkSession, cfg: TrainTextConfig, progress=print) -> dict:
    """The job body: data -> preprocess -> study -> trials -> best fit -> validation -> model + report."""
    t0, run_id = time.time(), uuid.uuid4().hex[:12]
    model_dir, plots_dir = output_dirs(spark, cfg)
    data = load_data(spark, cfg, progress)
    prep, prepped = preprocess(cfg, data)
    opened = open_study(spark, cfg, data, progress)
    ex = TextTrials(prepped, cfg.algorithm, data.labels, cfg.metric, cfg.seed)
    loop = TrialLoop(spark, cfg, opened.study, ex, "spark-ml", data.rows_train, run_id, opened.max_trials, progress,
                     t0, job="train-text")
    loop.run()
    trials_table = loop.write_table(force=True)
    if loop.interrupted:
        raise Interrupted(f"interrupted; completed trials are kept in the study {cfg.study!r}: run the same "
                          "command again to resume")
    summary = {"study": cfg.study, "algorithm": cfg.algorithm, "table": cfg.table, "where": cfg.where,
               "labels": data.labels, "class_counts": data.class_counts, "rows": data.rows,
               "rows_null_label": data.rows_null_label, "rows_null_text": data.rows_null_text,
               "rows_train": data.rows_train, "rows_validation": data.rows_validation, "metric": cfg.metric,
               "direction": cfg.direction, "max_trials": opened.max_trials, "trials_before": opened.n_before,
               "trials_new": loop.new, "storage": opened.storage, "trials_table": trials_table,
               "stop_reason": loop.stop_reason, **study_counts(opened.study), "best_value": best_value(opened.study)}
    if summary["best_value"] is None:
        raise MljobsError(f"no trial of study {cfg.study!r} completed (see {trials_table}); nothing to fit")
    best = opened.study.best_trial
    summary.update({"best_trial": best.number, "best_params": best.params})
    t_fit = time.time()
    model, pred = fit_best(spark, cfg, data, prep, prepped, ex, {**cfg.space.fixed(), **best.params}, progress)
    pred = pred.persist()
    metrics = prediction_metrics(pred, data.labels)
    summary["fit_seconds"] = round(time.time() - t_fit, 3)
    progress(f"validation on {metrics['rows']:,} rows: accuracy {metrics['accuracy']:.4f}, "
             f"macro F1 {metrics['macro_f1']:.4f}")
    summary["validation"] = {k: metrics[k] for k in ("rows", "accuracy", "macro_f1", "macro_precision",
                                                     "macro_recall", "logloss", "per_class", "confusion")}
    meta = TextModel(algorithm=cfg.algorithm, labels=data.labels, text_col=cfg.text_col, label_col=cfg.label_col,
                     params={**cfg.space.fixed(), **best.params}, word_ngrams=cfg.word_ngrams, table=cfg.table,
                     study=cfg.study, rows_train=data.rows_train, rows_validation=data.rows_validation,
                     metric=cfg.metric, cv_value=best.value, validation=summary["validation"])
    summary.update(save_and_publish(spark, cfg, pred, metrics, run_id, model_dir, model, meta))
    summary["plots"] = write_plot(spark, cfg, metrics, plots_dir)
    progress(f"model saved: {summary['model_dir']}")
    for df in (pred, prepped, data.train, data.validation):
        df.unpersist()
    summary.update({"run_id": run_id, "seconds": round(time.time() - t0, 3)})
    return summary


# ---- what the rest of the system knows about this job (see mljobs.registry)
NAME = "train-text"
CONFIG = TrainTextConfig
EMR_STEP = EmrStep(needs=("text_table",), label=lambda p: p.text_table, default=False,
                   args=lambda p: ["--table", p.text_table, "--text-col", p.text_col, "--label-col", p.text_label_col,
                                   "--model-dir", p.text_model_dir()])
GPU_FALLBACKS = [
    *gpu_fallbacks(),
    Known("ScalaUDF", "provides a GPU implementation", "Spark ML's other Scala UDFs: CountVectorizer, IndexToString "
          "(the validation labels), the learners' input checks",
          "Scala UDFs with no GPU version; like the vectors around them they stay on the CPU"),
    Known("Invoke|StaticInvoke|NewInstance|MapObjects|LambdaVariable|CreateExternalRow",
          "org.apache.spark.sql.catalyst.expressions.objects.", "Spark ML's fits (CountVectorizer, IDF, "
          "LogisticRegression): the training rows turned into JVM objects for the learners",
          "the learners are RDD code (their L-BFGS iterations are treeAggregates), outside SQL plans: the plugin "
          "sees only the conversion of rows to objects, which has no GPU version"),
    Known("AttributeReference", "ObjectType(interface org.apache.spark.sql.Row)", "the same fits: rows as objects",
          "the objects the learners read; see the row above"),
    Known("InMemoryTableScanExec", "has been disabled", "train_text/job.py preprocess and run: the tokenised "
          "training rows (read by every fold's fit) and the validation predictions, persisted",
          "rapids 25.04 leaves Spark's in-memory cache on the CPU under Spark 3.5 (NVIDIA/spark-rapids#10603); "
          "the scans feed the CPU-only Spark ML stages above"),
    Known("RDDScanExec", UNSUPPORTED_CLASS, "studies/folds.py assign_folds: the fold offsets per (class, hash bucket)",
          "at most 2 × 1024 offsets computed on the driver from the bucket counts; " + DRIVER_ROWS,
          columns=("_cls", "_obucket", "_offset")),
    Known("RDDScanExec", UNSUPPORTED_CLASS, "studies/trials.py write_trials: the tuning_trials rows",
          "one row per trial, from Optuna's storage on the driver; " + DRIVER_ROWS, columns=("trial_number", "params_json")),
    Known("RDDScanExec", UNSUPPORTED_CLASS, "train_text/job.py stage_report: the text_validation rows",
          "one row per class and one overall, from the confusion counts on the driver; " + DRIVER_ROWS,
          columns=("label", "precision", "recall")),
    Known("DataWritingCommandExec", "not all data writing commands can be replaced", "models/text.py save_text_model: "
          "Spark ML's writer saving the stages' data", "a few rows per stage, holding vectors and matrices (above)"),
    Known("ShuffleExchangeExec", "Columnar exchange without columnar children", "the metrics' aggregation over "
          "scored folds, the model writer's repartition(1)",
          "the plugin does not move a shuffle whose input stays on the CPU: it follows from the stages above"),
    Known("LocalTableScanExec", UNSUPPORTED_CLASS, "models/text.py save_text_model: CountVectorizer's vocabulary "
          "(tfidf-lr)", "the fitted vocabulary, a local relation on the driver, written once", columns=("vocabulary",),
          required=False),
]
