"""The tuning job: read and check the table, pick the execution mode, run the Optuna study
(ask/tell, max_parallel trials at a time, per-trial and overall time limits), write the
trials table, refit the best configuration on all rows, save the model and the plots."""
from __future__ import annotations

import math
import signal
import statistics
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from mljobs.emr import EmrStep
from mljobs.gpu import DRIVER_ROWS, UNSUPPORTED_CLASS, Known
from mljobs import fs
from mljobs.errors import MljobsError
from mljobs.session import current_env, data_dir_of, results_root
from mljobs.tune import study as st
from mljobs.tune.config import TuneConfig
from mljobs.tune.data import collect_arrays, load_training_data
from mljobs.tune.distributed import DistributedTrials, check_barrier, task_slots
from mljobs.tune.parallel import ParallelTrials
from mljobs.tune.trials import trial_rows, write_trials
from mljobs.errors import error_text

TABLE_WRITE_EVERY_S = 15.0


class Interrupted(MljobsError):
    exit_code = 130


@dataclass
class Running:
    trial: Any
    params: dict
    future: Future
    started: float
    group: str
    timed_out: bool = False
    fold_values: list = field(default_factory=list)


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


def choose_mode(spark, cfg, rows: int, n_features: int) -> tuple[str, str]:
    if cfg.mode != "auto":
        return cfg.mode, "asked for"
    need = _bytes_estimate(rows, n_features)
    mem = _memory_bytes(spark)
    limit = min(cfg.parallel_max_bytes, mem // 4)
    if need <= limit:
        return "parallel", f"~{need / 2**20:.0f} MiB of training data fits one executor (limit {limit / 2**20:.0f} MiB)"
    return "distributed", f"~{need / 2**20:.0f} MiB of training data is above {limit / 2**20:.0f} MiB per executor"


def run_tune(spark, cfg, progress) -> dict:
    t0 = time.time()
    run_id = uuid.uuid4().hex[:12]
    data_dir = data_dir_of(spark)
    model_dir = cfg.model_dir or fs.join(results_root(spark), "models", cfg.study)
    plots_dir = cfg.plots_dir or fs.join(results_root(spark), "plots", "tune", cfg.study)
    fs.check_location(spark, model_dir, "model directory")
    fs.check_location(spark, plots_dir, "plot directory")
    env = current_env(spark.sparkContext.getConf())
    device = "cuda" if env == "emr-gpu" else None
    sc = spark.sparkContext

    progress(f"reading {cfg.table}: checking label, features and assigning {cfg.cv_folds} stratified folds")
    data = load_training_data(spark, cfg.table, cfg.label, cfg.features, cfg.cv_folds, cfg.seed,
                              where=cfg.where, max_categories=cfg.max_categories)
    mode, why = choose_mode(spark, cfg, data.rows, len(data.features))
    slots = task_slots(spark)
    num_workers = cfg.num_workers or max(1, slots // cfg.max_parallel)
    if mode == "distributed":
        check_barrier(spark, num_workers, cfg.max_parallel)
    nthread = cfg.threads_per_trial or max(1, slots // cfg.max_parallel)
    progress(f"{data.rows:,} rows ({data.class_counts}), {len(data.features)} features, label {data.label}; "
             f"mode {mode} ({why})")

    identity = {"table": cfg.table, "where": cfg.where, "family": cfg.family, "metric": cfg.metric,
                "label": data.label, "features": data.features, "cv_folds": cfg.cv_folds, "seed": cfg.seed}
    study, storage_where, n_before = st.open_study(cfg, data_dir, identity)
    limit = cfg.max_runtime_per_trial or 0
    closed = st.close_interrupted(study, stale_after_s=max(3600.0, 2 * limit))
    if closed:
        progress(f"closed {closed} trial(s) a stopped run left RUNNING; their configurations run again")
    max_trials = cfg.max_trials
    if cfg.strategy == "grid":
        max_trials = min(max_trials, cfg.space.grid_size())

    if mode == "parallel":
        arrays = collect_arrays(data)
        ex = ParallelTrials(spark, arrays, cfg.family, cfg.seed, cfg.metric, nthread, device)
    else:
        from pyspark import StorageLevel

        df = data.df.persist(StorageLevel.MEMORY_AND_DISK)
        df.count()
        ex = DistributedTrials(spark, df, data.features, data.label, cfg.family, cfg.seed, cfg.metric,
                               num_workers, device)

    lock = threading.Lock()
    pool = ThreadPoolExecutor(max_workers=cfg.max_parallel, thread_name_prefix="trial")
    running: dict[int, Running] = {}
    budget_end = t0 + cfg.time_budget if cfg.time_budget else None
    last_write = 0.0
    counts = {"new": 0}
    interrupted = False

    def evaluate(r: Running) -> dict:
        sc.setJobGroup(r.group, f"mljobs tune {cfg.study} trial {r.trial.number}", interruptOnCancel=True)
        deadline = r.started + limit if limit else None
        try:
            for fold in range(cfg.cv_folds):
                left = deadline - time.time() if deadline else None
                if left is not None and left <= 0:
                    return {"state": st.TIMEOUT, "error": f"past max_runtime_per_trial ({limit:g} s)"}
                res = ex.evaluate_fold(r.params, fold, left)
                if r.timed_out:
                    return {"state": st.TIMEOUT, "error": f"stopped at max_runtime_per_trial ({limit:g} s)"}
                if res["status"] == "timeout":
                    return {"state": st.TIMEOUT, "error": f"past max_runtime_per_trial ({limit:g} s): {res.get('error')}"}
                if res["status"] != "ok":
                    return {"state": st.FAILED, "error": res.get("error")}
                value = float(res["value"])
                if math.isnan(value):
                    return {"state": st.FAILED, "error": f"{cfg.metric} is undefined on fold {fold}"}
                r.fold_values.append(value)
                if cfg.pruner != "none" and fold < cfg.cv_folds - 1:
                    with lock:
                        r.trial.report(statistics.fmean(r.fold_values), fold)
                        if r.trial.should_prune():
                            return {"state": st.PRUNED}
            return {"state": st.COMPLETE}
        except Exception as exc:  # a cancelled job (time limit, Ctrl-C) or an unexpected failure
            if r.timed_out:
                return {"state": st.TIMEOUT, "error": f"stopped at max_runtime_per_trial ({limit:g} s)"}
            return {"state": st.FAILED, "error": f"{type(exc).__name__}: {error_text(exc, 500)}"}
        finally:
            sc.setLocalProperty("spark.jobGroup.id", None)

    def finish(r: Running, result: dict) -> None:
        from optuna.trial import TrialState

        state = result["state"]
        with lock:
            trial = r.trial
            trial.set_user_attr("fold_values", r.fold_values)
            trial.set_user_attr("state", state)
            if result.get("error"):
                trial.set_user_attr("error", str(result["error"])[:2000])
            if state == st.COMPLETE:
                st.tell(study, trial, statistics.fmean(r.fold_values))
            elif state == st.PRUNED:
                st.tell(study, trial, state=TrialState.PRUNED)
            else:
                st.tell(study, trial, state=TrialState.FAIL)
        counts["new"] += 1
        best = _best(study)
        done = st.counted(study.get_trials(deepcopy=False))
        elapsed = time.time() - t0
        eta = elapsed / counts["new"] * max(0, max_trials - done) if counts["new"] else 0
        value = f"{statistics.fmean(r.fold_values):.5f}" if r.fold_values else "-"
        progress(f"trial {done}/{max_trials} #{trial.number} {state} {cfg.metric}={value} "
                 f"({time.time() - r.started:.1f}s) {_fmt(r.params)} | best {best if best is not None else '-'} "
                 f"| elapsed {elapsed:.0f}s, ETA {eta:.0f}s")

    def write_table(force: bool = False) -> str | None:
        nonlocal last_write
        if not force and time.time() - last_write < TABLE_WRITE_EVERY_S:
            return None
        last_write = time.time()
        return write_trials(spark, cfg, trial_rows(study, cfg, mode, data.rows, run_id))

    prev_handler = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
    stop_reason = None
    dirty = False
    try:
        while True:
            now = time.time()
            for r in running.values():  # hard stop for a trial that overruns its limit (stuck task)
                if limit and not r.timed_out and now > r.started + limit + max(10.0, 0.1 * limit):
                    r.timed_out = True
                    sc.cancelJobGroup(r.group)
            if budget_end and now > budget_end and stop_reason is None:
                stop_reason = f"time budget of {cfg.time_budget:g} s used up"
                for r in running.values():
                    r.timed_out = True
                    sc.cancelJobGroup(r.group)
            if stop_reason is None:
                done = st.counted(study.get_trials(deepcopy=False))
                while len(running) < cfg.max_parallel and done + len(running) < max_trials:
                    with lock:
                        trial = study.ask()
                        params = cfg.space.suggest(trial)
                        trial.set_user_attr("owner", st.owner_tag())
                        trial.set_user_attr("mode", mode)
                        trial.set_user_attr("rows", data.rows)
                        trial.set_user_attr("run_id", run_id)
                    r = Running(trial, params, None, time.time(), f"mljobs-tune-{run_id}-{trial.number}")
                    r.future = pool.submit(evaluate, r)
                    running[trial.number] = r
            # Refresh the table only once the free slots are busy again, so it never delays a trial.
            if dirty and write_table() is not None:
                dirty = False
            if not running:
                break
            finished, _ = wait([r.future for r in running.values()], timeout=1.0, return_when=FIRST_COMPLETED)
            for number in [n for n, r in running.items() if r.future in finished]:
                r = running.pop(number)
                result = r.future.result()
                if stop_reason and result["state"] == st.TIMEOUT and r.timed_out and budget_end and time.time() > budget_end:
                    result = {"state": st.INTERRUPTED, "error": stop_reason}
                    _interrupt(study, r, lock, stop_reason)
                    continue
                finish(r, result)
            dirty = dirty or bool(finished)
    except KeyboardInterrupt:
        interrupted = True
        for r in running.values():
            sc.cancelJobGroup(r.group)
            _interrupt(study, r, lock, "the run was interrupted (Ctrl-C / SIGTERM)")
        progress(f"interrupted: {len(running)} running trial(s) will run again on resume")
    finally:
        pool.shutdown(wait=not interrupted, cancel_futures=True)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, prev_handler)
    trials_table = write_table(force=True)
    if interrupted:
        ex.close()
        raise Interrupted(f"interrupted; completed trials are kept in the study {cfg.study!r}: "
                          "run the same command again to resume")

    summary = _summarize(study, cfg)
    summary.update({"study": cfg.study, "mode": mode, "mode_reason": why, "rows": data.rows,
                    "rows_null_label": data.rows_null_label, "class_counts": data.class_counts,
                    "features": data.features, "label": data.label, "family": cfg.family,
                    "strategy": cfg.strategy, "metric": cfg.metric, "direction": cfg.direction,
                    "max_trials": max_trials, "trials_new": counts["new"], "trials_before": n_before,
                    "storage": storage_where, "trials_table": trials_table, "stop_reason": stop_reason,
                    "num_workers": num_workers if mode == "distributed" else None,
                    "threads_per_trial": nthread if mode == "parallel" else None})
    summary["model_dir"] = None
    if summary["best_value"] is not None:
        summary["model_dir"] = str(_final_model(spark, cfg, study, ex, data, model_dir, mode, progress))
    ex.close()
    from mljobs.tune.plots import plot_study

    with fs.output_dir(spark, plots_dir) as out:
        local_plots = plot_study(study, trial_rows(study, cfg, mode, data.rows, run_id), cfg, out.local)
    summary["plots"] = [out.final(p) for p in local_plots]
    summary["seconds"] = round(time.time() - t0, 3)
    return summary


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _interrupt(study, r: Running, lock, why: str) -> None:
    from optuna.trial import TrialState

    with lock:
        r.trial.set_user_attr("state", st.INTERRUPTED)
        r.trial.set_user_attr("error", why)
        r.trial.set_user_attr("fold_values", r.fold_values)
        st.tell(study, r.trial, state=TrialState.FAIL, skip_if_finished=True)
        study.enqueue_trial(r.params, skip_if_exists=False)


def _best(study):
    try:
        return round(study.best_value, 6)
    except ValueError:
        return None


def _fmt(params: dict) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def _summarize(study, cfg) -> dict:
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


def _final_model(spark, cfg, study, ex, data, model_dir, mode: str, progress):
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
    progress(f"refitting trial #{best.number} {_fmt(best.params)} on all {data.rows:,} rows")
    booster = ex.fit_final(best.params)
    rec = recipe(cfg.family, best.params, cfg.seed)
    art = ModelArtifact(study=cfg.study, family=cfg.family, label=data.label, features=data.features,
                        params=best.params, booster_params={k: v for k, v in rec.params.items() if k != "nthread"},
                        categorical_maps=data.categorical_maps, metric=cfg.metric, cv_value=best.value,
                        cv_folds=cfg.cv_folds, table=cfg.table, rows=data.rows, mode=mode)
    save_artifact(model_dir, booster, art)
    progress(f"model saved: {model_dir}")
    return model_dir


# ---- what the rest of the system knows about this job (see mljobs.registry)
NAME = "tune"
CONFIG = TuneConfig
run = run_tune
EMR_STEP = EmrStep(needs=("table", "study"), label=lambda p: p.table,
                   args=lambda p: ["--table", p.table, "--study", p.study, "--model-dir", p.model_dir(), *p.where_args()])
GPU_FALLBACKS = [
    Known("RDDScanExec", UNSUPPORTED_CLASS, "tune/folds.py: the fold offsets per (class, hash bucket)",
          "at most 2 × 1024 offsets computed on the driver from the bucket counts and broadcast into the "
          "fold-assignment join; " + DRIVER_ROWS, columns=("_cls", "_obucket", "_offset")),
    Known("RDDScanExec", UNSUPPORTED_CLASS, "tune/trials.py: the tuning_trials rows",
          "one row per trial, from Optuna's storage on the driver, written to Parquet; " + DRIVER_ROWS,
          columns=("trial_number", "params_json")),
    # Distributed mode only (xgboost.spark); the test runs parallel mode (see the README).
    Known("InMemoryTableScanExec", "has been disabled", "tune/job.py: distributed mode persists the "
          "training rows, which every fold's fit reads",
          "rapids 25.04 leaves Spark's in-memory cache on the CPU under Spark 3.5 (adaptive execution, "
          "NVIDIA/spark-rapids#10603; later releases run it on the GPU from Spark 3.5.2); the scan feeds "
          "xgboost's training, which runs on the GPU itself (device=cuda)", required=False),
    Known("ScalaUDF", "org.apache.spark.ml.", "tune/distributed.py: scoring a held-out fold with "
          "xgboost.spark's transform",
          "xgboost.spark returns probabilities as a Spark ML vector (VectorUDT, which the plugin cannot hold), "
          "so its array_to_vector and our vector_to_array stay on the CPU; the prediction itself runs in "
          "xgboost (on the GPU with device=cuda) and the fold's scores are aggregated after it",
          required=False),
]
