"""The detect job body: a frames table (or video files) + a detector (OpenCV's, or a torch
detector of train-detector) -> <out-table> (+ _quarantine).

1. ``read_frames``: the table's (video, frame, content), checked before any work (a frames
   table; an images table of ingest-images counts each image as frame 1 of a video named by
   its path). With --videos, ``video_frames`` instead: the videos listed on the driver (names
   and sizes) and decoded in tasks by the frames job's own code (``mljobs.video``: a task per
   video, frames 1, 1+N, ... as JPEG at the frames job's defaults), so ``detect --videos``
   scores exactly the frames that ``frames`` then ``detect --frames`` would.
2. ``detect_frames``: every frame decoded and scored in Spark tasks (mapInArrow over Arrow
   batches of --batch-size frames; the detector built once per Python worker, see
   ``mljobs.models.detectors``). The result — detections, one marker row per frame scored,
   one row per frame that cannot be decoded, and with --videos one row per video (its
   decoding report) — is written once, as Parquet under the run's staging folder, so the
   detectors and the decoding run once whatever reads it next.
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

from mljobs import fs, modelcache, tables, video
from mljobs.config import parse_table_name
from mljobs.detect.config import DetectConfig
from mljobs.device import device_for
from mljobs.emr import EmrStep
from mljobs.errors import InputError
from mljobs.gpu import DRIVER_ROWS, UNSUPPORTED_CLASS, Known
from mljobs.models import detectors, torchdet
from mljobs.session import StageProgress, arrow_batch

# the predictions layout of detection-metrics, then the lineage columns
SCORES = ("logistic of the detector's margin (not a probability)", "the torch detector's probability")
OUT_COLUMNS = ["video_frame", "video", "frame", "label", "score", "left", "width", "top", "height", "model", "run_id"]
# The staged rows: the detectors' rows plus a detail; with --videos one more kind of row, a
# video's decoding report (frame NULL; reason NULL when it decoded in full)
VIDEO = 3
STAGED_SCHEMA = detectors.OUT_SCHEMA + ", detail string"
QUARANTINE_COLUMNS = ("video", "frame", "reason", "detail")


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


def video_frames(spark: SparkSession, cfg: DetectConfig) -> DataFrame:
    """The videos of --videos decoded lazily in tasks, as the frames job decodes them
    (``mljobs.video.decoded``: rows of ``video.SCHEMA``, a frame per kept frame and a report
    per video); InputError when no video file is there."""
    return video.decoded(spark, video.list_videos(spark, cfg.videos), video.FrameSpec(every=cfg.every))


def score_fn(cfg: DetectConfig, threads: int, torch_model=None):
    """The detector's mapInArrow function: (video, frame, content) batches in,
    ``detectors.OUT_SCHEMA`` batches out. ``torch_model``: (metadata, broadcast weights,
    device) of a train-detector model."""
    if torch_model is not None:
        meta, weights, device = torch_model
        return torchdet.detect_fn(meta, weights, device, cfg.params(threads))
    modelcache.ship_by_value(detectors)
    return detectors.detect_fn(cfg.spec, cfg.params(threads))


def staged_arrow_schema():
    import pyarrow as pa

    return detectors.arrow_schema().append(pa.field("detail", pa.string()))


def with_video_reports(score):
    """mapInArrow function over ``video.SCHEMA`` batches: the frames go through ``score`` (the
    detector's function) as (video, frame, content); each video's report becomes a VIDEO row
    (reason and detail as the frames job reports them). Out: STAGED_SCHEMA batches."""
    def fn(batches):
        import pyarrow as pa
        import pyarrow.compute as pc

        schema = staged_arrow_schema()
        reports = []

        def frames():
            for batch in batches:
                is_frame = pc.is_valid(batch.column("frame"))
                reports.append(batch.filter(pc.invert(is_frame)))
                kept = batch.filter(is_frame)
                if kept.num_rows:
                    yield pa.RecordBatch.from_arrays([kept.column(c) for c in ("video", "frame", "content")],
                                                     names=["video", "frame", "content"])

        def flush():
            for r in reports:
                n = r.num_rows
                if n:
                    yield pa.RecordBatch.from_arrays(
                        [pa.array([VIDEO] * n, pa.int8()) if f.name == "row" else
                         r.column(f.name) if f.name in ("video", "frame", "reason", "detail") else
                         pa.nulls(n, f.type) for f in schema], schema=schema)
            reports.clear()

        for out in score(frames()):
            yield pa.RecordBatch.from_arrays([*out.columns, pa.nulls(out.num_rows, pa.string())], schema=schema)
            yield from flush()
        yield from flush()

    return fn


def detect_frames(frames: DataFrame, cfg: DetectConfig, threads: int, torch_model=None) -> DataFrame:
    """Every frame through the detector in Spark tasks: ``STAGED_SCHEMA`` rows. ``frames``:
    (video, frame, content) of a table, or ``video_frames`` (--videos: a row per video too)."""
    score = score_fn(cfg, threads, torch_model)
    if cfg.videos is not None:
        return frames.mapInArrow(with_video_reports(score), STAGED_SCHEMA)
    return frames.mapInArrow(score, detectors.OUT_SCHEMA).withColumn("detail", F.lit(None).cast("string"))


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
    """video, frame, reason, detail, run_id of the frames whose bytes cannot be decoded and
    (--videos) of the videos that cannot be used, or were cut short (frame NULL)."""
    bad = (F.col("row") == detectors.BAD) | ((F.col("row") == VIDEO) & F.col("reason").isNotNull())
    return staged.where(bad).select(*QUARANTINE_COLUMNS, F.lit(run_id).alias("run_id"))


def count_rows(staged: DataFrame, videos: bool = False) -> dict:
    """Frames scored, with detections, quarantined (by reason) and detections, in one pass;
    with ``videos``, the videos read and those quarantined too."""
    rows = staged.groupBy("row", "reason").agg(
        F.count(F.lit(1)).alias("n"), F.sum(F.when(F.col("detections") > 0, 1).otherwise(0)).alias("with_dets"))
    out = {"frames_scored": 0, "frames_with_detections": 0, "detections": 0, "quarantined": 0,
           "quarantined_by_reason": {}}
    if videos:
        out.update(videos=0, videos_quarantined=0)
    bad_frames = 0
    for r in rows.collect():
        if r["row"] == detectors.FRAME:
            out["frames_scored"] += r["n"]
            out["frames_with_detections"] += r["with_dets"]
        elif r["row"] == detectors.DETECTION:
            out["detections"] += r["n"]
        elif r["row"] == VIDEO:
            out["videos"] += r["n"]
            if r["reason"] is not None:
                out["videos_quarantined"] += r["n"]
                out["quarantined"] += r["n"]
                out["quarantined_by_reason"][r["reason"]] = r["n"]
        else:
            bad_frames += r["n"]
            out["quarantined"] += r["n"]
            out["quarantined_by_reason"][r["reason"]] = r["n"]
    out["quarantined_by_reason"] = dict(sorted(out["quarantined_by_reason"].items()))
    out["frames"] = out["frames_scored"] + bad_frames
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
    counts = count_rows(staged, videos=cfg.videos is not None)
    if counts["frames"] == 0 and cfg.videos is not None:
        reasons = ", ".join(f"{n:,} {r}" for r, n in counts["quarantined_by_reason"].items()) or "none"
        raise InputError(f"no frame decoded from {counts['videos']:,} video files under --videos {cfg.videos} "
                         f"({reasons}); nothing was written")
    if counts["frames"] == 0:
        raise InputError(f"the frames table {cfg.frames} has no rows: nothing to detect")
    progress(f"scored {counts['frames_scored']:,} frames in {seconds:.1f}s "
             f"({counts['frames'] / max(seconds, 1e-9):,.1f} frames/s): {counts['detections']:,} detections in "
             f"{counts['frames_with_detections']:,} frames, {counts['quarantined']:,} quarantined")
    return staged, counts, seconds


def run_detect(spark: SparkSession, cfg: DetectConfig, progress=print) -> dict:
    """Detect objects in every frame of ``cfg.frames`` (or of the videos ``cfg.videos``);
    returns the summary (without job/status)."""
    t0 = time.monotonic()
    frames = read_frames(spark, cfg.frames) if cfg.frames else video_frames(spark, cfg)
    db, name, quarantine = cfg.output_tables
    run_id = uuid.uuid4().hex[:12]
    threads = int(spark.conf.get("spark.task.cpus", "1"))
    model = torch_model(spark, cfg)
    source = {"mljobs.frames": cfg.frames} if cfg.frames else {"mljobs.videos": cfg.videos,
                                                                "mljobs.every": str(cfg.every)}
    props = {"mljobs.model": cfg.model, **source, "mljobs.run_id": run_id, "mljobs.score_min": str(cfg.score_min)}
    progress(f"detecting {cfg.spec.label} boxes in {cfg.source} with {cfg.model} into {db}.{name} "
             f"({'every ' + str(cfg.every) + ' frame(s), a task per video; ' if cfg.videos else ''}"
             f"{cfg.batch_size} frames per batch, {threads} thread(s) per task)")
    try:
        staged, counts, seconds = stage_detections(spark, cfg, frames, run_id, threads, progress, model)
        tables.stage(spark, db, name, detection_rows(staged, cfg.model, run_id), props,
                     comment=f"{cfg.spec.label} detections of {cfg.model}")
        what = f"frames of {cfg.frames}" if cfg.frames else f"videos (and frames) under {cfg.videos}"
        tables.stage(spark, db, quarantine, quarantine_rows(staged, run_id), props,
                     comment=f"{what} that cannot be decoded")
        done = tables.commit(spark, db, [name, quarantine])
    except BaseException:
        tables.discard(spark, db, [name, quarantine])  # the previous tables stay in place
        raise
    finally:
        fs.remove(spark, tables.staging_path(spark, db, run_id))
        if model is not None:
            model[1].destroy()
    source = {"frames_table": cfg.frames} if cfg.frames else {"videos_input": cfg.videos, "every": cfg.every}
    return {"model": cfg.model, "label": cfg.spec.label, **source, "out_table": done[0],
            "quarantine_table": done[1], **counts,
            "frames_per_s": round(counts["frames"] / max(seconds, 1e-9), 2), "detect_seconds": round(seconds, 2),
            "score": SCORES[cfg.spec.kind == detectors.TORCH], "score_min": cfg.score_min,
            "threads_per_task": threads, "run_id": run_id, "seconds": round(time.monotonic() - t0, 2)}


# ---- what the rest of the system knows about this job (see mljobs.registry)
NAME = "detect"
CONFIG = DetectConfig
run = run_detect
EMR_STEP = EmrStep(needs=("frames_table",), label=lambda p: p.frames_table, default=False,
                   args=lambda p: ["--model", p.detector or p.detector_dir(), "--frames", p.frames_table,
                                   "--out-table", p.detections_table()])
# OpenCV and torch run in Python tasks (mapInArrow), which are not fallbacks (docs/gpu.md); with
# --videos the videos' listing is a plan of its own, as in the frames job
GPU_FALLBACKS = [
    Known("RDDScanExec", UNSUPPORTED_CLASS, "video.py decoded: --videos only, the list of videos (path, bytes)",
          DRIVER_ROWS + "; one row per video, before any decoding", columns=("path", "bytes"), required=False),
]
