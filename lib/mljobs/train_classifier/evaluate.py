"""The evaluation on the test split, as Custom Labels reports it: per label precision, recall, F1,
test images and the assumed threshold; macro and micro F1; the confusion matrix; the most
confident mistakes.

Predictions are the top-1 label (its probability the confidence), so precision, recall and F1
are scikit-learn's ``precision_recall_fscore_support`` of those predictions (0 where undefined)
and micro F1 equals accuracy.

The assumed threshold of a label L is read from L's probability s_i on every test image, one
label against the rest: an image counts as predicted L when s_i >= t. Every distinct s_i of an
image truly labelled L is a candidate t; the threshold is the candidate with the highest F1 of
that rule (ties: the highest such t), reported with that F1. A label without test images has
none (null)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mljobs.models.classes import class_metrics


def assumed_threshold(scores: np.ndarray, positive: np.ndarray) -> tuple[float | None, float | None]:
    """(threshold, its F1) for one label (module docstring)."""
    n_pos = int(positive.sum())
    if n_pos == 0:
        return None, None
    cand = np.unique(scores[positive])[::-1]                      # descending
    at_least = len(scores) - np.searchsorted(np.sort(scores), cand, side="left")
    tp = n_pos - np.searchsorted(np.sort(scores[positive]), cand, side="left")
    f1 = 2 * tp / (2 * tp + (at_least - tp) + (n_pos - tp))
    best = int(np.argmax(f1))                                    # the first best: the highest t
    return float(cand[best]), float(f1[best])


def evaluation(y: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict:
    """The metrics of test labels ``y`` (indices) and their probabilities (N x labels)."""
    pred = probs.argmax(1)
    counts: dict[tuple[int, int], int] = {}
    for t, p in zip(y.tolist(), pred.tolist()):
        counts[(t, p)] = counts.get((t, p), 0) + 1
    out = class_metrics(counts, labels)
    for i, row in enumerate(out["per_class"]):
        t, f1 = assumed_threshold(probs[:, i], y == i)
        row.update(assumed_threshold=t, f1_at_threshold=f1)
    out["micro_f1"] = out["accuracy"]
    return out


def mistakes(y: np.ndarray, probs: np.ndarray, n: int) -> list[int]:
    """Indices of the ``n`` most confident wrong predictions, most confident first."""
    pred, conf = probs.argmax(1), probs.max(1)
    wrong = np.flatnonzero(pred != y)
    return wrong[np.argsort(-conf[wrong], kind="stable")][:n].tolist()


def plot_mistakes(images: list[np.ndarray], captions: list[str], path: Path, cell: int = 96) -> str:
    """A grid of the images (RGB uint8), each under its caption."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(images), 1)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * cell / 40, rows * cell / 34), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, text in zip(axes.flat, images, captions):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(text, fontsize=7)
    if not images:
        axes.flat[0].text(0.5, 0.5, "no mistakes on the test split", ha="center", va="center")
    fig.suptitle("most confident mistakes (true -> predicted, confidence)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
