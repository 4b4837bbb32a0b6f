"""The labels of a scored image as DetectCustomLabels returns them: every label whose confidence is
at least its threshold, highest first, at most top-k; as Spark expressions over the probability
array (no Python), so they run wherever the plan runs."""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

LABELS_TYPE = "array<struct<label:string,confidence:double>>"


def top_labels(probs: Column, labels: list[str], thresholds: list[float], top_k: int | None) -> Column:
    """array<struct<label, confidence>> of the labels (``labels`` order in ``probs``) whose
    probability is >= their threshold, highest first (ties: the model's label order), the first
    ``top_k`` of them (None: all)."""
    names = F.array(*[F.lit(x) for x in labels])
    floors = F.array(*[F.lit(float(t)).cast("double") for t in thresholds])
    # Sorted as structs: by -confidence, then by the label's position.
    cand = F.transform(probs, lambda p, i: F.struct((-p.cast("double")).alias("neg"), i.alias("idx"),
                                                    F.element_at(names, i + 1).alias("label"),
                                                    p.cast("double").alias("confidence"),
                                                    F.element_at(floors, i + 1).alias("floor")))
    kept = F.sort_array(F.filter(cand, lambda x: x["confidence"] >= x["floor"]))
    out = F.transform(kept, lambda x: F.struct(x["label"].alias("label"), x["confidence"].alias("confidence")))
    return F.slice(out, 1, int(top_k)) if top_k else out


def with_labels(df: DataFrame, probs: str, labels: list[str], thresholds: list[float], top_k: int | None) -> DataFrame:
    """``labels`` (top_labels of the ``probs`` column), ``label`` and ``confidence`` (the first of
    them, NULL when none passed); the ``probs`` column dropped."""
    out = df.withColumn("labels", top_labels(F.col(probs), labels, thresholds, top_k)).drop(probs)
    first = F.when(F.size("labels") > 0, F.col("labels")[0])
    return out.withColumn("label", first["label"]).withColumn("confidence", first["confidence"])
