"""The study loop: ask Optuna for trials, run up to max_parallel of them at a time on a thread
pool (each fold a Spark job in its own job group), stop trials past max_runtime_per_trial and
everything past the time budget, tell Optuna each result, refresh the trials table now and then.
Ctrl-C / SIGTERM closes the running trials as INTERRUPTED and queues them again for a resume."""
from __future__ import annotations

import math
import signal
import statistics
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from mljobs.errors import error_text
from mljobs.studies import study as st
from mljobs.studies.trials import trial_rows, write_trials

TABLE_WRITE_EVERY_S = 15.0


@dataclass
class Running:
    trial: Any
    params: dict
    future: Future | None
    started: float
    group: str
    timed_out: bool = False
    fold_values: list = field(default_factory=list)


def fmt_params(params: dict) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def best_value(study):
    try:
        return round(study.best_value, 6)
    except ValueError:
        return None


class TrialLoop:
    """One run's trials over one executor (ParallelTrials or DistributedTrials)."""

    def __init__(self, spark, cfg, study, ex, mode: str, rows: int, run_id: str, max_trials: int, progress,
                 t0: float, job: str = "tune"):
        self.spark, self.sc, self.cfg, self.study, self.ex = spark, spark.sparkContext, cfg, study, ex
        self.mode, self.rows, self.run_id, self.max_trials = mode, rows, run_id, max_trials
        self.progress, self.t0, self.job = progress, t0, job
        self.limit = cfg.max_runtime_per_trial or 0
        self.budget_end = t0 + cfg.time_budget if cfg.time_budget else None
        self.lock = threading.Lock()
        self.running: dict[int, Running] = {}
        self.new = 0
        self.last_write = 0.0
        self.stop_reason: str | None = None
        self.interrupted = False

    # ---- the loop
    def run(self) -> None:
        """Run trials until max_trials are counted, the budget is used up or the run is interrupted."""
        pool = ThreadPoolExecutor(max_workers=self.cfg.max_parallel, thread_name_prefix="trial")
        on_main = threading.current_thread() is threading.main_thread()
        prev_handler = signal.getsignal(signal.SIGTERM)
        if on_main:
            signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            self._loop(pool)
        except KeyboardInterrupt:
            self._interrupt_running()
        finally:
            pool.shutdown(wait=not self.interrupted, cancel_futures=True)
            if on_main:
                signal.signal(signal.SIGTERM, prev_handler)

    def _loop(self, pool: ThreadPoolExecutor) -> None:
        dirty = False
        while True:
            self._enforce_limits(time.time())
            if self.stop_reason is None:
                self._start_trials(pool)
            # Refresh the table only once the free slots are busy again, so it never delays a trial.
            if dirty and self.write_table() is not None:
                dirty = False
            if not self.running:
                return
            finished, _ = wait([r.future for r in self.running.values()], timeout=1.0, return_when=FIRST_COMPLETED)
            self._collect(finished)
            dirty = dirty or bool(finished)

    def _enforce_limits(self, now: float) -> None:
        for r in self.running.values():  # hard stop for a trial that overruns its limit (stuck task)
            if self.limit and not r.timed_out and now > r.started + self.limit + max(10.0, 0.1 * self.limit):
                r.timed_out = True
                self.sc.cancelJobGroup(r.group)
        if self.budget_end and now > self.budget_end and self.stop_reason is None:
            self.stop_reason = f"time budget of {self.cfg.time_budget:g} s used up"
            for r in self.running.values():
                r.timed_out = True
                self.sc.cancelJobGroup(r.group)

    def _start_trials(self, pool: ThreadPoolExecutor) -> None:
        done = st.counted(self.study.get_trials(deepcopy=False))
        while len(self.running) < self.cfg.max_parallel and done + len(self.running) < self.max_trials:
            with self.lock:
                trial = self.study.ask()
                params = self.cfg.space.suggest(trial)
                trial.set_user_attr("owner", st.owner_tag())
                trial.set_user_attr("mode", self.mode)
                trial.set_user_attr("rows", self.rows)
                trial.set_user_attr("run_id", self.run_id)
            r = Running(trial, params, None, time.time(), f"mljobs-{self.job}-{self.run_id}-{trial.number}")
            r.future = pool.submit(self.evaluate, r)
            self.running[trial.number] = r

    def _collect(self, finished) -> None:
        for number in [n for n, r in self.running.items() if r.future in finished]:
            r = self.running.pop(number)
            result = r.future.result()
            if (self.stop_reason and result["state"] == st.TIMEOUT and r.timed_out and self.budget_end
                    and time.time() > self.budget_end):
                interrupt(self.study, r, self.lock, self.stop_reason)  # stopped by the budget: runs again later
                continue
            self.finish(r, result)

    def _interrupt_running(self) -> None:
        self.interrupted = True
        for r in self.running.values():
            self.sc.cancelJobGroup(r.group)
            interrupt(self.study, r, self.lock, "the run was interrupted (Ctrl-C / SIGTERM)")
        self.progress(f"interrupted: {len(self.running)} running trial(s) will run again on resume")

    # ---- one trial (on a pool thread)
    def evaluate(self, r: Running) -> dict:
        """Run the trial's folds; its result state (and error), never an exception."""
        self.sc.setJobGroup(r.group, f"mljobs {self.job} {self.cfg.study} trial {r.trial.number}", interruptOnCancel=True)
        try:
            return self._run_folds(r)
        except Exception as exc:  # a cancelled job (time limit, Ctrl-C) or an unexpected failure
            if r.timed_out:
                return {"state": st.TIMEOUT, "error": f"stopped at max_runtime_per_trial ({self.limit:g} s)"}
            return {"state": st.FAILED, "error": f"{type(exc).__name__}: {error_text(exc, 500)}"}
        finally:
            self.sc.setLocalProperty("spark.jobGroup.id", None)

    def _run_folds(self, r: Running) -> dict:
        """The trial's folds one after the other (a pruner decides after each), or, with no pruner
        and an executor that can, all in one Spark job: its tasks fill the free slots as they come."""
        cfg, limit = self.cfg, self.limit
        deadline = r.started + limit if limit else None
        together = cfg.pruner == "none" and hasattr(self.ex, "evaluate_folds")
        if together:
            left = deadline - time.time() if deadline else None
            results = self.ex.evaluate_folds(r.params, list(range(cfg.cv_folds)), left)
        for fold in range(cfg.cv_folds):
            if together:
                res = results[fold]
            else:
                left = deadline - time.time() if deadline else None
                if left is not None and left <= 0:
                    return {"state": st.TIMEOUT, "error": f"past max_runtime_per_trial ({limit:g} s)"}
                res = self.ex.evaluate_fold(r.params, fold, left)
            end = self._fold_end(r, fold, res)
            if end is not None:
                return end
        return {"state": st.COMPLETE}

    def _fold_end(self, r: Running, fold: int, res: dict) -> dict | None:
        """The trial's end state after this fold's result, or None to go on (its value recorded)."""
        limit = self.limit
        if r.timed_out:
            return {"state": st.TIMEOUT, "error": f"stopped at max_runtime_per_trial ({limit:g} s)"}
        if res["status"] == "timeout":
            return {"state": st.TIMEOUT, "error": f"past max_runtime_per_trial ({limit:g} s): {res.get('error')}"}
        if res["status"] != "ok":
            return {"state": st.FAILED, "error": res.get("error")}
        value = float(res["value"])
        if math.isnan(value):
            return {"state": st.FAILED, "error": f"{self.cfg.metric} is undefined on fold {fold}"}
        r.fold_values.append(value)
        if self.cfg.pruner != "none" and fold < self.cfg.cv_folds - 1 and self._pruned(r, fold):
            return {"state": st.PRUNED}
        return None

    def _pruned(self, r: Running, fold: int) -> bool:
        with self.lock:
            r.trial.report(statistics.fmean(r.fold_values), fold)
            return r.trial.should_prune()

    # ---- results
    def finish(self, r: Running, result: dict) -> None:
        """Tell Optuna the trial's result and print a progress line."""
        from optuna.trial import TrialState

        state = result["state"]
        with self.lock:
            trial = r.trial
            trial.set_user_attr("fold_values", r.fold_values)
            trial.set_user_attr("state", state)
            if result.get("error"):
                trial.set_user_attr("error", str(result["error"])[:2000])
            if state == st.COMPLETE:
                st.tell(self.study, trial, statistics.fmean(r.fold_values))
            elif state == st.PRUNED:
                st.tell(self.study, trial, state=TrialState.PRUNED)
            else:
                st.tell(self.study, trial, state=TrialState.FAIL)
        self.new += 1
        self._report(r, state)

    def _report(self, r: Running, state: str) -> None:
        best = best_value(self.study)
        done = st.counted(self.study.get_trials(deepcopy=False))
        elapsed = time.time() - self.t0
        eta = elapsed / self.new * max(0, self.max_trials - done) if self.new else 0
        value = f"{statistics.fmean(r.fold_values):.5f}" if r.fold_values else "-"
        self.progress(f"trial {done}/{self.max_trials} #{r.trial.number} {state} {self.cfg.metric}={value} "
                      f"({time.time() - r.started:.1f}s) {fmt_params(r.params)} | best {best if best is not None else '-'} "
                      f"| elapsed {elapsed:.0f}s, ETA {eta:.0f}s")

    def write_table(self, force: bool = False) -> str | None:
        """Replace the study's partition of tuning_trials (at most every TABLE_WRITE_EVERY_S unless forced)."""
        if not force and time.time() - self.last_write < TABLE_WRITE_EVERY_S:
            return None
        self.last_write = time.time()
        return write_trials(self.spark, self.cfg, trial_rows(self.study, self.cfg, self.mode, self.rows, self.run_id))


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def interrupt(study, r: Running, lock, why: str) -> None:
    """Close a running trial as INTERRUPTED and queue its configuration again."""
    from optuna.trial import TrialState

    with lock:
        r.trial.set_user_attr("state", st.INTERRUPTED)
        r.trial.set_user_attr("error", why)
        r.trial.set_user_attr("fold_values", r.fold_values)
        st.tell(study, r.trial, state=TrialState.FAIL, skip_if_finished=True)
        study.enqueue_trial(r.params, skip_if_exists=False)
