"""The Spark side of train-detector: read the frames and the boxes, split the labelled videos
into train and validation (by video, deterministic), and stage one row per frame as Parquet
that the torch processes read without Spark.

Which frames train: every frame of a video that has at least one box (a frame of such a video
without boxes is a negative: background only). Videos without boxes are not used. Boxes whose
(video, frame) is not in the frames table — a video the frames table lacks, or a frame it does
not hold — are counted in the summary, not an error; no usable frame at all is an error.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mljobs.errors import InputError
from mljobs.readers import RAW, REASON, read_source

HELMET = "helmet"
FRAME_COLUMNS = ("video", "frame", "content")
BOX_COLUMNS = ("video", "frame", "left", "width", "top", "height")


@dataclass
class DetectionData:
    classes: list[str]
    videos: dict[str, list[str]]        # part -> its videos
    counts: dict[str, int]              # frames per part, boxes, boxes rejected or without a frame


def _columns(df: DataFrame, needed: tuple[str, ...], what: str, source: str) -> DataFrame:
    have = {c.lower(): c for c in df.columns if c not in (REASON, RAW)}
    missing = [c for c in needed if c not in have]
    if missing:
        raise InputError(f"{what} {source} lacks {', '.join(missing)}; columns: {', '.join(have.values())}")
    return df.select(*[F.col(have[c]).alias(c) for c in needed])


def read_frames(spark: SparkSession, source: str) -> DataFrame:
    df = _columns(read_source(spark, source, "frames (--frames)"), FRAME_COLUMNS, "frames", source)
    return df.select(F.col("video").cast("string"), F.col("frame").cast("int"), F.col("content").cast("binary"))


def read_boxes(spark: SparkSession, source: str, class_column: str | None) -> DataFrame:
    """(video, frame, cls, left, top, width, height, ok): ok false for a box that cannot be used
    (a missing or non-numeric field, width or height <= 0)."""
    needed = BOX_COLUMNS + ((class_column.lower(),) if class_column else ())
    df = _columns(read_source(spark, source, "labels (--labels)"), needed, "labels", source)
    num = {c: F.col(c).cast("double") for c in ("left", "top", "width", "height")}
    cls = F.col(class_column.lower()).cast("string") if class_column else F.lit(HELMET)
    ok = F.col("video").isNotNull() & F.col("frame").cast("int").isNotNull() & cls.isNotNull()
    for c in num.values():
        ok = ok & c.isNotNull() & ~F.isnan(c)
    ok = ok & (num["width"] > 0) & (num["height"] > 0)
    return df.select(F.col("video").cast("string"), F.col("frame").cast("int").alias("frame"), cls.alias("cls"),
                     *[v.alias(k) for k, v in num.items()], F.coalesce(ok, F.lit(False)).alias("ok"))


def split_videos(videos: list[str], fraction: float, seed: int) -> dict[str, list[str]]:
    """part -> videos: the round(n * fraction) videos (at least one when fraction > 0 and there
    are two or more) of smallest sha256(seed:video) validate, the others train."""
    ranked = sorted(videos, key=lambda v: hashlib.sha256(f"{seed}:{v}".encode()).hexdigest())
    n_val = min(max(int(math.floor(len(ranked) * fraction + 0.5)), 1 if fraction > 0 else 0), len(ranked) - 1)
    n_val = max(n_val, 0)
    return {"train": sorted(ranked[n_val:]), "val": sorted(ranked[:n_val])}


def frame_rows(frames: DataFrame, boxes: DataFrame, classes: list[str], parts: dict[str, list[str]]) -> DataFrame:
    """One row per frame of the labelled videos: video, frame, content, part, boxes (x1 y1 x2 y2
    flattened, in a fixed order) and cls (1-based class indexes)."""
    codes = F.create_map(*[x for i, c in enumerate(classes) for x in (F.lit(c), F.lit(i + 1))])
    per_frame = boxes.groupBy("video", "frame").agg(F.array_sort(F.collect_list(F.struct(
        "left", "top", "width", "height", codes[F.col("cls")].alias("c")))).alias("b"))
    part = F.when(F.col("video").isin(parts["val"]), "val").otherwise("train")
    rows = frames.where(F.col("video").isin(parts["train"] + parts["val"])).join(per_frame, ["video", "frame"], "left")
    b = F.coalesce(F.col("b"), F.array())
    flat = F.flatten(F.transform(b, lambda s: F.array(s["left"], s["top"], s["left"] + s["width"],
                                                      s["top"] + s["height"])))
    return rows.select("video", "frame", "content", part.alias("part"), flat.alias("boxes"),
                       F.transform(b, lambda s: s["c"]).alias("cls"))


def load(spark: SparkSession, frames_source: str, labels_source: str, class_column: str | None,
         val_fraction: float, seed: int, staging: str) -> DetectionData:
    """Stage the frames' rows (``frame_rows``) under ``staging``; InputError when none can train."""
    frames = read_frames(spark, frames_source)
    boxes = read_boxes(spark, labels_source, class_column).cache()
    try:
        keys = frames.select("video", "frame").distinct()
        good = boxes.where("ok").join(keys, ["video", "frame"], "left_semi")
        stats = boxes.agg(F.count(F.lit(1)).alias("boxes"), F.sum(F.when(~F.col("ok"), 1).otherwise(0)).alias("bad"))
        stats = stats.first()
        videos = sorted(r["video"] for r in good.select("video").distinct().collect())
        classes = sorted(r["cls"] for r in good.select("cls").distinct().collect())
        if not videos:
            raise InputError(f"no usable frame: none of the {stats['boxes'] or 0:,} boxes of {labels_source} is on a "
                             f"frame of {frames_source} (frames: {frames.count():,}; video and frame must match)")
        parts = split_videos(videos, float(val_fraction), int(seed))
        frame_rows(frames, good, classes, parts).write.parquet(staging)
        used = good.count()
    finally:
        boxes.unpersist()
    counts = {f"{r['part']}_frames": r["count"] for r in spark.read.parquet(staging).groupBy("part").count().collect()}
    counts = {"train_frames": 0, "val_frames": 0, **counts, "boxes": used, "boxes_rejected": int(stats["bad"] or 0),
              "boxes_without_frame": int(stats["boxes"] or 0) - int(stats["bad"] or 0) - used}
    return DetectionData(classes, parts, counts)
