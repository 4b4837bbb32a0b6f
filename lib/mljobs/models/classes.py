"""Metrics of class predictions, shared by every classifier (text, images): scikit-learn's
definitions of precision, recall and F1, and the confusion-matrix plot."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def class_metrics(counts: dict[tuple[int, int], int], labels: list[str]) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support and their macro means from the confusion
    counts {(true index, predicted index): rows} (scikit-learn's definitions; 0 where undefined)."""
    k = len(labels)
    matrix = [[int(counts.get((t, p), 0)) for p in range(k)] for t in range(k)]
    total = sum(map(sum, matrix))
    per_class = []
    for i, name in enumerate(labels):
        tp = matrix[i][i]
        predicted = sum(matrix[t][i] for t in range(k))
        support = sum(matrix[i])
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class.append({"label": name, "precision": precision, "recall": recall, "f1": f1, "support": support})
    return {"rows": total, "accuracy": sum(matrix[i][i] for i in range(k)) / total if total else float("nan"),
            "macro_precision": sum(c["precision"] for c in per_class) / k,
            "macro_recall": sum(c["recall"] for c in per_class) / k,
            "macro_f1": sum(c["f1"] for c in per_class) / k, "per_class": per_class, "confusion": matrix}


def plot_confusion(matrix: list[list[int]], labels: list[str], title: str, out_dir: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    k = len(labels)
    fig, ax = plt.subplots(figsize=(1.2 * k + 3, 1.0 * k + 2.5))
    im = ax.imshow(matrix, cmap="Blues")
    top = max(max(r) for r in matrix) or 1
    for t in range(k):
        for p in range(k):
            ax.text(p, t, str(matrix[t][p]), ha="center", va="center",
                    color="white" if matrix[t][p] > top / 2 else "black")
    ax.set_xticks(range(k), labels, rotation=30, ha="right")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    path = out_dir / "confusion_matrix.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
