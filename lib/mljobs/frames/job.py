"""The frames job: video files -> <db>.<table> (one row per kept frame: video, path, frame,
timestamp_ms, width, height, format, the encoded image and its sha256) and
<db>.<table>_quarantine (every video that gave no frame, or was cut short, with the reason).

The videos are listed on the driver and decoded in tasks, one video per task (mljobs.video);
one pass stages frames and per-video reports as Parquet (written by the tasks themselves on a
local master, else by Spark), in two folders (kind=frame, kind=report), the frames uncompressed (JPEG and PNG bytes do not compress) and already with their
lineage columns; the counts and the quarantine read the staged reports only; the staged frame
files are then moved into the new frames table (never read or written again), and both tables
are swapped in together, so a failed run leaves the previous tables as they were."""
from __future__ import annotations

import datetime as dt
import time
import uuid

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mljobs import fs, tables, uris, video
from mljobs.emr import EmrStep
from mljobs.errors import InputError
from mljobs.frames.config import FramesConfig
from mljobs.gpu import DRIVER_ROWS, UNSUPPORTED_CLASS, Known
from mljobs.session import StageProgress

QUARANTINE_COLUMNS = ("path", "video", "reason", "detail", "bytes", "declared", "decoded", "kept")
LINEAGE = ("ingested_at", "run_id")
KIND = "kind"  # the staging folders: kind=frame, kind=report


def counted(reports: DataFrame) -> dict:
    """Per-video figures from the report rows (one small aggregation): videos, frames decoded and
    kept, bytes, videos by reason."""
    rows = (reports.where(F.col("frame").isNull()).groupBy("reason")
            .agg(F.count(F.lit(1)).alias("files"), F.sum("decoded").alias("decoded"), F.sum("kept").alias("kept"),
                 F.sum(F.when(F.col("kept") > 0, 1).otherwise(0)).alias("used"), F.sum("bytes").alias("bytes"))
            .collect())
    total = {k: sum(int(r[k] or 0) for r in rows) for k in ("files", "decoded", "kept", "used", "bytes")}
    by_reason = {r["reason"]: int(r["files"]) for r in rows if r["reason"] is not None}
    return {"files": total["files"], "videos_with_frames": total["used"], "frames": total["kept"],
            "decoded_frames": total["decoded"], "bytes": total["bytes"], "quarantined_by_reason": dict(sorted(by_reason.items()))}


def _reasons(by: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {r}" for r, n in sorted(by.items())) or "none"


def stage_decoded(spark: SparkSession, videos: list, spec: video.FrameSpec, lineage: dict, staging: str) -> str:
    """The decoding pass: frames and reports, with the lineage columns, written once as Parquet
    under staging/kind=frame and staging/kind=report, uncompressed: by the Python tasks
    themselves where the staging folder is local to a local[...] master (``video.write_staged``),
    else by Spark from ``mapInArrow``. Returns which ("python" or "spark")."""
    root = python_writes(spark, staging)
    if root is not None:
        video.write_staged(spark, videos, spec, (f"{root}/{KIND}=frame", f"{root}/{KIND}=report"), lineage)
        return "python"
    columns = [F.lit(lineage["ingested_at"]).cast("timestamp").alias("ingested_at"),
               F.lit(lineage["run_id"]).alias("run_id")]
    _spark_write(spark, video.decoded(spark, videos, spec).select("*", *columns), staging)
    return "spark"


def python_writes(spark: SparkSession, staging: str) -> str | None:
    """The staging folder's local path where the Python tasks can write it (a local[...] master)."""
    root = uris.local_path(staging)
    return root if root is not None and spark.sparkContext.master.startswith("local") else None


def _spark_write(spark: SparkSession, decoded: DataFrame, staging: str) -> None:
    kind = F.when(F.col("frame").isNull(), F.lit("report")).otherwise(F.lit("frame")).alias(KIND)
    # Two writers open at once in a task, so Spark does not sort each task's rows (every frame's
    # bytes) by kind before writing them; the setting is this session's, restored after.
    key = "spark.sql.maxConcurrentOutputFileWriters"
    before = spark.conf.get(key, "0")
    spark.conf.set(key, str(max(2, int(before))))
    try:
        (decoded.select("*", kind).write.partitionBy(KIND).option("compression", "none")
         .parquet(staging))
    finally:
        spark.conf.set(key, before)


def write_tables(spark: SparkSession, cfg: FramesConfig, staging: str, reports: DataFrame, props: dict) -> None:
    """Both tables staged in full, then swapped in together (a failure drops the staged ones):
    the frames table takes the staged frame files as they are, the quarantine is written from
    the reports."""
    db, name = cfg.output
    _, qname = cfg.quarantine
    columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in reports.schema
                        if f.name in video.FRAME_COLUMNS or f.name in LINEAGE)
    try:
        tables.stage_files(spark, db, name, columns, f"{staging}/{KIND}=frame", props, comment="video frames (frames)")
        quarantined = reports.where(F.col("reason").isNotNull())
        tables.stage(spark, db, qname, quarantined.select(*QUARANTINE_COLUMNS, *LINEAGE), props,
                     comment="videos the frames job could not use, or used in part")
        tables.commit(spark, db, [name, qname])
    except BaseException:
        tables.discard(spark, db, [name, qname])
        raise


def run(spark: SparkSession, cfg: FramesConfig, progress=print) -> dict:
    """Decode the videos at ``cfg.videos`` into ``cfg.table``; returns the summary."""
    t0 = time.monotonic()
    db, name = cfg.output
    videos = video.list_videos(spark, cfg.videos)
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    lineage = {"ingested_at": at, "run_id": run_id}
    staging = tables.staging_path(spark, db, f"{name}-{run_id}")
    progress(f"decoding {len(videos):,} video files ({sum(b for _, b in videos) / 1e6:,.1f} MB) under {cfg.videos}, "
             f"a task per video, every {cfg.every} frame(s) as {cfg.format}"
             f"{' at ' + cfg.resize if cfg.resize else ''}, into {staging}")
    try:
        with StageProgress(spark, progress):
            writer = stage_decoded(spark, videos, cfg.spec, lineage, staging)
        seconds = time.monotonic() - t0
        progress(f"decoded and staged in {seconds:.1f}s; counting and writing the tables")
        reports = spark.read.parquet(f"{staging}/{KIND}=report")
        figures = counted(reports)
        if figures["frames"] == 0:
            raise InputError(f"no frame decoded from {figures['files']:,} files under --videos {cfg.videos} "
                             f"({_reasons(figures['quarantined_by_reason'])}); nothing was written")
        props = {"mljobs.videos": cfg.videos, "mljobs.every": str(cfg.every), "mljobs.resize": cfg.resize or "",
                 "mljobs.format": cfg.format, "mljobs.run_id": run_id}
        write_tables(spark, cfg, staging, reports, props)
    finally:
        fs.remove(spark, staging)
    return {**summary(cfg, figures, seconds, run_id, t0, progress), "staged_by": writer}


def summary(cfg: FramesConfig, figures: dict, seconds: float, run_id: str, t0: float, progress) -> dict:
    by_reason = figures["quarantined_by_reason"]
    rate = figures["frames"] / max(seconds, 1e-9)
    progress(f"{figures['files']:,} files: {figures['frames']:,} frames from {figures['videos_with_frames']:,} videos, "
             f"{sum(by_reason.values()):,} quarantined ({_reasons(by_reason)}) in {seconds:.1f}s ({rate:,.0f} frames/s)")
    return {"input": cfg.videos, "table": ".".join(cfg.output), "quarantine_table": ".".join(cfg.quarantine),
            "videos": figures["files"], "videos_with_frames": figures["videos_with_frames"],
            "frames": figures["frames"], "decoded_frames": figures["decoded_frames"],
            "quarantined": sum(by_reason.values()), "quarantined_by_reason": by_reason,
            "cut_short": by_reason.get(video.CUT_SHORT, 0), "every": cfg.every, "resize": cfg.resize,
            "format": cfg.format, "decode_seconds": round(seconds, 2), "frames_per_s": round(rate, 1),
            "decoded_frames_per_s": round(figures["decoded_frames"] / max(seconds, 1e-9), 1),
            "mb_per_s": round(figures["bytes"] / 1e6 / max(seconds, 1e-9), 2),
            "run_id": run_id, "seconds": round(time.monotonic() - t0, 2)}


# ---- what the rest of the system knows about this job (see mljobs.registry)
NAME = "frames"
CONFIG = FramesConfig
EMR_STEP = EmrStep(needs=("videos_input", "frames_table"), label=lambda p: p.frames_table, default=False,
                   args=lambda p: ["--videos", p.videos_input, "--table", p.frames_table])
GPU_FALLBACKS = [
    Known("RDDScanExec", UNSUPPORTED_CLASS, "video.py decoded: the list of videos (path, bytes)",
          DRIVER_ROWS + "; one row per video, before any decoding", columns=("path", "bytes"), required=False),
    Known("PythonMapInArrowExec", "", "video.py decoded: OpenCV decodes and encodes the frames in Python tasks",
          "FFmpeg decodes on the CPU (OpenCV's wheel has no CUDA decoder); the frames are images, not columns "
          "the plugin could work on", required=False),
]
