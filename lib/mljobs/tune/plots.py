"""Tuning plots (PNG): optimisation history, parameter importance, metric vs each parameter."""
from __future__ import annotations

import json
from pathlib import Path

_COLORS = {"COMPLETE": "tab:blue", "PRUNED": "tab:orange", "FAILED": "tab:red", "TIMEOUT": "tab:purple"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_study(study, rows: list[dict], cfg, out_dir: Path) -> list[str]:
    """The plots of a study with at least one complete trial; their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    done = sorted((r for r in rows if r["state"] == "COMPLETE" and r["value"] is not None), key=lambda r: r["trial_number"])
    if not done:
        return []
    paths = [plot_history(rows, done, cfg, out_dir)]
    importances = param_importances(study) if len(done) >= 3 else {}
    if importances:
        paths.append(plot_importances(importances, out_dir))
    for p in cfg.space.tuned:
        path = plot_metric_vs(rows, p, cfg, out_dir)
        if path:
            paths.append(path)
    return paths


def plot_history(rows: list[dict], done: list[dict], cfg, out_dir: Path) -> str:
    """Every trial's value by state, and the best so far."""
    fig, ax = _plt().subplots(figsize=(8, 4.5))
    for state, color in _COLORS.items():
        pts = [(r["trial_number"], r["value"]) for r in rows if r["state"] == state and r["value"] is not None]
        if pts:
            ax.scatter(*zip(*pts), s=18, color=color, label=state.lower(), zorder=3)
    maximize = cfg.direction == "maximize"
    best, line = None, []
    for r in done:
        v = r["value"]
        best = v if best is None or (v > best if maximize else v < best) else best
        line.append((r["trial_number"], best))
    ax.step(*zip(*line), where="post", color="black", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"CV {cfg.metric} ({cfg.cv_folds}-fold mean)")
    ax.set_title(f"{cfg.study}: {cfg.family}, {cfg.strategy} search")
    ax.legend(loc="best", fontsize=8, framealpha=0.6)
    ax.grid(alpha=0.3)
    return _save(fig, out_dir / "optimization_history.png")


def param_importances(study) -> dict:
    try:
        import optuna

        return optuna.importance.get_param_importances(study)
    except Exception:  # too few distinct values, a single-valued parameter, ...
        return {}


def plot_importances(importances: dict, out_dir: Path) -> str:
    fig, ax = _plt().subplots(figsize=(6, 0.5 + 0.45 * len(importances)))
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance for the objective (fANOVA)")
    ax.set_title("hyperparameter importance")
    return _save(fig, out_dir / "param_importances.png")


def plot_metric_vs(rows: list[dict], p, cfg, out_dir: Path) -> str | None:
    """The metric against one numeric parameter (None when no trial has a value for it)."""
    pts = []
    for r in rows:
        if r["value"] is None or r["state"] not in _COLORS:
            continue
        v = json.loads(r["params_json"]).get(p.name)
        if isinstance(v, (int, float)):
            pts.append((v, r["value"], _COLORS[r["state"]]))
    if not pts:
        return None
    fig, ax = _plt().subplots(figsize=(6, 4))
    xs, ys, cs = zip(*pts)
    ax.scatter(xs, ys, c=list(cs), s=22)
    if p.log:
        ax.set_xscale("log")
    ax.set_xlabel(p.name)
    ax.set_ylabel(f"CV {cfg.metric}")
    ax.set_title(f"{cfg.metric} vs {p.name}")
    ax.grid(alpha=0.3)
    return _save(fig, out_dir / f"metric_vs_{p.name}.png")


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return str(path)
