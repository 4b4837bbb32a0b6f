"""SHAP plots (PNG, matplotlib Agg), from the aggregates and a seeded sample of shap_local:

* ``global_importance.png`` — global SHAP per feature (the run's agg_method, all rows)
* ``beeswarm.png``          — shap's summary plot on the sample (value coloured by feature value)
* ``dependence_<f>.png``    — for the top-k features: SHAP vs feature value, coloured by the
  feature it interacts with most (from the interaction values when computed, else shap's
  ``approximate_interactions`` on the sample)
* ``interactions.png``      — mean |interaction value| per feature pair (with --interactions)
* ``groups_<grouping>.png`` — the top features' global SHAP side by side for the largest groups
* ``waterfall_<id>.png``    — one row's explanation (--explain-ids)
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(plt, path: Path) -> str:
    fig = plt.gcf()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close("all")
    return str(path)


def global_bar(global_pd: pd.DataFrame, agg_method: str, path: Path, title: str) -> str:
    plt = _pyplot()
    g = global_pd[global_pd["group_by"] == "(all)"].sort_values("rank", ascending=False)
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(g) + 1.5))
    ax.barh(g["feature"], g[agg_method], color="#1E88E5")
    ax.set_xlabel(f"global SHAP ({agg_method}, {int(g['rows'].max()):,} rows)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _save(plt, path)


def group_comparison(global_pd: pd.DataFrame, grouping: str, agg_method: str, path: Path, max_groups: int,
                     top: int = 8) -> str:
    plt = _pyplot()
    allrows = global_pd[global_pd["group_by"] == "(all)"].sort_values("rank")
    feats = list(allrows["feature"].head(top))
    g = global_pd[(global_pd["group_by"] == grouping) & global_pd["feature"].isin(feats)]
    sizes = g.groupby("group_value")["rows"].max().sort_values(ascending=False)
    groups = list(sizes.index[:max_groups])
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(feats) * max(1, len(groups)) ** 0.5 + 2))
    height = 0.8 / max(1, len(groups))
    y = np.arange(len(feats))[::-1]
    for i, gv in enumerate(groups):
        vals = g[g["group_value"] == gv].set_index("feature").reindex(feats)[agg_method].to_numpy()
        ax.barh(y - 0.4 + (i + 0.5) * height, vals, height=height, label=f"{gv} ({int(sizes[gv]):,})")
    ax.set_yticks(y)
    ax.set_yticklabels(feats)
    ax.set_xlabel(f"SHAP {agg_method}")
    shown = f"the {len(groups)} largest of {len(sizes)} groups" if len(sizes) > len(groups) else f"{len(groups)} groups"
    ax.set_title(f"top features by {grouping}: {shown}", fontsize=10)
    ax.legend(fontsize=7, loc="lower right", title=grouping)
    ax.grid(axis="x", alpha=0.3)
    return _save(plt, path)


def interaction_heatmap(inter_pd: pd.DataFrame, features: list[str], path: Path) -> str:
    plt = _pyplot()
    m = inter_pd.pivot(index="feature_a", columns="feature_b", values="mean_abs").reindex(index=features,
                                                                                           columns=features)
    fig, ax = plt.subplots(figsize=(0.55 * len(features) + 3, 0.55 * len(features) + 2))
    im = ax.imshow(m.to_numpy(), cmap="viridis")
    ax.set_xticks(range(len(features)))
    ax.set_xticklabels(features, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(features)))
    ax.set_yticklabels(features, fontsize=8)
    fig.colorbar(im, ax=ax, label="mean |SHAP interaction| (diagonal: main effect)")
    ax.set_title("SHAP interaction values", fontsize=10)
    return _save(plt, path)


def strongest_partner(feature: str, features: list[str], inter_pd: pd.DataFrame | None, values: np.ndarray,
                      x: np.ndarray) -> int | None:
    """Index of the feature that interacts most with ``feature``."""
    i = features.index(feature)
    if inter_pd is not None and len(inter_pd):
        d = inter_pd[(inter_pd["feature_a"] == feature) & (inter_pd["feature_b"] != feature)]
        if len(d):
            return features.index(d.sort_values("mean_abs", ascending=False)["feature_b"].iloc[0])
    if len(features) < 2:
        return None
    import shap

    return int(shap.approximate_interactions(i, values, x)[0])


def make_plots(sample_pd: pd.DataFrame, features: list[str], global_pd: pd.DataFrame, inter_pd: pd.DataFrame | None,
               ids_pd: pd.DataFrame | None, id_col: str, out_dir: Path, agg_method: str = "mean_abs",
               top_k: int = 5, max_groups: int = 8, study: str = "") -> list[str]:
    """Every plot of the run; returns the paths written."""
    import shap

    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [global_bar(global_pd, agg_method, out_dir / "global_importance.png",
                          f"{study}: global SHAP importance" if study else "global SHAP importance")]
    values = sample_pd[[f"shap_{f}" for f in features]].to_numpy(dtype=np.float64)
    x = sample_pd[[f"value_{f}" for f in features]].to_numpy(dtype=np.float64, na_value=np.nan)
    xdf = pd.DataFrame(x, columns=features)
    if len(sample_pd):
        shap.summary_plot(values, xdf, feature_names=features, show=False, max_display=len(features),
                          rng=np.random.default_rng(0))
        plt.title(f"SHAP values of {len(sample_pd):,} sampled rows", fontsize=10)
        written.append(_save(plt, out_dir / "beeswarm.png"))
        top = list(global_pd[global_pd["group_by"] == "(all)"].sort_values("rank")["feature"].head(top_k))
        for f in top:
            partner = strongest_partner(f, features, inter_pd, values, x)
            fig, ax = plt.subplots(figsize=(7, 5))
            shap.dependence_plot(features.index(f), values, xdf, feature_names=features,
                                 interaction_index=partner, ax=ax, show=False)
            written.append(_save(plt, out_dir / f"dependence_{_SAFE.sub('_', f)}.png"))
    if inter_pd is not None and len(inter_pd):
        written.append(interaction_heatmap(inter_pd, features, out_dir / "interactions.png"))
    for grouping in sorted(set(global_pd["group_by"]) - {"(all)"}):
        written.append(group_comparison(global_pd, grouping, agg_method,
                                        out_dir / f"groups_{_SAFE.sub('_', grouping)}.png", max_groups))
    if ids_pd is not None:
        for row in ids_pd.to_dict("records"):
            exp = shap.Explanation(values=np.array([row[f"shap_{f}"] for f in features], dtype=np.float64),
                                   base_values=float(row["base_value"]),
                                   data=np.array([row[f"value_{f}"] for f in features], dtype=np.float64),
                                   feature_names=features)
            shap.plots.waterfall(exp, max_display=len(features), show=False)
            plt.title(f"{id_col} = {row[id_col]}: prediction {row['prediction']:.3f}", fontsize=10)
            written.append(_save(plt, out_dir / f"waterfall_{_SAFE.sub('_', str(row[id_col]))}.png"))
    return written
