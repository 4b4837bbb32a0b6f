"""The detection-metrics job body: inputs -> quarantine -> matching -> tables, AP, plots.

Flow (everything staged before a table is touched):

1. Clean local CSV / COCO JSON files (the local env): the Python workers read, check and
   match them and write the staged boxes themselves (``fastpath``); they decline anything
   not provably clean, and step 2 runs instead.
2. Spark's path: ground truth and detections are read (tables or CSV/Parquet/JSON paths)
   and normalised; bad rows get a reason in SQL (``boxes``). Missing columns fail before
   any Spark job. The rows are partitioned by (video, frame) (one shuffle); a SQL window
   marks duplicate rows and leaves each frame's rows together; ``mapInArrow`` matches many
   frames per numpy pass at the user's IoU threshold (``matching``) and by COCO's rules
   (``coco.match_table``), and passes rejected rows through.
3. The result (every input row) is staged as Parquet and counted: too many bad rows stop
   the job here, before any table is written. ``det_frames`` and ``det_errors`` are SQL
   aggregations of the staged boxes (the per-frame counts are staged as Parquet too, since
   four queries read them); COCO's accumulation runs in Spark per class and per (class,
   video) (``coco_tables``) and ``det_videos`` / ``det_coco`` get the figures;
   ``det_quarantine`` keeps every rejected row with its reason. Each table is written under
   a new name and swapped in (``tables.replace_table``).
4. Plots per video from ``det_frames`` (``plots``), and the JSON summary.

``--coco-only`` keeps steps 1–3 for COCO's evaluation alone: the workers skip the per-frame
matching (its staged columns stay NULL), and only ``det_quarantine`` and ``det_coco`` (and the
per-class precision-recall plots) are written.
"""
from __future__ import annotations

import glob
import math
import os
import time
import uuid
from functools import reduce

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from mljobs.emr import EmrStep
from mljobs.gpu import DRIVER_ROWS, UNSUPPORTED_CLASS, Known
from mljobs import coco
from mljobs.detection_metrics import fastpath, matching, nfl
from mljobs.detection_metrics.boxes import Layout, detect_layout, mark_duplicates, normalize
from mljobs.detection_metrics.cocojson import GT_LAYOUT, PRED_LAYOUT, Instances, is_coco_json
from mljobs.detection_metrics.config import DetectionConfig
from mljobs.detection_metrics.matching import MatchParams
from mljobs.readers import read_source
from mljobs.tables import commit, replace_table, stage_all, staging_path
from mljobs.errors import BadDataError, InputError
from mljobs import fs, modelcache, uris
from mljobs.session import StageProgress, env_of, results_root

BOX_COLUMNS = ["video", "frame", "cls", "kind", "label", "left", "top", "width", "height", "score"]
STAGED_SCHEMA = (
    "video string, frame int, cls string, kind tinyint, label string, left double, top double, "
    "width double, height double, score double, impact double, confidence double, visibility double, "
    "_reason string, _raw string, rank int, above_conf boolean, matched boolean, "
    "match_iou double, best_iou double, c_rank int, c_tp bigint, c_ig bigint"
)
STAGED_COLUMNS = [f.strip().split(" ")[0] for f in STAGED_SCHEMA.split(",")]
# what the matcher reads: the staged input columns plus COCO's area, crowd flag and input position
MATCH_INPUT = STAGED_COLUMNS[:STAGED_COLUMNS.index("rank")] + ["area", "iscrowd", "_rid"]
TABLES = ("det_frames", "det_videos", "det_errors", "det_quarantine", "det_coco")
COCO_ONLY_TABLES = ("det_quarantine", "det_coco")
METRIC_KEYS = ("tp", "fp", "fn", "precision", "recall", "f1", "ap", "ap50", "ap75")


# ----------------------------------------------------------------------------- library


def load_inputs(spark: SparkSession, cfg: DetectionConfig) -> tuple[DataFrame, Layout, Layout]:
    """Normalised ground truth and detections in one frame (``kind`` 0 / 1), every row,
    rejected ones with a ``_reason`` (duplicates are marked later, per frame)."""
    instances = None
    if is_coco_json(cfg.gt):
        instances = Instances(spark, cfg.gt)
        gt_raw, gt_layout = instances.ground_truth(), GT_LAYOUT
    else:
        gt_raw = read_source(spark, cfg.gt, "ground truth (--gt)")
        gt_layout = detect_layout(gt_raw.columns, "gt", f"ground truth {cfg.gt}")
    if is_coco_json(cfg.pred):
        if instances is None:
            raise InputError(f"detections {cfg.pred} are a COCO results file: --gt must be the COCO instances "
                             "file they refer to (its images and categories)")
        pred_raw, pred_layout = instances.results(cfg.pred), PRED_LAYOUT
    else:
        pred_raw = read_source(spark, cfg.pred, "detections (--pred)")
        pred_layout = detect_layout(pred_raw.columns, "pred", f"detections {cfg.pred}")
    if cfg.nfl_impact:
        have = {c.lower() for c in gt_raw.columns}
        missing = [c for c in ("impact", "confidence", "visibility") if c not in have]
        if missing:
            raise InputError(f"--nfl-impact needs ground truth in train_labels layout; missing {', '.join(missing)}")
    single = gt_layout.single_class
    gt = normalize(spark, gt_raw, gt_layout, cfg.merge_labels, single)
    pred = normalize(spark, pred_raw, pred_layout, cfg.merge_labels, single)
    return gt.unionByName(pred), gt_layout, pred_layout


def match_frames(spark: SparkSession, rows: DataFrame, params: MatchParams, partitions: int | None = None) -> DataFrame:
    """Check for duplicates and match, frame by frame: ``STAGED_SCHEMA`` rows.

    ``rows`` has ``BOX_COLUMNS`` (kind 0 = ground truth, 1 = detection), optionally the
    impact columns, ``_rid`` (input order) and ``_reason``/``_raw`` (rejected rows, which
    pass through unmatched). One shuffle: by (video, frame); the duplicate check's sort
    leaves each frame's rows together for ``mapInPandas``.
    """
    ship_by_value()
    for c in ("impact", "confidence", "visibility", "area"):
        if c not in rows.columns:
            rows = rows.withColumn(c, F.lit(None).cast("double"))
    if "iscrowd" not in rows.columns:
        rows = rows.withColumn("iscrowd", F.lit(0).cast("tinyint"))
    if "_rid" not in rows.columns:
        rows = rows.withColumn("_rid", F.monotonically_increasing_id())
    if "_reason" not in rows.columns:
        rows = rows.withColumn("_reason", F.lit(None).cast("string")).withColumn("_raw", F.lit(None).cast("string"))
    n = partitions or int(spark.conf.get("spark.sql.shuffle.partitions", "8"))
    checked = mark_duplicates(rows.repartition(n, "video", "frame"))
    cols = [c for c in MATCH_INPUT if c in checked.columns]
    # the per-frame analysis at the user's threshold; COCO's evaluation (coco.match_table)
    # in the same pass, with its own rules
    return checked.select(*cols).mapInArrow(matching.batch_matcher(matching.MatchParams(
        params.conf_thr, params.iou_thr, params.method, params.pixel_plus_one, coco=False), STAGED_COLUMNS,
        extra=coco.match_table), STAGED_SCHEMA)


def ship_by_value() -> None:
    """The numpy engine goes to the workers by value (they need not import mljobs)."""
    modelcache.ship_by_value(matching, nfl, coco)


def _ratio(num: F.Column, den: F.Column) -> F.Column:
    return F.when(den > 0, num / den)


def with_rates(df: DataFrame) -> DataFrame:
    """precision, recall, F1 from tp/fp/fn (NULL where 0/0)."""
    tp, fp, fn = F.col("tp"), F.col("fp"), F.col("fn")
    return (
        df.withColumn("precision", _ratio(tp.cast("double"), tp + fp))
        .withColumn("recall", _ratio(tp.cast("double"), tp + fn))
        .withColumn("f1", _ratio(2.0 * tp, 2 * tp + fp + fn))
    )


def frame_metrics(matched: DataFrame) -> DataFrame:
    """det_frames: one row per (video, frame) with any box."""
    gt, det = F.col("kind") == 0, (F.col("kind") == 1) & F.col("above_conf")
    agg = matched.groupBy("video", "frame").agg(
        F.sum(gt.cast("int")).alias("num_gt"),
        F.sum(det.cast("int")).alias("num_det"),
        F.sum((det & F.col("matched")).cast("int")).alias("tp"),
        F.sum((gt & F.col("matched")).cast("int")).alias("_gt_matched"),
    )
    out = agg.select(
        "video", "frame", "num_gt", "num_det", "tp",
        (F.col("num_det") - F.col("tp")).alias("fp"),
        (F.col("num_gt") - F.col("_gt_matched")).alias("fn"),
    )
    return with_rates(out).select(
        "video", "frame", *[F.col(c).cast("int") for c in ("num_gt", "num_det", "tp", "fp", "fn")],
        "precision", "recall", "f1",
    )


def error_rows(matched: DataFrame) -> DataFrame:
    """Every missed ground-truth box (FN) and false detection (FP) of the matched boxes."""
    return matched.where(((F.col("kind") == 0) | F.col("above_conf")) & ~F.col("matched")).select(
        "video", "frame", F.when(F.col("kind") == 0, "FN").otherwise("FP").alias("error"), "cls", "label",
        "left", "top", "width", "height", "score", "best_iou",
    )


def error_boxes(err: DataFrame, frames: DataFrame) -> DataFrame:
    """det_errors: the ``error_rows`` with the frame's counts and the frame's rank by misses
    within its video (1 = most misses)."""
    rank = Window.partitionBy("video").orderBy(F.col("fn").desc(), F.col("fp").desc())
    ranked = frames.select(
        "video", "frame", F.col("num_gt").alias("frame_num_gt"), F.col("fn").alias("frame_fn"),
        F.col("fp").alias("frame_fp"), F.dense_rank().over(rank).cast("int").alias("miss_rank"),
    )
    return err.join(ranked, ["video", "frame"], "left")


def video_counts(frames: DataFrame) -> pd.DataFrame:
    """Per-video sums of det_frames plus the overall row (video None), as pandas."""
    aggs = [
        F.count("*").alias("frames"),
        F.sum(((F.col("fp") + F.col("fn")) > 0).cast("int")).alias("frames_with_errors"),
        *[F.sum(c).alias(c) for c in ("num_gt", "num_det", "tp", "fp", "fn")],
    ]
    per_video = frames.groupBy("video").agg(*aggs).toPandas()
    per_video.insert(0, "scope", "video")
    total = per_video[["frames", "frames_with_errors", "num_gt", "num_det", "tp", "fp", "fn"]].sum()
    overall = pd.DataFrame([{"scope": "overall", "video": None, **{k: int(v) for k, v in total.items()}}])
    out = pd.concat([overall, per_video.sort_values("video")], ignore_index=True)
    for c in ("frames", "frames_with_errors", "num_gt", "num_det", "tp", "fp", "fn"):
        out[c] = out[c].fillna(0).astype("int64")
    return out


def rates(tp: int, fp: int, fn: int) -> dict:
    return {
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "f1": 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else None,
    }


def coco_tables(spark: SparkSession, matched: DataFrame, videos: list[str], staged_dir: str | None = None,
                npig: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """COCO's twelve figures overall, per video and per class (``coco.figures``) and the
    per-class curves (``coco.curve_batches``, video NULL rows: the precision curves).

    Accumulated in parallel tasks: one group per class (all images) and one per (class,
    video); the driver receives one row per class and per (class, video), and the ground
    truth only as counts per (class, video). A class's detections are held by one task
    (about 40 bytes a box). Where the staged boxes are local files (``staged_dir``), Python
    tasks read them themselves (``local_curves``); else Spark shuffles them to the tasks.
    ``npig``: ``ground_truth_counts`` where the caller has them."""
    npig = ground_truth_counts(gt_class_counts(matched)) if npig is None else npig
    videos = sorted(videos)
    curves = local_curves(spark, staged_dir, npig, videos) if staged_dir else None
    if curves is None:
        curves = spark_curves(spark, matched, npig, videos)
    have = set(zip(curves["cls"], curves["video"].where(curves["video"].notna(), None)))
    wanted = {k: v for k, v in npig.items() if len(videos) > 1 or k[1] is None}
    curves = pd.concat([curves, pd.DataFrame(coco.no_detection_rows(wanted, have), columns=curves.columns)],
                       ignore_index=True)
    if len(videos) == 1:  # the one video's curves are the whole curves
        whole = curves[curves["video"].isna()]
        curves = pd.concat([curves, whole.assign(video=videos[0], pr=None)], ignore_index=True)
    return coco.figures(curves), curves[curves["video"].isna()].reset_index(drop=True)


def spark_curves(spark: SparkSession, matched: DataFrame, npig: dict, videos: list[str]) -> pd.DataFrame:
    """``coco.curve_batches`` rows, the detections shuffled by class and by (class, video)."""
    ids = spark.createDataFrame(list(enumerate(videos)), "_vid long, video string")
    image = F.shiftleft(F.col("_vid"), 32) + F.col("frame").cast("long") + 2 ** 31
    dets = matched.where(F.col("c_rank") >= 0).join(F.broadcast(ids), "video").select(
        image.alias("image"), *[c for c in coco.CURVE_INPUT if c != "image"])
    n = int(spark.conf.get("spark.sql.shuffle.partitions", "8"))
    parts = [dets.repartition(n, "cls").mapInArrow(coco.curve_batches(npig, True, videos), coco.CURVES_SCHEMA)]
    if len(videos) > 1:
        parts.append(dets.repartition(n, "cls", F.shiftright("image", 32)).mapInArrow(
            coco.curve_batches(npig, False, videos), coco.CURVES_SCHEMA))
    prev = spark.conf.get("spark.sql.execution.arrow.pyspark.enabled", "false")
    spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    try:
        return reduce(DataFrame.unionByName, parts).toPandas()
    finally:
        spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", prev)


def local_curves(spark: SparkSession, staged_dir: str, npig: dict, videos: list[str]) -> pd.DataFrame | None:
    """``coco.curve_batches`` rows computed by Python tasks that read the staged boxes
    themselves (no shuffle, no rows through the JVM); None unless they are local.
    Task (i, whole) takes the classes of share i (``class_shares``): their curves over all
    images (whole) or per video."""
    root = uris.local_path(staged_dir) if env_of(spark) == "local" else None
    files = [] if not root else sorted(glob.glob(os.path.join(root, fastpath.CURVES, "*.arrow"))) or \
        sorted(glob.glob(os.path.join(root, "*.parquet")))
    if not files:
        return None
    shares = max(1, spark.sparkContext.defaultParallelism)
    owner = class_shares(npig, shares)
    units = [(i, whole) for i in range(shares) for whole in ((True, False) if len(videos) > 1 else (True,))]
    rows = spark.sparkContext.parallelize(units, len(units)).flatMap(
        lambda unit: _curve_rows(files, *unit, owner, npig, videos)).collect()
    return pd.DataFrame(rows, columns=[f.strip().split(" ")[0] for f in coco.CURVES_SCHEMA.split(",")])


def class_shares(npig: dict, shares: int) -> dict:
    """Class -> the ``local_curves`` share that accumulates it: the classes with the most
    ground truth (a class's detections are about as many) first, each to the share with the
    least so far; a class without ground truth (cheap: no curve to compute) to share 0."""
    weight = {cls: int(np.sum(n)) for (cls, video), n in npig.items() if video is None}
    load, owner = [0] * shares, {}
    for cls in sorted(weight, key=lambda c: (-weight[c], c)):
        owner[cls] = load.index(min(load))
        load[owner[cls]] += weight[cls]
    return owner


def _curve_rows(files: list[str], share: int, whole: bool, owner: dict, npig: dict, videos: list[str]) -> list:
    """One ``local_curves`` task: the detections of its classes (``class_shares``) read from
    ``files`` (the workers' Arrow files, else the staged Parquet), with the image key
    ``coco_tables`` builds in Spark (the video's sorted position << 32, the frame + 2**31)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    if files[0].endswith(".arrow"):  # fastpath.curve_boxes: detections with c_rank >= 0
        t = pa.concat_tables([fastpath.load_arrow(f) for f in files])
        mine = [c for c in pc.unique(t.column("cls")).drop_null().to_pylist() if owner.get(c, 0) == share]
        t = t.filter(pc.is_in(t.column("cls"), value_set=pa.array(mine, pa.string())))
    else:
        boxes = ds.dataset(files, format="parquet")
        classes = pc.unique(boxes.to_table(columns=["cls"]).column("cls")).drop_null().to_pylist()
        mine = [c for c in classes if owner.get(c, 0) == share]
        t = boxes.to_table(columns=coco.CURVE_BOXES,
                           filter=(ds.field("c_rank") >= 0) & ds.field("cls").isin(pa.array(mine, pa.string())))
    if not t.num_rows:
        return []
    position = pc.index_in(t.column("video"), value_set=pa.array(videos, pa.string())).to_numpy(zero_copy_only=False)
    image = (position.astype(np.int64) << 32) + t.column("frame").to_numpy().astype(np.int64) + 2 ** 31
    batch = pa.table({"image": image, **{c: t.column(c) for c in coco.CURVE_INPUT if c != "image"}})
    return [r for b in coco.curve_batches(npig, whole, videos)(iter(batch.to_batches())) for r in b.to_pylist()]


def gt_class_counts(matched: DataFrame) -> list[tuple]:
    """(class, video, ground-truth boxes not ignored per area range) of the matched boxes."""
    bits = [F.sum((F.shiftright("c_ig", a).bitwiseAND(1) == 0).cast("long")).alias(f"n{a}") for a in range(coco.N_A)]
    rows = matched.where(F.col("kind") == 0).groupBy("cls", "video").agg(*bits).collect()
    return [(r["cls"], r["video"], [r[f"n{a}"] for a in range(coco.N_A)]) for r in rows]


def ground_truth_counts(rows: list[tuple]) -> dict:
    """(class, video) and (class, None) -> ground-truth boxes not ignored per area range, from
    (class, video, counts) rows (a pair may come in several rows: they add up)."""
    out: dict = {}
    for cls, video, counts in rows:
        n = np.asarray(counts, np.int64)
        out[(cls, video)] = out.get((cls, video), 0) + n
        out[(cls, None)] = out.get((cls, None), 0) + n
    return out


def resolve_snaps(spark: SparkSession, cfg: DetectionConfig, videos: list[str]) -> dict[str, int]:
    """Snap frame per video: one frame for all, or a table/CSV with video (or gameKey,
    playID) and snap_frame (or frame)."""
    if cfg.snap is None:
        return {}
    if cfg.snap_frame is not None:
        return {v: cfg.snap_frame for v in videos}
    raw = read_source(spark, cfg.snap, "snap frames (--snap)").drop("_malformed", "_raw").toPandas()
    cols = {c.lower(): c for c in raw.columns}
    frame_col = cols.get("snap_frame") or cols.get("frame")
    if frame_col is None:
        raise InputError(f"snap input {cfg.snap} needs a snap_frame column; columns: {', '.join(raw.columns)}")
    snaps: dict[str, int] = {}
    stems = {os.path.splitext(v)[0]: v for v in videos}
    for row in raw.itertuples(index=False):
        rec = dict(zip(raw.columns, row))
        try:
            frame = int(float(rec[frame_col]))
        except (TypeError, ValueError):
            continue
        if "video" in cols:
            name = str(rec[cols["video"]])
            video = name if name in videos else stems.get(os.path.splitext(name)[0])
            if video:
                snaps[video] = frame
        elif "gamekey" in cols and "playid" in cols:
            prefix = f"{int(float(rec[cols['gamekey']]))}_{int(float(rec[cols['playid']])):06d}_"
            for v in videos:
                if v.startswith(prefix):
                    snaps[v] = frame
        else:
            raise InputError(f"snap input {cfg.snap} needs a video (or gameKey, playID) column")
    return snaps


# ----------------------------------------------------------------------------- the job


def run_detection_metrics(spark: SparkSession, cfg: DetectionConfig, progress=print) -> dict:
    """Evaluate cfg.pred against cfg.gt; write the tables and plots; return the summary."""
    t0 = time.monotonic()
    plots_dir = plot_location(spark, cfg)
    fast, rows = fastpath.plan(spark, cfg), None
    if fast is None:
        rows, gt_layout, pred_layout = load_inputs(spark, cfg)
    else:
        gt_layout, pred_layout = fast.gt.layout, fast.pred.layout
    progress(f"ground truth: {gt_layout.kind} layout; detections: boxes as {pred_layout.box_style}; "
             f"{'single class' if gt_layout.single_class or cfg.merge_labels else 'per class'}")
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    staging = staging_path(spark, cfg.out_db, run_id)  # <staging>/boxes, /frames, /impact
    try:
        staged, counts, seen = stage_matches(spark, cfg, fast, rows, staging, progress)
        matched = staged.where(F.col("_reason").isNull())
        npig = ground_truth_counts(seen["npig"]) if seen else None
        if cfg.coco_only:
            frames, errors, videos_pd = None, None, None
            coco_pd, curves_pd = coco_only_tables(spark, matched, seen.get("videos"), f"{staging}/boxes", npig,
                                                  progress)
        else:
            frames = stage_frames(matched, staging, staged=counts["reader"] == "arrow")
            errors = spark.read.parquet(f"{staging}/errors") if counts["reader"] == "arrow" else error_rows(matched)
            videos_pd, coco_pd, curves_pd = video_metrics(spark, cfg, frames, matched, f"{staging}/boxes", progress,
                                                          npig)
        tables, impact = write_tables(spark, cfg, run_id, (staged, counts["rows_quarantined"]), matched,
                                      (frames, errors), videos_pd, coco_pd, progress)
        plots = write_plots(spark, cfg, plots_dir, frames, matched, videos_pd, curves_pd, coco_pd, progress)
    finally:
        fs.remove(spark, staging)
    summary = job_summary(cfg, gt_layout, videos_pd, counts, tables, plots, run_id, coco_pd)
    summary["seconds"] = round(time.monotonic() - t0, 3)
    if impact is not None:
        summary["nfl_impact"] = impact
    return summary


def plot_location(spark: SparkSession, cfg: DetectionConfig) -> str:
    """--plots, else <results>/plots/detection; checked before any work when plots are on."""
    plots_dir = cfg.plots_dir or fs.join(results_root(spark), "plots", "detection")
    if cfg.max_plots > 0:
        fs.check_location(spark, plots_dir, "plot directory")
    return plots_dir


def stage_matches(spark: SparkSession, cfg: DetectionConfig, fast: fastpath.Plan | None, rows: DataFrame | None,
                  staging: str, progress) -> tuple[DataFrame, dict, dict]:
    """Match every frame and stage the result (every input row) as Parquet: by the Python
    workers alone where ``fast`` applies and the inputs are clean (``fastpath``), else in
    Spark. Count it and stop, before any table is written, when too many rows are bad.
    Returns the staged rows, their counts and what the workers saw (``fastpath.Plan.run``'s
    ground-truth counts and videos; empty after Spark's path)."""
    staged_path, frames_path, errors_path = f"{staging}/boxes", f"{staging}/frames", f"{staging}/errors"
    rules = "COCO's rules only" if cfg.coco_only else \
        f"IoU >= {cfg.iou_thr}, score >= {cfg.conf_thr}, {cfg.match}; COCO thresholds for AP"
    progress(f"checking and matching ({rules}), staged under {staged_path}")
    with StageProgress(spark, progress):
        declined, fast_counts, seen = fast.run(spark, staged_path, frames_path, errors_path) if fast else (None, [], {})
        if declined:
            progress(f"the Python workers' reader declined ({declined}); reading with Spark")
            fs.remove(spark, staged_path)
            fs.remove(spark, frames_path)
            fs.remove(spark, errors_path)
            rows = load_inputs(spark, cfg)[0]
        if rows is not None:
            match_frames(spark, rows, cfg.params).write.mode("overwrite").parquet(staged_path)
    staged = spark.read.parquet(staged_path)
    counts = check_counts(fast_counts if rows is None else staged.groupBy("kind", "_reason").count().collect(),
                          cfg.max_bad_fraction)
    counts["reader"] = "spark" if rows is not None else "arrow"
    progress(f"read {counts['rows_read']['gt']:,} ground-truth and {counts['rows_read']['pred']:,} detection rows; "
             f"{counts['rows_quarantined']:,} quarantined")
    return staged, counts, seen if rows is None else {}


def stage_frames(matched: DataFrame, staging: str, staged: bool) -> DataFrame:
    """det_frames, staged as Parquet rather than cached: four queries read it, and the RAPIDS
    Accelerator reads Parquet on the GPU but not Spark's in-memory cache (by default).
    ``staged``: the Python workers' reader wrote it already (``fastpath.frame_rows``)."""
    path = f"{staging}/frames"
    if not staged:
        frame_metrics(matched).write.mode("overwrite").parquet(path)
    return matched.sparkSession.read.parquet(path)


def coco_only_tables(spark: SparkSession, matched: DataFrame, videos: list[str] | None, staged_dir: str,
                     npig: dict | None, progress) -> tuple[pd.DataFrame, pd.DataFrame]:
    """--coco-only: the det_coco rows and the per-class curves, without the per-frame analysis
    (``videos``: every video, where the caller has them)."""
    if videos is None:
        videos = [r["video"] for r in matched.select("video").distinct().collect()]
    progress(f"COCO's evaluation over {len(videos):,} video(s)")
    return coco_tables(spark, matched, videos, staged_dir, npig)


def video_metrics(spark: SparkSession, cfg: DetectionConfig, frames: DataFrame, matched: DataFrame, staged_dir: str,
                  progress, npig: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The det_videos rows as pandas (the overall row first): counts, AP, snap frame, rates;
    the det_coco rows (``coco.figures``) and the per-class curves (``npig``: as for
    ``coco_tables``)."""
    counts_pd = video_counts(frames)
    progress(f"{int(counts_pd['frames'].iloc[0]):,} frames in {len(counts_pd) - 1:,} videos; computing AP")
    figures_pd, curves_pd = coco_tables(spark, matched, list(counts_pd["video"].iloc[1:]), staged_dir, npig)
    ap_pd = figures_pd[figures_pd["scope"] != "class"][["video", "ap", "ap50", "ap75"]]
    ap_pd = ap_pd.assign(**{k: ap_pd[k].where(ap_pd[k] > -1) for k in ("ap", "ap50", "ap75")})
    videos_pd = counts_pd.merge(ap_pd, on="video", how="left")
    snaps = resolve_snaps(spark, cfg, [v for v in videos_pd["video"] if v is not None])
    videos_pd["snap_frame"] = [snaps.get(v) if v is not None else None for v in videos_pd["video"]]
    for k in ("precision", "recall", "f1"):
        videos_pd[k] = [rates(r.tp, r.fp, r.fn)[k] for r in videos_pd.itertuples()]
    return videos_pd, figures_pd, curves_pd


def table_properties(cfg: DetectionConfig, run_id: str) -> dict[str, str]:
    """The inputs and parameters, recorded on every output table."""
    return {
        "mljobs.detection_metrics.gt": cfg.gt, "mljobs.detection_metrics.pred": cfg.pred,
        "mljobs.detection_metrics.conf_thr": str(cfg.conf_thr), "mljobs.detection_metrics.iou_thr": str(cfg.iou_thr),
        "mljobs.detection_metrics.match": cfg.match, "mljobs.detection_metrics.pixel_plus_one": str(cfg.pixel_plus_one).lower(),
        "mljobs.detection_metrics.merge_labels": str(cfg.merge_labels).lower(), "mljobs.detection_metrics.run_id": run_id,
    }


def write_tables(spark: SparkSession, cfg: DetectionConfig, run_id: str, staged: tuple, matched: DataFrame,
                 per_frame: tuple, videos_pd: pd.DataFrame, coco_pd: pd.DataFrame,
                 progress) -> tuple[list, dict | None]:
    """Stage det_frames, det_videos, det_errors, det_quarantine and det_coco at once and swap
    them in together (then det_impact with --nfl-impact; --coco-only: det_quarantine and
    det_coco alone); returns the tables' names and the NFL metric (or None). ``staged``: the
    staged boxes and how many of them are quarantined; ``per_frame``: det_frames and the
    ``error_rows`` (None with --coco-only)."""
    db, props = cfg.out_db, table_properties(cfg, run_id)
    (staged, quarantined), (frames, errors) = staged, per_frame
    names = COCO_ONLY_TABLES if cfg.coco_only else TABLES
    progress(f"writing {', '.join(f'{db}.{t}' for t in names)}")
    lazy = {"det_frames": lambda: frames, "det_videos": lambda: videos_frame(spark, videos_pd),
            "det_errors": lambda: error_boxes(errors, frames), "det_quarantine": lambda: quarantine_rows(staged),
            "det_coco": lambda: coco_frame(spark, coco_pd)}
    empty = () if quarantined else ("det_quarantine",)
    stage_all(spark, db, {name: lazy[name]() for name in names}, props, empty)
    tables = commit(spark, db, list(names))
    impact = None
    if cfg.nfl_impact:
        progress("NFL impact metric (impact = 1, confidence > 1, visibility > 0; +-4 frames, IoU >= 0.35)")
        per_video, impact = nfl.impact_score(spark, matched, cfg.conf_thr, cfg.pixel_plus_one,
                                             stage_path=staging_path(spark, cfg.out_db, run_id, "impact"))
        tables.append(replace_table(spark, db, "det_impact", per_video, props))
    return tables, impact


def write_plots(spark: SparkSession, cfg: DetectionConfig, plots_dir: str, frames: DataFrame, matched: DataFrame,
                videos_pd: pd.DataFrame, curves_pd: pd.DataFrame, coco_pd: pd.DataFrame, progress) -> list[str]:
    """The plots of up to --max-plots videos under plots_dir; their final locations."""
    if cfg.max_plots <= 0:
        return []
    from mljobs.detection_metrics import plots as plotting

    progress(f"plots under {plots_dir}")
    with fs.output_dir(spark, plots_dir) as out:
        made = [] if cfg.coco_only else plotting.plot_videos(spark, frames, matched, videos_pd, out.local, cfg,
                                                             progress)
        made += plotting.class_pr_plots(curves_pd, coco_pd, out.local, cfg.max_plots)
    return [out.final(x) for x in made]


def job_summary(cfg: DetectionConfig, gt_layout: Layout, videos_pd: pd.DataFrame | None, counts: dict, tables: list,
                plots: list, run_id: str, coco_pd: pd.DataFrame | None = None) -> dict:
    """The summary's metrics, counts and parameters (run_detection_metrics adds the timing);
    with --coco-only (``videos_pd`` None) the per-frame figures are None."""
    per_frame = videos_pd is not None
    return {
        "overall": _metrics(videos_pd.iloc[0]) if per_frame else None,
        "videos": {r.video: _metrics(r) for r in videos_pd.iloc[1:].itertuples()} if per_frame else {},
        "frames": int(videos_pd["frames"].iloc[0]) if per_frame else None,
        "frames_with_errors": int(videos_pd["frames_with_errors"].iloc[0]) if per_frame else None,
        "coco_only": cfg.coco_only,
        "rows_read": counts["rows_read"],
        "rows_quarantined": counts["rows_quarantined"],
        "reader": counts["reader"],
        "quarantine_reasons": counts["quarantine_reasons"],
        "tables": tables,
        "plots": plots,
        "params": {"conf_thr": cfg.conf_thr, "iou_thr": cfg.iou_thr, "match": cfg.match,
                   "merge_labels": cfg.merge_labels or gt_layout.single_class, "pixel_plus_one": cfg.pixel_plus_one,
                   "gt_layout": gt_layout.kind},
        "run_id": run_id,
        "coco": coco_summary(coco_pd) if coco_pd is not None else None,
    }


def coco_summary(coco_pd: pd.DataFrame) -> dict:
    """The twelve COCO figures: overall, per video, per class (-1 where COCO prints -1)."""
    def figs(r):
        return {k: round(float(getattr(r, k)), 9) for k in coco.STATS}

    rows = list(coco_pd.itertuples(index=False))
    return {
        "overall": figs(rows[0]),
        "videos": {r.video: figs(r) for r in rows if r.scope == "video"},
        "classes": {r.cls: figs(r) for r in rows if r.scope == "class"},
    }


COCO_SCHEMA = "scope string, video string, cls string, " + ", ".join(f"{k} double" for k in coco.STATS)


def coco_frame(spark: SparkSession, coco_pd: pd.DataFrame) -> DataFrame:
    """det_coco: one row overall, per video and per class; the twelve figures."""
    records = [(r.scope, r.video, r.cls, *[float(getattr(r, k)) for k in coco.STATS])
               for r in coco_pd.itertuples(index=False)]
    return spark.createDataFrame(records, COCO_SCHEMA)


def _metrics(row) -> dict:
    get = row.get if isinstance(row, (dict, pd.Series)) else lambda k: getattr(row, k)
    out = {}
    for k in METRIC_KEYS + ("num_gt", "num_det", "frames", "frames_with_errors"):
        v = get(k)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out[k] = None
        elif k in ("tp", "fp", "fn", "num_gt", "num_det", "frames", "frames_with_errors"):
            out[k] = int(v)
        else:
            out[k] = float(v)
    return out


VIDEOS_SCHEMA = (
    "scope string, video string, frames int, frames_with_errors int, num_gt bigint, num_det bigint, "
    "tp bigint, fp bigint, fn bigint, precision double, recall double, f1 double, ap double, ap50 double, "
    "ap75 double, snap_frame int"
)


def videos_frame(spark: SparkSession, videos_pd: pd.DataFrame) -> DataFrame:
    cols = [f.strip().split(" ")[0] for f in VIDEOS_SCHEMA.split(",")]
    records = []
    for r in videos_pd[cols].itertuples(index=False):
        rec = []
        for c, v in zip(cols, r):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                rec.append(None)
            elif c in ("scope", "video"):
                rec.append(str(v))
            elif c in ("precision", "recall", "f1", "ap", "ap50", "ap75"):
                rec.append(float(v))
            else:
                rec.append(int(v))
        records.append(tuple(rec))
    return spark.createDataFrame(records, VIDEOS_SCHEMA)


def quarantine_rows(staged: DataFrame) -> DataFrame:
    """det_quarantine: every rejected row, which input it came from, why, and its line."""
    return staged.where(F.col("_reason").isNotNull()).select(
        F.when(F.col("kind") == 0, "gt").otherwise("pred").alias("input"), "video", "frame",
        F.col("_reason").alias("reason"), F.col("_raw").alias("raw_line"),
    )


def check_counts(counts: list, max_bad_fraction: float) -> dict:
    """Rows read / quarantined per input; stop (nothing written) on empty inputs or when
    more than max_bad_fraction of the rows are bad."""
    read = {"gt": 0, "pred": 0}
    bad = {"gt": 0, "pred": 0}
    reasons: dict[str, int] = {}
    for row in counts:
        what = "gt" if row["kind"] == 0 else "pred"
        read[what] += row["count"]
        if row["_reason"] is not None:
            bad[what] += row["count"]
            key = f"{what}: {row['_reason']}"
            reasons[key] = reasons.get(key, 0) + row["count"]
    for what, name in (("gt", "ground truth"), ("pred", "detections")):
        if read[what] and read[what] == bad[what]:
            top = ", ".join(f"{k} ({v})" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
            raise BadDataError(f"every {name} row is malformed ({read[what]:,} rows; {top}); nothing was written")
    if read["gt"] + read["pred"] == 0:
        raise InputError("the ground truth and the detections have no rows")
    total_bad = bad["gt"] + bad["pred"]
    fraction = total_bad / (read["gt"] + read["pred"])
    if fraction > max_bad_fraction:
        top = ", ".join(f"{k} ({v})" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:5])
        raise BadDataError(
            f"{total_bad:,} of {read['gt'] + read['pred']:,} rows are malformed ({fraction:.2%} > "
            f"--max-bad-fraction {max_bad_fraction:.2%}); nothing was written. Reasons: {top}"
        )
    return {"rows_read": read, "rows_quarantined": total_bad, "rows_quarantined_by_input": bad,
            "quarantine_reasons": dict(sorted(reasons.items()))}


# ---- what the rest of the system knows about this job (see mljobs.registry)
NAME = "detection-metrics"
CONFIG = DetectionConfig
run = run_detection_metrics
EMR_STEP = EmrStep(needs=("gt", "pred"), args=lambda p: ["--gt", p.gt, "--pred", p.pred],
                   label=lambda p: "detection")
GPU_FALLBACKS = [
    Known("RDDScanExec", UNSUPPORTED_CLASS, "detection_metrics/job.py spark_curves: the videos' sorted positions",
          "one row per video, built on the driver and broadcast to give COCO's accumulation an integer image key "
          "where the staged boxes are not local files (local ones are read by the accumulation's tasks); "
          + DRIVER_ROWS, columns=("_vid", "video"), required=False),
    Known("RDDScanExec", UNSUPPORTED_CLASS, "detection_metrics/job.py coco_frame: det_coco rows",
          "one row overall, per video and per class, the COCO figures summarised on the driver from the "
          "per-class curves, written to Parquet; " + DRIVER_ROWS, columns=("scope", "video", "cls")),
    Known("RDDScanExec", UNSUPPORTED_CLASS, "detection_metrics/job.py videos_frame: det_videos rows",
          "one row per video plus the overall row, with AP computed on the driver, written to Parquet; "
          + DRIVER_ROWS, columns=("scope", "video", "ap")),
]
