"""The detect job body: a frames table + a detector (OpenCV's, or a torch detector of
train-detector) -> <out-table> (+ _quarantine).

1. ``read_frames``: the table's (video, frame, content), checked before any work (a frames
   table; an images table of ingest-images counts each image as frame 1 of a video named by
   its path).
2. ``detect_frames``: every frame decoded and scored in Spark tasks (mapInArrow over Arrow
   batches of --batch-size frames; the detector built once per Python worker, see
   ``mljobs.models.detectors``). The result — detections, one marker row per frame scored,
   one row per frame that cannot be decoded — is written once, as Parquet under the run's
   staging folder, so the detectors run once whatever reads it next.
3. ``count_rows`` from the staged rows, then the detections (the layout detection-metrics
   reads as predictions) and the quarantine are staged as tables and swapped in together
   (``tables.commit``); any failure before drops the staged tables and keeps the old ones.
"""
from __future__ import annotations

import dataclasses
import time
import uuid

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mljobs import fs, modelcache, tables
from mljobs.config import parse_table_name
from mljobs.device import device_for
from mljobs.detect.config import DetectConfig
from mljobs.errors import InputError
from mljobs.models import detectors, torchdet
from mljobs.session import StageProgress, arrow_batch

# the predictions layout of detection-metrics, then the lineage columns
SCORES = ("logistic of the detector's margin (not a probability)", "the torch detector's probability")
OUT_COLUMNS = ["video_frame", "video", "frame", "label", "score", "left", "width", "top", "height", "model", "run_id"]


def read_frames(spark: SparkSession, table: str) -> DataFrame:
    """(video, frame, content) of a frames table, or of an images table (path, content: each
    image is frame 1 of the video named by its path); InputError when neither."""
    db, name = parse_table_name(table)
    if not spark.catalog.tableExists(f"{db}.{name}"):
        raise InputError(f"frames table {db}.{name} does not exist (write it with ./spark-submit.sh frames ...)")
    df = spark.table(f"{db}.{name}")
    have = {c.lower() for c in df.columns}
    if {"video", "frame", "content"} <= have:
        return df.select(F.col("video").cast("string"), F.col("frame").cast("int"), F.col("content").cast("binary"))
    if {"path", "content"} <= have:
        return df.select(F.col("path").cast("string").alias("video"), F.lit(1).alias("frame"),
                         F.col("content").cast("binary"))
    raise InputError(f"{db}.{name} is not a frames table: it needs video, frame, content (or path, content); "
                     f"columns: {', '.join(df.columns)}")


def detect_frames(frames: DataFrame, cfg: DetectConfig, threads: int, torch_model=None) -> DataFrame:
    """Every frame through the detector in Spark tasks: ``detectors.OUT_SCHEMA`` rows.
    ``torch_model``: (metadata, broadcast weights, device) of a train-detector model."""
    if torch_model is not None:
        meta, weights, device = torch_model
        return frames.mapInArrow(torchdet.detect_fn(meta, weights, device, cfg.params(threads)), detectors.OUT_SCHEMA)
    modelcache.ship_by_value(detectors)
    return frames.mapInArrow(detectors.detect_fn(cfg.spec, cfg.params(threads)), detectors.OUT_SCHEMA)


def torch_model(spark: SparkSession, cfg: DetectConfig):
    """(metadata, broadcast weights, device) of a torch detector directory, else None; the
    spec's label becomes its classes."""
    if cfg.spec.kind != detectors.TORCH:
        return None
    meta = torchdet.load_detector(cfg.model)
    cfg.spec = dataclasses.replace(cfg.spec, label=",".join(meta.classes))
    return meta.to_json(), spark.sparkContext.broadcast(meta.weights()), device_for(spark)


def with_video_frame(df: DataFrame) -> DataFrame:
    """video_frame = <video without its extension>_<frame>, as the NFL helmet submissions name a
    frame ('57583_000082_Endzone.mp4', 1 -> '57583_000082_Endzone_1'); detection-metrics
    reads video and frame, this column is for people and joins."""
    stem = F.regexp_replace(F.col("video"), r"\.[A-Za-z0-9]+$", "")
    return df.withColumn("video_frame", F.concat(stem, F.lit("_"), F.col("frame").cast("string")))


def detection_rows(staged: DataFrame, model: str, run_id: str) -> DataFrame:
    """The detections in the layout detection-metrics reads as predictions (+ model, run_id)."""
    rows = staged.where(F.col("row") == detectors.DETECTION)
    rows = rows.withColumn("model", F.lit(model)).withColumn("run_id", F.lit(run_id))
    return rows.transform(with_video_frame).select(*OUT_COLUMNS)


def quarantine_rows(staged: DataFrame, run_id: str) -> DataFrame:
    """The frames whose bytes cannot be decoded: video, frame, reason, run_id."""
    return staged.where(F.col("row") == detectors.BAD).select("video", "frame", "reason",
                                                                F.lit(run_id).alias("run_id"))


def count_rows(staged: DataFrame) -> dict:
    """Frames scored, with detections, quarantined (by reason) and detections, in one pass."""
    rows = staged.groupBy("row", "reason").agg(
        F.count(F.lit(1)).alias("n"), F.sum(F.when(F.col("detections") > 0, 1).otherwise(0)).alias("with_dets"))
    out = {"frames_scored": 0, "frames_with_detections": 0, "detections": 0, "quarantined": 0,
           "quarantined_by_reason": {}}
    for r in rows.collect():
        if r["row"] == detectors.FRAME:
            out["frames_scored"] += r["n"]
            out["frames_with_detections"] += r["with_dets"]
        elif r["row"] == detectors.DETECTION:
            out["detections"] += r["n"]
        else:
            out["quarantined"] += r["n"]
            out["quarantined_by_reason"][r["reason"]] = r["n"]
    out["frames"] = out["frames_scored"] + out["quarantined"]
    return out


def stage_detections(spark: SparkSession, cfg: DetectConfig, frames: DataFrame, run_id: str, threads: int,
                     progress, model=None) -> tuple[DataFrame, dict, float]:
    """Detect and write every output row once under the run's staging folder; (the staged
    rows, their counts, the seconds it took)."""
    db = cfg.output_tables[0]
    path = tables.staging_path(spark, db, run_id, "rows")
    t = time.monotonic()
    with arrow_batch(spark, cfg.batch_size), StageProgress(spark, progress):
        detect_frames(frames, cfg, threads, model).write.parquet(path)
    seconds = time.monotonic() - t
    staged = spark.read.parquet(path)
    counts = count_rows(staged)
    if counts["frames"] == 0:
        raise InputError(f"the frames table {cfg.frames} has no rows: nothing to detect")
    progress(f"scored {counts['frames_scored']:,} frames in {seconds:.1f}s "
             f"({counts['frames'] / max(seconds, 1e-9):,.1f} frames/s): {counts['detections']:,} detections in "
             f"{counts['frames_with_detections']:,} frames, {counts['quarantined']:,} quarantined")
    return staged, counts, seconds


def run_detect(spark: SparkSession, cfg: DetectConfig, progress=print) -> dict:
    """Detect objects in every frame of ``cfg.frames``; returns the summary (without job/status)."""
    t0 = time.monotonic()
    frames = read_frames(spark, cfg.frames)
    db, name, quarantine = cfg.output_tables
    run_id = uuid.uuid4().hex[:12]
    threads = int(spark.conf.get("spark.task.cpus", "1"))
    model = torch_model(spark, cfg)
    props = {"mljobs.model": cfg.model, "mljobs.frames": cfg.frames, "mljobs.run_id": run_id,
             "mljobs.score_min": str(cfg.score_min)}
    progress(f"detecting {cfg.spec.label} boxes in {cfg.frames} with {cfg.model} into {db}.{name} "
             f"({cfg.batch_size} frames per batch, {threads} thread(s) per task)")
    try:
        staged, counts, seconds = stage_detections(spark, cfg, frames, run_id, threads, progress, model)
        tables.stage(spark, db, name, detection_rows(staged, cfg.model, run_id), props,
                     comment=f"{cfg.spec.label} detections of {cfg.model}")
        tables.stage(spark, db, quarantine, quarantine_rows(staged, run_id), props,
                     comment=f"frames of {cfg.frames} that cannot be decoded")
        done = tables.commit(spark, db, [name, quarantine])
    except BaseException:
        tables.discard(spark, db, [name, quarantine])  # the previous tables stay in place
        raise
    finally:
        fs.remove(spark, tables.staging_path(spark, db, run_id))
        if model is not None:
            model[1].destroy()
    return {"model": cfg.model, "label": cfg.spec.label, "frames_table": cfg.frames, "out_table": done[0],
            "quarantine_table": done[1], **counts,
            "frames_per_s": round(counts["frames"] / max(seconds, 1e-9), 2), "detect_seconds": round(seconds, 2),
            "score": SCORES[cfg.spec.kind == detectors.TORCH], "score_min": cfg.score_min,
            "threads_per_task": threads, "run_id": run_id, "seconds": round(time.monotonic() - t0, 2)}


# ---- what the rest of the system knows about this job (see mljobs.registry)
NAME = "detect"
CONFIG = DetectConfig
run = run_detect
# Not a step of the EMR pipeline yet: the pipeline has no frames table or detector fields.
EMR_STEP = None
GPU_FALLBACKS: list = []  # OpenCV runs in Python tasks (mapInArrow), which are not fallbacks (docs/gpu.md)
