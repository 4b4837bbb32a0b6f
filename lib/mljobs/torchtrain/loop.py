"""The epoch loop: train an epoch, validate, keep the best weights (lowest validation loss, or
the plan's ``monitor`` figure: train-detector keeps the highest validation AP),
checkpoint, stop early after ``patience`` epochs without a better one; resume from the last
checkpoint of the same run (its fingerprint: the data and the options that shape training).

What an epoch does is the job's: ``train_epoch(epoch) -> mean training loss`` and
``validate() -> {"val_loss" (or the monitor): ..., other metrics}`` (or None without a validation set, when the
last epoch is the one kept). Seeds derive from (seed, epoch), so a resumed run trains the
epochs it had left exactly as the uninterrupted run would have."""
from __future__ import annotations

import copy
import io
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

from mljobs.torchtrain import checkpoint
from mljobs.torchtrain.launch import Process


@dataclass
class Plan:
    epochs: int
    patience: int
    fingerprint: str
    checkpoint_dir: str | None = None
    monitor: str = "val_loss"       # the validation figure that picks the weights kept
    higher_is_better: bool = False  # e.g. an AP; a loss is lower-is-better


def _resume(plan: Plan, net, optimizer, scheduler, log) -> tuple[int, list, dict]:
    """(last finished epoch, history, best) of the checkpoint of this run, or a fresh start."""
    fresh = (0, [], {"loss": math.inf, "epoch": 0, "state": None})
    state = checkpoint.read(plan.checkpoint_dir) if plan.checkpoint_dir else None
    if state is None:
        return fresh
    if state.get("fingerprint") != plan.fingerprint:
        log(f"the checkpoint in {plan.checkpoint_dir} is of another run (other data or options): starting afresh")
        return fresh
    net.load_state_dict(state["net"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    log(f"resuming after epoch {state['epoch']} from the checkpoint in {plan.checkpoint_dir}")
    return state["epoch"], state["history"], state["best"]


def fit(proc: Process, plan: Plan, net, optimizer, scheduler, train_epoch: Callable[[int], float],
        validate: Callable[[], dict | None], log=print) -> dict[str, Any]:
    """Train; returns history, best_epoch, best_state (torch.save bytes of the kept weights),
    stopped_early and resumed_after (0: a fresh run)."""
    import torch

    done, history, best = _resume(plan, net, optimizer, scheduler, log)
    resumed_after, stopped = done, False
    for epoch in range(done + 1, plan.epochs + 1):
        t0 = time.monotonic()
        train_loss = train_epoch(epoch)
        scheduler.step()
        val = validate()
        row = {"epoch": epoch, "train_loss": round(train_loss, 6), **(val or {}),
               "seconds": round(time.monotonic() - t0, 2)}
        history.append(row)
        score = (-val[plan.monitor] if plan.higher_is_better else val[plan.monitor]) if val else -epoch
        if score < best["loss"]:
            best = {"loss": score, "epoch": epoch, "state": copy.deepcopy(net.state_dict())}
        stopped = epoch - best["epoch"] >= plan.patience and epoch < plan.epochs
        if proc.main and plan.checkpoint_dir:
            checkpoint.write(plan.checkpoint_dir, {"fingerprint": plan.fingerprint, "epoch": epoch,
                                                   "net": net.state_dict(), "optimizer": optimizer.state_dict(),
                                                   "scheduler": scheduler.state_dict(), "history": history,
                                                   "best": best})
        log(_line(row, plan.epochs))
        if stopped:
            what = "validation loss" if plan.monitor == "val_loss" else plan.monitor
            log(f"stopping early: no better {what} in {plan.patience} epochs since epoch {best['epoch']}")
            break
    buf = io.BytesIO()
    torch.save(best["state"] if best["state"] is not None else net.state_dict(), buf)
    return {"history": history, "best_epoch": best["epoch"] or (history[-1]["epoch"] if history else 0),
            "best_state": buf.getvalue(), "stopped_early": stopped, "resumed_after": resumed_after}


def _line(row: dict, epochs: int) -> str:
    extra = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k not in ("epoch", "seconds", "train_loss"))
    return f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.4f}{', ' + extra if extra else ''} " \
           f"({row['seconds']:.1f}s)"
