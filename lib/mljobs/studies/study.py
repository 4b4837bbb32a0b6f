"""The Optuna study behind a tuning run: storage, sampler, pruner, resume bookkeeping.

The study (in SQLite under the data directory unless --storage says otherwise) is the
source of truth: every finished trial is committed there when it finishes, so a run that
is killed and started again with the same --study keeps its completed trials and runs
only what is left up to max_trials. Trials a dead process left RUNNING are closed as
INTERRUPTED and their configurations queued again.
"""
from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

from mljobs.errors import MljobsError
from mljobs.errors import error_text

# Our trial states (Optuna's COMPLETE/PRUNED/FAIL plus why a FAIL failed), in user attr "state".
COMPLETE, PRUNED, FAILED, TIMEOUT, INTERRUPTED = "COMPLETE", "PRUNED", "FAILED", "TIMEOUT", "INTERRUPTED"
_OWNER = "owner"


def storage_for(url: str | None, data_dir: Path):
    """An Optuna storage from --storage (SQLAlchemy URL, *.log/*.journal file, *.db path) or the default."""
    import optuna

    if not url:
        d = Path(data_dir) / "optuna"
        d.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{(d / 'studies.db').resolve()}"
    if "://" not in url:
        p = Path(url)
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.suffix in (".log", ".journal", ".jsonl"):
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(str(p))), f"journal:{p}"
        url = f"sqlite:///{p.resolve()}"
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
    except Exception as exc:
        raise MljobsError(f"--storage {redact(url)}: {error_text(exc)}") from None
    return storage, redact(url)


def _engine_kwargs(url: str) -> dict:
    # Trials finish on several threads; SQLite waits for the write lock instead of failing.
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}


def redact(url: str) -> str:
    """A storage URL without its password, for logs and summaries."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def make_sampler(strategy: str, space, seed: int, max_trials: int, n_existing: int):
    import optuna

    # Re-seeding with the number of trials already there: a resumed random search
    # continues with new configurations instead of replaying the first ones.
    s = seed + n_existing
    if strategy == "random":
        return optuna.samplers.RandomSampler(seed=s)
    if strategy == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=s)
    return optuna.samplers.TPESampler(seed=s, n_startup_trials=max(2, min(10, max_trials // 3)),
                                      multivariate=True, constant_liar=True)


def make_pruner(name: str, cv_folds: int):
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=cv_folds)
    return optuna.pruners.NopPruner()


def open_study(cfg, data_dir: Path, identity: dict[str, Any]):
    """Create or load the study; refuse to resume one made for another table/family/metric."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage, where = storage_for(cfg.storage, data_dir)
    existing = None
    try:
        existing = optuna.load_study(study_name=cfg.study, storage=storage, sampler=optuna.samplers.RandomSampler())
    except KeyError:
        pass
    n_existing = len(existing.trials) if existing else 0
    sampler = make_sampler(cfg.strategy, cfg.space, cfg.seed, cfg.max_trials, n_existing)
    pruner = make_pruner(cfg.pruner, cfg.cv_folds)
    study = optuna.create_study(study_name=cfg.study, storage=storage, sampler=sampler, pruner=pruner,
                                direction=cfg.direction, load_if_exists=True)
    stored = study.user_attrs.get("identity")
    if stored is None:
        study.set_user_attr("identity", identity)
    else:
        diff = {k: (stored.get(k), v) for k, v in identity.items() if stored.get(k) != v}
        if diff:
            shown = "; ".join(f"{k}: was {a!r}, now {b!r}" for k, (a, b) in diff.items())
            raise MljobsError(f"study {cfg.study!r} exists with other settings ({shown}); "
                              "use a new --study name to search something else")
    return study, where, n_existing


def owner_tag() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_alive(tag: str | None, started: float | None, stale_after_s: float) -> bool:
    if not tag:
        return False
    host, _, pid = tag.rpartition(":")
    if host == socket.gethostname():
        try:
            os.kill(int(pid), 0)
            return int(pid) != os.getpid()
        except (OSError, ValueError):
            return False
    return started is not None and time.time() - started < stale_after_s  # another machine: trust a while


def close_interrupted(study, stale_after_s: float) -> int:
    """Close RUNNING trials whose process is gone (kill -9, lost driver) and queue their params again."""
    from optuna.trial import TrialState

    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        started = t.datetime_start.timestamp() if t.datetime_start else None
        if _owner_alive(t.user_attrs.get(_OWNER), started, stale_after_s):
            continue
        study._storage.set_trial_user_attr(t._trial_id, "state", INTERRUPTED)
        study._storage.set_trial_user_attr(t._trial_id, "error", "the process running this trial stopped")
        tell(study, t.number, state=TrialState.FAIL, skip_if_finished=True)
        if t.params:
            study.enqueue_trial(t.params, skip_if_exists=False)
        n += 1
    return n


def tell(study, *args, **kwargs) -> None:
    """study.tell outside optimize(): GridSampler's "grid exhausted" study.stop() raises here,
    after the trial's state is stored; we stop by counting trials instead."""
    try:
        study.tell(*args, **kwargs)
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise


def trial_state(t) -> str:
    from optuna.trial import TrialState

    if t.state == TrialState.COMPLETE:
        return COMPLETE
    if t.state == TrialState.PRUNED:
        return PRUNED
    if t.state == TrialState.FAIL:
        return t.user_attrs.get("state", FAILED)
    return t.state.name  # RUNNING / WAITING


def counted(trials) -> int:
    """Trials that count toward max_trials: finished ones, except those cut off by an interruption."""
    return sum(1 for t in trials if trial_state(t) in (COMPLETE, PRUNED, FAILED, TIMEOUT))


def dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=str)
