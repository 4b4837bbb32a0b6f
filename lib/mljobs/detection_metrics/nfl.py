"""The NFL Impact Detection (Kaggle, 2021) competition metric.

Ground-truth impacts are the boxes with impact = 1, confidence > 1 and visibility > 0.
Predictions are the detections with score >= the confidence threshold (an impact
submission without scores counts every row when its scores are all 1). Per video, a
prediction may match an impact at most ``FRAME_WINDOW`` frames away with IoU >= 0.35;
each impact and each prediction is used once, and the assignment with the most matches
is taken (an optimal assignment, as the competition's scorer did with
``linear_sum_assignment``). TP, FP, FN are summed over videos: micro precision, recall, F1.

Imports numpy, pandas and scipy only at module level (shipped to workers by value).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from mljobs.detection_metrics.matching import iou_matrix, max_matching

FRAME_WINDOW = 4
IOU_THR = 0.35


def impact_tp(gt: pd.DataFrame, pred: pd.DataFrame, pixel_plus_one: bool = False) -> int:
    """Matches of one video: gt and pred with frame, left, top, width, height."""
    if len(gt) == 0 or len(pred) == 0:
        return 0
    g = gt[["left", "top", "width", "height"]].to_numpy(np.float64)
    p = pred[["left", "top", "width", "height"]].to_numpy(np.float64)
    near = np.abs(gt["frame"].to_numpy()[:, None] - pred["frame"].to_numpy()[None, :]) <= FRAME_WINDOW
    cols = np.flatnonzero(near.any(axis=0))  # only predictions near some impact can match
    if cols.size == 0:
        return 0
    iou = iou_matrix(g, p[cols], pixel_plus_one)
    ok = near[:, cols] & (iou >= IOU_THR)
    return max_matching(ok)


def video_tp_function(pixel_plus_one: bool):
    """``applyInPandas`` function: one video's impacts (kind 0) and predictions (kind 1)."""

    def run(pdf: pd.DataFrame) -> pd.DataFrame:
        gt, pred = pdf[pdf["kind"] == 0], pdf[pdf["kind"] == 1]
        return pd.DataFrame({"video": [pdf["video"].iloc[0]], "tp": [impact_tp(gt, pred, pixel_plus_one)]})

    return run


def impact_score(spark, valid, conf_thr: float, pixel_plus_one: bool = False, stage_path: str | None = None):
    """(per-video Spark DataFrame, summary dict) of the impact metric; ``valid`` holds the
    normalised valid rows of both inputs (``input`` = gt / pred). The per-video counts are
    computed once: written as Parquet under ``stage_path`` when given (the RAPIDS
    Accelerator reads that on the GPU, not Spark's in-memory cache), else cached."""
    from pyspark.sql import functions as F

    box = ["video", "frame", "left", "top", "width", "height"]
    impacts = valid.where(
        (F.col("kind") == 0) & (F.col("impact") == 1) & (F.col("confidence") > 1) & (F.col("visibility") > 0)
    ).select(*box, F.lit(0).alias("kind"))
    preds = valid.where((F.col("kind") == 1) & (F.col("score") >= conf_thr)).select(*box, F.lit(1).alias("kind"))
    with_impacts = impacts.select("video").distinct()
    both = impacts.unionByName(preds.join(with_impacts, "video", "left_semi"))
    tp = both.groupBy("video").applyInPandas(video_tp_function(pixel_plus_one), "video string, tp long")
    n_gt = impacts.groupBy("video").agg(F.count("*").alias("n_gt"))
    n_pred = preds.groupBy("video").agg(F.count("*").alias("n_pred"))
    per_video = (
        n_gt.join(n_pred, "video", "full_outer").join(tp, "video", "left")
        .select("video", *[F.coalesce(F.col(c), F.lit(0)).cast("long").alias(c) for c in ("n_gt", "n_pred", "tp")])
        .withColumn("fp", F.col("n_pred") - F.col("tp"))
        .withColumn("fn", F.col("n_gt") - F.col("tp"))
    )
    if stage_path:
        per_video.write.mode("overwrite").parquet(stage_path)
        per_video = spark.read.parquet(stage_path)
    else:
        per_video = per_video.cache()
    rows = per_video.collect()
    tp_sum = sum(r.tp for r in rows)
    fp_sum = sum(r.fp for r in rows)
    fn_sum = sum(r.fn for r in rows)
    tp_c, fp_c, fn_c = F.col("tp"), F.col("fp"), F.col("fn")
    table = per_video.select(
        "video", "n_gt", "n_pred", "tp", "fp", "fn",
        F.when(tp_c + fp_c > 0, tp_c / (tp_c + fp_c)).alias("precision"),
        F.when(tp_c + fn_c > 0, tp_c / (tp_c + fn_c)).alias("recall"),
        F.when(2 * tp_c + fp_c + fn_c > 0, 2 * tp_c / (2 * tp_c + fp_c + fn_c)).alias("f1"),
    )
    summary = {
        "impacts": int(sum(r.n_gt for r in rows)),
        "predictions": int(sum(r.n_pred for r in rows)),
        "tp": int(tp_sum), "fp": int(fp_sum), "fn": int(fn_sum),
        "precision": tp_sum / (tp_sum + fp_sum) if tp_sum + fp_sum else None,
        "recall": tp_sum / (tp_sum + fn_sum) if tp_sum + fn_sum else None,
        "f1": 2 * tp_sum / (2 * tp_sum + fp_sum + fn_sum) if 2 * tp_sum + fp_sum + fn_sum else None,
        "frame_window": FRAME_WINDOW, "iou_thr": IOU_THR,
    }
    return table, summary
