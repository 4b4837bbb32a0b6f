"""The tuning job: read and check the table, pick the execution mode, run the Optuna study
(mljobs.studies.loop: max_parallel trials at a time, per-trial and overall time limits), write the
trials table, refit the best configuration on all rows, save the model and the plots."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from mljobs import fs
from mljobs.device import device_for
from mljobs.emr import EmrStep
from mljobs.errors import MljobsError
from mljobs.studies.limits import Interrupted, OpenStudy
from mljobs.gpu import DRIVER_ROWS, UNSUPPORTED_CLASS, Known
from mljobs.session import data_dir_of
from mljobs.studies import study as st
from mljobs.tune.config import TuneConfig
from mljobs.tune.data import TrainingData, collect_arrays, load_training_data
from mljobs.tune.distributed import DistributedTrials, check_barrier, task_slots
from mljobs.studies.loop import TrialLoop, fmt_params
from mljobs.tune.parallel import ParallelTrials
from mljobs.studies.trials import trial_rows


@dataclass
class Plan:
    """How the trials run: the mode (and why), workers per fit, threads per trial."""
    mode: str
    why: str
    num_workers: int
    nthread: int


def run(spark, cfg: TuneConfig, progress) -> dict:
    """The job body: data -> plan -> study -> trials -> trials table -> best model -> plots."""
    t0, run_id = time.time(), uuid.uuid4().hex[:12]
    model_dir, plots_dir = output_dirs(spark, cfg)
    data = load_data(spark, cfg, progress)
    plan = plan_trials(spark, cfg, data, progress)
    opened = open_study(spark, cfg, data, progress)
    ex = make_executor(spark, cfg, data, plan, device_for(spark))
    loop = TrialLoop(spark, cfg, opened.study, ex, plan.mode, data.rows, run_id, opened.max_trials, progress, t0)
    loop.run()
    trials_table = loop.write_table(force=True)
    if loop.interrupted:
        ex.close()
        raise Interrupted(f"interrupted; completed trials are kept in the study {cfg.study!r}: "
                          "run the same command again to resume")
    summary = summarize(opened, cfg, data, plan, loop, trials_table)
    summary["model_dir"] = None
    if summary["best_value"] is not None:
        summary["model_dir"] = str(save_best_model(spark, cfg, opened.study, ex, data, model_dir, plan.mode, progress))
    ex.close()
    summary["plots"] = save_plots(spark, cfg, opened.study, plan.mode, data.rows, run_id, plots_dir)
    summary["seconds"] = round(time.time() - t0, 3)
    return summary


run_tune = run  # the notebook's and bench's name


# ---- steps
def output_dirs(spark, cfg: TuneConfig) -> tuple[str, str]:
    """The model and plot locations (defaults under the results root), checked reachable."""
    return fs.model_and_plot_dirs(spark, cfg.model_dir, cfg.plots_dir, cfg.study, "tune")


def load_data(spark, cfg: TuneConfig, progress) -> TrainingData:
    progress(f"reading {cfg.table}: checking label, features and assigning {cfg.cv_folds} stratified folds")
    return load_training_data(spark, cfg.table, cfg.label, cfg.features, cfg.cv_folds, cfg.seed,
                              where=cfg.where, max_categories=cfg.max_categories)


def plan_trials(spark, cfg: TuneConfig, data: TrainingData, progress) -> Plan:
    """The mode (parallel: the data on every trial's worker; distributed: xgboost.spark) and its sizes."""
    mode, why = choose_mode(spark, cfg, data.rows, len(data.features))
    slots = task_slots(spark)
    num_workers = cfg.num_workers or max(1, slots // cfg.max_parallel)
    if mode == "distributed":
        check_barrier(spark, num_workers, cfg.max_parallel)
    nthread = cfg.threads_per_trial or max(1, slots // cfg.max_parallel)
    progress(f"{data.rows:,} rows ({data.class_counts}), {len(data.features)} features, label {data.label}; "
             f"mode {mode} ({why})")
    return Plan(mode, why, num_workers, nthread)


def open_study(spark, cfg: TuneConfig, data: TrainingData, progress) -> OpenStudy:
    """Create or resume the study; close trials a stopped run left RUNNING."""
    identity = {"table": cfg.table, "where": cfg.where, "family": cfg.family, "metric": cfg.metric,
                "label": data.label, "features": data.features, "cv_folds": cfg.cv_folds, "seed": cfg.seed}
    study, storage_where, n_before = st.open_study(cfg, data_dir_of(spark), identity)
    closed = st.close_interrupted(study, stale_after_s=max(3600.0, 2 * (cfg.max_runtime_per_trial or 0)))
    if closed:
        progress(f"closed {closed} trial(s) a stopped run left RUNNING; their configurations run again")
    max_trials = cfg.max_trials
    if cfg.strategy == "grid":
        max_trials = min(max_trials, cfg.space.grid_size())
    return OpenStudy(study, storage_where, n_before, max_trials)


def make_executor(spark, cfg: TuneConfig, data: TrainingData, plan: Plan, device: str):
    """ParallelTrials over the arrays on the driver, or DistributedTrials over the persisted rows."""
    if plan.mode == "parallel":
        return ParallelTrials(spark, collect_arrays(data), cfg.family, cfg.seed, cfg.metric, plan.nthread, device,
                              final_nthread=refit_threads(spark, plan.nthread))
    from pyspark import StorageLevel

    df = data.df.persist(StorageLevel.MEMORY_AND_DISK)
    df.count()
    return DistributedTrials(spark, df, data.features, data.label, cfg.family, cfg.seed, cfg.metric,
                             plan.num_workers, device)


def refit_threads(spark, nthread: int) -> int:
    """xgboost threads of the refit, which runs alone after the trials: a whole executor's cores
    (locally the local master's), never fewer than a trial's."""
    sc = spark.sparkContext
    if sc.master.startswith("local"):
        return max(nthread, sc.defaultParallelism)
    return max(nthread, int(sc.getConf().get("spark.executor.cores", "1")))


def summarize(opened: OpenStudy, cfg: TuneConfig, data: TrainingData, plan: Plan, loop: TrialLoop,
              trials_table: str) -> dict:
    summary = study_summary(opened.study)
    summary.update({"study": cfg.study, "mode": plan.mode, "mode_reason": plan.why, "rows": data.rows,
                    "rows_null_label": data.rows_null_label, "class_counts": data.class_counts,
                    "features": data.features, "label": data.label, "family": cfg.family,
                    "strategy": cfg.strategy, "metric": cfg.metric, "direction": cfg.direction,
                    "max_trials": opened.max_trials, "trials_new": loop.new, "trials_before": opened.n_before,
                    "storage": opened.storage, "trials_table": trials_table, "stop_reason": loop.stop_reason,
                    "num_workers": plan.num_workers if plan.mode == "distributed" else None,
                    "threads_per_trial": plan.nthread if plan.mode == "parallel" else None})
    return summary


def study_summary(study) -> dict:
    """Trial counts per state and the best trial."""
    trials = study.get_trials(deepcopy=False)
    states = [st.trial_state(t) for t in trials]
    out = {"trials_complete": states.count(st.COMPLETE), "trials_pruned": states.count(st.PRUNED),
           "trials_failed": states.count(st.FAILED), "trials_timeout": states.count(st.TIMEOUT),
           "trials_interrupted": states.count(st.INTERRUPTED), "best_value": None, "best_params": None,
           "best_trial": None}
    try:
        best = study.best_trial
    except ValueError:
        return out
    out.update({"best_value": best.value, "best_params": best.params, "best_trial": best.number,
                "best_fold_values": best.user_attrs.get("fold_values")})
    return out


def refit_metrics(booster, data: TrainingData, arrays: dict | None = None) -> dict:
    """The refit model's metrics on the rows it was trained on, scored by the predict job's code
    (mljobs.models.inference / scoring), so a user can check one against the other: on the
    driver's arrays in parallel mode (the rows the refit was trained on, no Spark job), in Spark
    over the training rows in distributed mode."""
    from mljobs.models import inference, scoring

    if arrays is not None:
        _, prob = inference.score_matrix(booster, arrays["X"], "binary:logistic")
        return scoring.binary_metrics_of(prob, arrays["y"])
    scored = scoring.score_inputs(data.df, data.features, data.features, [data.label], bytes(booster.save_raw("json")),
                                  "binary:logistic")
    return scoring.binary_metrics(scored, data.label)


def save_best_model(spark, cfg: TuneConfig, study, ex, data: TrainingData, model_dir, mode: str, progress):
    """Refit the best trial on all rows and save it (kept when the same model is already there)."""
    from mljobs.models.artifact import ModelArtifact, load_artifact, save_artifact
    from mljobs.tune.trainer import recipe

    best = study.best_trial
    try:
        old = load_artifact(model_dir)
        if old.study == cfg.study and old.params == best.params and old.rows == data.rows and old.table == cfg.table:
            progress(f"best trial #{best.number} unchanged; model in {model_dir} kept")
            return model_dir
    except MljobsError:
        pass
    progress(f"refitting trial #{best.number} {fmt_params(best.params)} on all {data.rows:,} rows")
    booster = ex.fit_final(best.params)
    train_metrics = refit_metrics(booster, data, getattr(ex, "arrays", None))
    progress(f"refit on its training rows: accuracy {train_metrics['accuracy']:.4f}, AUC {train_metrics['auc']:.4f}")
    rec = recipe(cfg.family, best.params, cfg.seed)
    art = ModelArtifact(study=cfg.study, family=cfg.family, label=data.label, features=data.features,
                        params=best.params, booster_params={k: v for k, v in rec.params.items() if k != "nthread"},
                        categorical_maps=data.categorical_maps, metric=cfg.metric, cv_value=best.value,
                        cv_folds=cfg.cv_folds, table=cfg.table, rows=data.rows, mode=mode,
                        train_metrics=train_metrics)
    save_artifact(model_dir, booster, art)
    progress(f"model saved: {model_dir}")
    return model_dir


def save_plots(spark, cfg: TuneConfig, study, mode: str, rows: int, run_id: str, plots_dir) -> list[str]:
    from mljobs.tune.plots import plot_study

    with fs.output_dir(spark, plots_dir) as out:
        local_plots = plot_study(study, trial_rows(study, cfg, mode, rows, run_id), cfg, out.local)
    return [out.final(p) for p in local_plots]


def choose_mode(spark, cfg, rows: int, n_features: int) -> tuple[str, str]:
    if cfg.mode != "auto":
        return cfg.mode, "asked for"
    need = _bytes_estimate(rows, n_features)
    limit = min(cfg.parallel_max_bytes, _memory_bytes(spark) // 4)
    if need <= limit:
        return "parallel", f"~{need / 2**20:.0f} MiB of training data fits one executor (limit {limit / 2**20:.0f} MiB)"
    return "distributed", f"~{need / 2**20:.0f} MiB of training data is above {limit / 2**20:.0f} MiB per executor"


def _bytes_estimate(rows: int, n_features: int) -> int:
    # float32 features + label + fold on the driver, the broadcast copy, xgboost's matrices
    return rows * (n_features + 2) * 4 * 3


def _memory_bytes(spark) -> int:
    conf = spark.sparkContext.getConf()
    key = "spark.driver.memory" if conf.get("spark.master", "").startswith("local") else "spark.executor.memory"
    return _parse_mem(conf.get(key, "1g"))


def _parse_mem(text: str) -> int:
    text = text.strip().lower()
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    if text and text[-1] == "b":
        text = text[:-1]
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(float(text))


# ---- what the rest of the system knows about this job (see mljobs.registry)
NAME = "tune"
CONFIG = TuneConfig
EMR_STEP = EmrStep(needs=("table", "study"), label=lambda p: p.table,
                   args=lambda p: ["--table", p.table, "--study", p.study, "--model-dir", p.model_dir(), *p.where_args()])
GPU_FALLBACKS = [
    Known("RDDScanExec", UNSUPPORTED_CLASS, "studies/folds.py assign_folds: the fold offsets per (class, hash bucket)",
          "at most 2 × 1024 offsets computed on the driver from the bucket counts and broadcast into the "
          "fold-assignment join; " + DRIVER_ROWS, columns=("_cls", "_obucket", "_offset")),
    Known("RDDScanExec", UNSUPPORTED_CLASS, "studies/trials.py write_trials: the tuning_trials rows",
          "one row per trial, from Optuna's storage on the driver, written to Parquet; " + DRIVER_ROWS,
          columns=("trial_number", "params_json")),
    # Distributed mode only (xgboost.spark); the test runs parallel mode (see the README).
    Known("InMemoryTableScanExec", "has been disabled", "tune/job.py make_executor: distributed mode persists the "
          "training rows, which every fold's fit reads",
          "rapids 25.04 leaves Spark's in-memory cache on the CPU under Spark 3.5 (adaptive execution, "
          "NVIDIA/spark-rapids#10603; later releases run it on the GPU from Spark 3.5.2); the scan feeds "
          "xgboost's training, which runs on the GPU itself (device=cuda)", required=False),
    Known("ScalaUDF", "org.apache.spark.ml.", "tune/distributed.py DistributedTrials.evaluate_fold: scoring a held-out fold with "
          "xgboost.spark's transform",
          "xgboost.spark returns probabilities as a Spark ML vector (VectorUDT, which the plugin cannot hold), "
          "so its array_to_vector and our vector_to_array stay on the CPU; the prediction itself runs in "
          "xgboost (on the GPU with device=cuda) and the fold's scores are aggregated after it",
          required=False),
]
