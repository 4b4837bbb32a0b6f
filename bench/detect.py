#!/usr/bin/env python3
"""Benchmark: the detect job's frames/s with a torch detector of train-detector, against a
single-process torch loop over the same frames and the same model.

Usage::

    PYTHONPATH=lib .venv/bin/python bench/detect.py [--quick] [--model DIR] [--plays N] [--frames F]
        [--size WxH] [--copies C] [--image-size PX] [--epochs E] [--repeats R] [--hog-frames N]
        [--workdir DIR] [--json-out FILE]
    PYTHONPATH=lib .venv/bin/python bench/detect.py --quality [--quality-plays 10] [--quality-test-plays 3]
        [--quality-every 4] [--quality-epochs 12] [--quality-image-size 640] [--arch ARCH] [--workdir DIR]

Data: ``python -m mljobs.datasets.helmets render`` plays (N=4 of F=60 frames at 640x360; made
once per workdir), ingested with the ``frames`` job (JPEG 95) as ``bench.frames``; for the speed
part each frame is scored ``--copies`` times (bench.frames_x<C>, every row C times, in 8
Parquet files: 5 -> 1,200 frames; --quick: 2 -> 480), so the job's fixed costs (Python workers'
start, the model's load once per worker, the staging and swapping of two tables) are not most of
the time.

The model: ``--model DIR`` (a train-detector model directory), else one trained here by the
train-detector job on every 6th frame of the plays and their boxes (``--epochs`` 1,
``--image-size`` 160, the default arch): a real train-detector artifact; its quality does not
matter for speed.

* ours: the ``detect`` job (``--frames bench.frames_x<C> --model DIR``, its defaults: 16 frames
  per Arrow batch, ``spark.task.cpus`` = 1 torch thread per task) in a local[2] SparkSession,
  JVM start excluded; frames/s = frames / its ``detect_seconds`` (the scoring pass: read,
  decode, score, stage as Parquet); the whole job (counts, two tables staged and swapped in) is
  reported apart.
* the loop: one Python process over the same encoded frames (collected to the driver
  beforehand, not timed): ``torchdet.to_image`` on each frame and ``torchdet.predict`` on each
  batch of 16 (detect's batch size and functions), the net from ``torchdet.net_of`` on 2 torch
  threads.

``--repeats R`` alternates the two R times (3; 1 with --quick); medians. CPU per frame beside
wall: for ours the user + system seconds of this process's whole tree (driver JVM, Python
workers, exited children included; ``benchlib.cpu_tree_seconds``); for the loop its own
``process_time``. ``ratio_cpu`` = the loop's CPU per frame over ours: the wall ratio if both had
the same idle cores. Peak RSS of the driver's process tree (JVM + Python workers, this process
included) during ours; memory flatness: the job's peak on the frames C times and 2C times.

``--hog-frames N`` (default 240, --quick 96; 0: off): the same comparison, once, for ``opencv:hog-people``
on the first N frames of bench.frames (its loop: ``detectors.frame_rows`` per frame, OpenCV on
2 threads). The LAST stdout line is JSON.

``--quality``: instead, the issue's quality target. ``--quality-plays`` (10) rendered plays of
seed 11 at ``--size`` train a ``--arch`` detector (default ``fasterrcnn_resnet18_fpn``, 640 px,
``--quality-epochs`` 12, batch 4, every ``--quality-every``-th frame, one play held out for
validation) through the ``frames`` and ``train-detector`` jobs; ``--quality-test-plays`` (3) other
plays (seed 23) go through ``frames``, ``detect`` (every frame) and ``detection-metrics`` at
score >= 0.9, IoU >= 0.5: precision, recall, F1 and COCO's AP50 on the held-out plays, and the
training's wall and CPU seconds.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
sys.path.insert(0, str(ROOT / "bench"))
from benchlib import RssPoller, cpu_tree_seconds, emit, local_spark, log, machine_info  # noqa: E402

BATCH = 16  # detect's --batch-size default (DetectConfig.batch_size)


def quiet(*_):
    pass


def make_frames(spark, work: Path, plays: int, frames: int, size: str) -> tuple[Path, int]:
    """The rendered plays (once per workdir) as bench.frames; (their folder, frames)."""
    from mljobs.datasets import helmets
    from mljobs.frames.config import FramesConfig
    from mljobs.frames.job import run

    where = work / f"videos-{plays}x{frames}-{size}"
    if not (where / "train_labels.csv").exists():
        helmets.render(where, plays=plays, frames=frames, size=tuple(int(v) for v in size.split("x")), seed=11,
                       force=True)
    s = run(spark, FramesConfig(videos=str(where), table="bench.frames"), quiet)
    assert s["quarantined"] == 0, s
    return where, s["frames"]


def train_model(spark, work: Path, videos: Path, epochs: int, image_size: int) -> tuple[str, float]:
    """A train-detector model on every 6th frame of the plays; (its directory, seconds)."""
    from mljobs.frames.config import FramesConfig
    from mljobs.frames.job import run as frames_run
    from mljobs.train_detector.config import TrainDetectorConfig
    from mljobs.train_detector.job import run

    frames_run(spark, FramesConfig(videos=str(videos), table="bench.train_frames", every=6), quiet)
    model = work / f"model-e{epochs}-s{image_size}"
    t0 = time.monotonic()
    run(spark, TrainDetectorConfig(frames="bench.train_frames", labels=str(videos / "train_labels.csv"),
                                   model_dir=str(model), epochs=epochs, image_size=image_size, batch_size=4,
                                   training_table="bench.detector_training"), log)
    return str(model), time.monotonic() - t0


def repeated(spark, table: str, copies: int) -> str:
    """``table`` with each row ``copies`` times, in 8 Parquet files (as bench/classifier.py)."""
    out = f"{table}_x{copies}"
    spark.sql(f"DROP TABLE IF EXISTS {out}")
    (spark.table(table).crossJoin(spark.range(copies).withColumnRenamed("id", "copy")).repartition(8)
     .write.saveAsTable(out))
    return out


def ours(spark, model: str, table: str) -> dict:
    """One detect run: frames/s of its scoring pass, CPU ms per frame (pass, whole job), peak RSS."""
    from mljobs.detect.config import DetectConfig
    from mljobs.detect.job import run

    marks = {}

    def progress(msg: str) -> None:
        if msg.startswith("scored "):
            marks["pass"] = cpu_tree_seconds()

    c0 = cpu_tree_seconds()
    with RssPoller() as rss:
        s = run(spark, DetectConfig(model=model, frames=table, out_table="bench.detections"), progress)
    cpu = cpu_tree_seconds() - c0
    n = s["frames_scored"]
    assert n == s["frames"] and s["quarantined"] == 0, s
    return {"frames": n, "frames_per_s": n / s["detect_seconds"], "job_seconds": s["seconds"],
            "detect_seconds": s["detect_seconds"], "cpu_ms": cpu * 1e3 / n,
            "pass_cpu_ms": (marks["pass"] - c0) * 1e3 / n, "peak_mb": rss.peak_mb, "detections": s["detections"]}


def torch_loop(model: str, contents: list[bytes]) -> dict:
    """One process: detect's preprocessing and forward pass on every frame, 16 at a time, 2 threads."""
    from mljobs.models import torchdet

    meta = torchdet.load_detector(model)
    net = torchdet.net_of(meta.to_json(), meta.weights(), "cpu", threads=2)
    t0, c0, dets = time.monotonic(), time.process_time(), 0
    for i in range(0, len(contents), BATCH):
        images = [torchdet.to_image(c) for c in contents[i:i + BATCH]]
        for found in torchdet.predict(net, images, "cpu", len(images)):
            dets += len(found["scores"])
    wall, cpu = time.monotonic() - t0, time.process_time() - c0
    return {"frames_per_s": len(contents) / wall, "cpu_ms": cpu * 1e3 / len(contents), "detections": dets}


def hog_loop(contents: list[tuple]) -> dict:
    """One process: detect's HOG rows (decode + detectMultiScale) per frame, OpenCV on 2 threads."""
    from mljobs.models import detectors

    spec = detectors.resolve_model(detectors.PREFIX + detectors.HOG_PEOPLE)
    params = detectors.DetectParams(threads=2)
    hog = detectors.build_detector(spec, 2)
    t0, c0, dets = time.monotonic(), time.process_time(), 0
    for video, frame, content in contents:
        dets += len(detectors.frame_rows(hog, spec, params, video, frame, content)) - 1
    wall, cpu = time.monotonic() - t0, time.process_time() - c0
    return {"frames_per_s": len(contents) / wall, "cpu_ms": cpu * 1e3 / len(contents), "detections": dets}


def quality(spark, work: Path, args) -> dict:
    """The issue's quality target: a detector trained only by this pipeline on rendered plays
    (frames -> train-detector), scored on other rendered plays (detect -> detection-metrics at
    score >= 0.9, IoU >= 0.5: precision, recall, F1 and COCO's AP50 over every frame)."""
    from mljobs.datasets import helmets
    from mljobs.detect.config import DetectConfig
    from mljobs.detect.job import run as detect
    from mljobs.detection_metrics.config import DetectionConfig
    from mljobs.detection_metrics.job import run_detection_metrics
    from mljobs.frames.config import FramesConfig
    from mljobs.frames.job import run as frames_run
    from mljobs.train_detector.config import TrainDetectorConfig
    from mljobs.train_detector.job import run as train

    size = tuple(int(v) for v in args.size.split("x"))
    train_dir, test_dir = work / "quality-train", work / "quality-test"
    helmets.render(train_dir, plays=args.quality_plays, frames=args.frames, size=size, seed=11, force=True)
    helmets.render(test_dir, plays=args.quality_test_plays, frames=args.frames, size=size, seed=23, force=True)
    frames_run(spark, FramesConfig(videos=str(train_dir), table="bench.q_train_frames", every=args.quality_every),
               quiet)
    test = frames_run(spark, FramesConfig(videos=str(test_dir), table="bench.q_test_frames"), quiet)
    model = work / "quality-model"
    t0, c0 = time.monotonic(), cpu_tree_seconds()
    trained = train(spark, TrainDetectorConfig(
        frames="bench.q_train_frames", labels=str(train_dir / "train_labels.csv"), model_dir=str(model),
        arch=args.arch, epochs=args.quality_epochs, image_size=args.quality_image_size, batch_size=4,
        val_fraction=0.1, training_table="bench.q_training"), log)
    train_s, train_cpu = time.monotonic() - t0, cpu_tree_seconds() - c0
    found = detect(spark, DetectConfig(model=str(model), frames="bench.q_test_frames", out_table="bench.q_detections"),
                   quiet)
    m = run_detection_metrics(spark, DetectionConfig(gt=str(test_dir / "train_labels.csv"), pred="bench.q_detections",
                                                     conf_thr=0.9, iou_thr=0.5, out_db="bench_q", max_plots=0), quiet)
    o = m["overall"]
    figures = {k: round(float(o[k]), 4) for k in ("precision", "recall", "f1")}
    figures["ap50"] = round(m["coco"]["overall"]["ap50"], 4)
    figures["ap"] = round(m["coco"]["overall"]["ap"], 4)
    log(f"quality on {test['frames']} held-out frames: {figures} (trained {train_s:.0f}s)")
    return {**figures, "targets": {"precision": 0.97, "recall": 0.93, "f1": 0.95, "ap50": 0.95},
            "test": {"plays": args.quality_test_plays, "frames": test["frames"], "gt_boxes": o["num_gt"],
                     "tp": o["tp"], "fp": o["fp"], "fn": o["fn"]},
            "train": {"plays": args.quality_plays, "every": args.quality_every,
                      "frames": {k: trained[k] for k in ("train_frames", "val_frames")},
                      "arch": args.arch, "image_size": args.quality_image_size, "epochs": args.quality_epochs,
                      "epochs_run": trained["epochs_run"], "best_epoch": trained.get("best_epoch"),
                      "seconds": round(train_s, 1), "cpu_seconds": round(train_cpu, 1),
                      "history": trained["history"]},
            "detections": found["detections"]}


def rounded(d: dict) -> dict:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in d.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 copies (480 frames), 1 repeat, 96 HOG frames")
    p.add_argument("--model", default=None, help="a train-detector model directory (default: train one here)")
    p.add_argument("--plays", type=int, default=4)
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--size", default="640x360")
    p.add_argument("--copies", type=int, default=None, help="each frame scored this many times (5; --quick 2)")
    p.add_argument("--image-size", type=int, default=160, help="of the model trained here")
    p.add_argument("--epochs", type=int, default=1, help="of the model trained here")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--hog-frames", type=int, default=None, help="240; --quick 96; 0: off")
    p.add_argument("--quality", action="store_true", help="only the quality target (train, detect, evaluate)")
    p.add_argument("--quality-plays", type=int, default=10, help="rendered plays to train on (seed 11)")
    p.add_argument("--quality-test-plays", type=int, default=3, help="held-out rendered plays (seed 23)")
    p.add_argument("--quality-every", type=int, default=4, help="train on every Nth frame")
    p.add_argument("--quality-epochs", type=int, default=12)
    p.add_argument("--quality-image-size", type=int, default=640)
    p.add_argument("--arch", default="fasterrcnn_resnet18_fpn", help="of the quality run's detector")
    p.add_argument("--workdir", default=None)
    p.add_argument("--json-out", default=None)
    args = p.parse_args(argv)
    copies = args.copies or (2 if args.quick else 5)
    repeats = args.repeats or (1 if args.quick else 3)
    hog_frames = (96 if args.quick else 240) if args.hog_frames is None else args.hog_frames
    work = Path(args.workdir or tempfile.mkdtemp(prefix="mljobs-bench-detect-"))
    t_start = time.monotonic()
    spark = local_spark("bench-detect", work)
    if args.quality:
        result = {"bench": "detect-quality", **quality(spark, work, args)}
        spark.stop()
        result["seconds"] = round(time.monotonic() - t_start, 1)
        result["machine"] = machine_info()
        emit(result, args.json_out)
        return 0
    videos, n_frames = make_frames(spark, work, args.plays, args.frames, args.size)
    log(f"bench.frames: {n_frames:,} frames of {args.plays} plays at {args.size}")
    train_s = None
    model = args.model
    if model is None:
        model, train_s = train_model(spark, work, videos, args.epochs, args.image_size)
        log(f"trained {model} in {train_s:.0f}s")
    from mljobs.models import torchdet

    meta = torchdet.load_detector(model)
    table = repeated(spark, "bench.frames", copies)
    contents = [r["content"] for r in spark.table(table).select("content").collect()]
    n = len(contents)
    log(f"{table}: {n:,} frames, {spark.table(table).rdd.getNumPartitions()} input partitions")

    runs, loops, loads = [], [], []
    for r in range(repeats):
        runs.append(ours(spark, model, table))
        loops.append(torch_loop(model, contents))
        loads.append(round(os.getloadavg()[0], 2))
        o, lp = runs[-1], loops[-1]
        log(f"run {r + 1}: detect {o['frames_per_s']:.1f} frames/s (pass {o['detect_seconds']:.1f}s, job "
            f"{o['job_seconds']:.1f}s; CPU ms/frame pass {o['pass_cpu_ms']:.1f}, job {o['cpu_ms']:.1f}; peak "
            f"{o['peak_mb']:,.0f} MB), loop {lp['frames_per_s']:.1f} frames/s ({lp['cpu_ms']:.1f} CPU ms/frame); "
            f"load {loads[-1]}")
    # the same work: as many boxes both sides (up to a box at the net's threshold, 1 vs 2 torch threads)
    log(f"boxes: detect {[o['detections'] for o in runs]}, loop {[x['detections'] for x in loops]}")

    # memory flat in the number of frames: the job on 2C copies (its peak beside the C runs')
    table2 = repeated(spark, "bench.frames", 2 * copies)
    double = ours(spark, model, table2)
    log(f"detect on {double['frames']:,} frames: peak {double['peak_mb']:,.0f} MB "
        f"(on {n:,}: {max(o['peak_mb'] for o in runs):,.0f} MB), {double['frames_per_s']:.1f} frames/s")

    med = lambda key, xs: median(x[key] for x in xs)  # noqa: E731
    result = {"bench": "detect", "quick": args.quick, "plays": args.plays, "frames_per_play": args.frames,
              "size": args.size, "distinct_frames": n_frames, "copies": copies, "frames": n, "repeats": repeats,
              "batch_size": BATCH, "model": {"dir": model, "arch": meta.arch, "image_size": meta.image_size,
                                             "trained_here_seconds": train_s and round(train_s, 1)},
              "ours_frames_per_s": round(med("frames_per_s", runs), 2),
              "ours_each": [rounded(o) for o in runs],
              "ours_job_frames_per_s": round(n / med("job_seconds", runs), 2),
              "ours_cpu_ms_per_frame": round(med("cpu_ms", runs), 2),
              "ours_pass_cpu_ms_per_frame": round(med("pass_cpu_ms", runs), 2),
              "loop_frames_per_s": round(med("frames_per_s", loops), 2), "loop_each": [rounded(x) for x in loops],
              "loop_cpu_ms_per_frame": round(med("cpu_ms", loops), 2),
              "ratio_vs_loop": round(med("frames_per_s", runs) / med("frames_per_s", loops), 3), "target_ratio": 0.9,
              "ratio_cpu": round(med("cpu_ms", loops) / med("cpu_ms", runs), 3),
              "ratio_cpu_pass": round(med("cpu_ms", loops) / med("pass_cpu_ms", runs), 3),
              "ours_frames_per_cpu_s": round(1e3 / med("cpu_ms", runs), 2),
              "loop_frames_per_cpu_s": round(1e3 / med("cpu_ms", loops), 2),
              "peak_rss_mb": round(max(o["peak_mb"] for o in runs), 1),
              "memory_flat": {"frames": [n, double["frames"]],
                              "peak_rss_mb": [round(max(o["peak_mb"] for o in runs), 1), round(double["peak_mb"], 1)],
                              "frames_per_s_2x": round(double["frames_per_s"], 2)},
              "load_avg_1m_each": loads}

    if hog_frames:
        hog_table = "bench.frames_hog"
        spark.sql(f"DROP TABLE IF EXISTS {hog_table}")
        spark.table("bench.frames").orderBy("video", "frame").limit(hog_frames).repartition(2) \
            .write.saveAsTable(hog_table)
        rows = [(r["video"], r["frame"], r["content"]) for r in
                spark.table(hog_table).select("video", "frame", "content").collect()]
        o = ours(spark, "opencv:hog-people", hog_table)
        lp = hog_loop(rows)
        log(f"hog-people on {len(rows)} frames: detect {o['frames_per_s']:.1f} frames/s ({o['pass_cpu_ms']:.1f} "
            f"CPU ms/frame pass), loop {lp['frames_per_s']:.1f} frames/s ({lp['cpu_ms']:.1f} CPU ms/frame)")
        result["hog_people"] = {"frames": len(rows), "ours": rounded(o), "loop": rounded(lp),
                                "ratio_vs_loop": round(o["frames_per_s"] / lp["frames_per_s"], 3),
                                "ratio_cpu": round(lp["cpu_ms"] / o["cpu_ms"], 3)}
    spark.stop()
    result["bench_process_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["seconds"] = round(time.monotonic() - t_start, 1)
    result["machine"] = machine_info()
    emit(result, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
