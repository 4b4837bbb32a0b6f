#!/usr/bin/env python3
"""Benchmark: the frames job's frames/s against a single-process OpenCV decode loop over the same videos.

Usage::

    PYTHONPATH=lib .venv/bin/python bench/frames.py [--quick] [--plays N] [--frames F] [--size WxH]
        [--repeats R] [--workdir DIR] [--json-out FILE]

Data: ``python -m mljobs.datasets.helmets render`` plays (mp4v, 640x360 by default; made once per
workdir, then reused): N (16; 8 with --quick) videos of F (600; 300 with --quick) frames.

* ours: the ``frames`` job in a local[2] SparkSession, JPEG (quality 95), every frame: the decoding
  pass (list, decode + encode + sha256 in the tasks, one task per video, staged as Parquet), its
  ``decode_seconds``; the whole job (table writes included) is reported apart.
* the loop: one Python process doing the same per frame (``cv2.VideoCapture.read``, ``cv2.imencode``
  JPEG 95, sha256), OpenCV's and FFmpeg's own threads left on, frames dropped after encoding;
  ``loop_one_thread`` the same with FFmpeg and OpenCV on one thread (as one of our tasks);
  ``bare_loop`` is the decode alone (``read``).

``--repeats R`` alternates the two R times (3; 2 with --quick); medians. Peak RSS of the driver's
process tree (JVM + Python workers) during ours, and of the loop's process.

CPU per frame, beside the wall-clock figures, because on a machine shared with other work the
wall-clock ratio mostly measures who got the cores: for ours, the user + system CPU seconds of
this process's whole tree (the driver JVM, its Python workers and any children, those that exited
included, through their parents' reaped-children times; psutil, read before and after each job
run, JVM start excluded) over the whole job (decoding pass and table writes), and over the
decoding pass alone (``ours_pass_cpu_ms_per_frame``: up to the job's "decoded and staged"
progress line); for the loops, this process's own CPU time (``time.process_time``, every thread). ``ratio_cpu`` is the loop's CPU
per frame over ours: what the wall-clock ratio would be if both could use the same idle cores
fully (``ratio_cpu_pass`` the same for the pass). The first run of ours pays the JVM's JIT
warm-up and first uses: use ``--repeats 3`` or more so the median is a warm run. The LAST stdout
line is JSON.
"""
from __future__ import annotations

import argparse
import hashlib
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


def make_videos(where: Path, plays: int, frames: int, size: tuple[int, int]) -> list[Path]:
    from mljobs.datasets import helmets

    done = where / "train_labels.csv"
    if not done.exists():
        helmets.render(where, plays=plays, frames=frames, size=size, seed=11, force=True)
    return sorted(where.glob("*.mp4"))


def loop(videos: list[Path], encode: bool, one_thread: bool = False) -> tuple[float, int, float]:
    """(frames/s, frames, CPU seconds) of one process decoding (and encoding) every frame;
    ``one_thread``: FFmpeg and OpenCV on one thread, as in a task of ours."""
    import cv2

    cv2.setNumThreads(1 if one_thread else -1)
    t0, c0, n = time.perf_counter(), time.process_time(), 0
    for path in videos:
        cap = (cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1]) if one_thread
               else cv2.VideoCapture(str(path)))
        while True:
            ok, img = cap.read()
            if not ok:
                break
            n += 1
            if encode:
                ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
                hashlib.sha256(buf.tobytes()).hexdigest()
        cap.release()
    return n / (time.perf_counter() - t0), n, time.process_time() - c0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="8 plays of 300 frames, 2 repeats (a few minutes)")
    p.add_argument("--plays", type=int)
    p.add_argument("--frames", type=int)
    p.add_argument("--size", default="640x360")
    p.add_argument("--repeats", type=int)
    p.add_argument("--workdir", default=None)
    p.add_argument("--json-out", default=None)
    args = p.parse_args(argv)
    plays = args.plays or (8 if args.quick else 16)
    frames = args.frames or (300 if args.quick else 600)
    repeats = args.repeats or (2 if args.quick else 3)
    size = tuple(int(v) for v in args.size.split("x"))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="mljobs-bench-frames-"))
    t0 = time.monotonic()
    videos = make_videos(work / f"videos-{plays}x{frames}-{args.size}", plays, frames, size)
    megabytes = sum(v.stat().st_size for v in videos) / 1e6
    log(f"{len(videos)} videos of {frames} frames at {args.size}, {megabytes:.1f} MB (rendered in "
        f"{time.monotonic() - t0:.1f}s)")
    from mljobs.frames.config import FramesConfig
    from mljobs.frames.job import run

    spark = local_spark("bench-frames", work)
    ours, job_s, theirs, single, bare, peak = [], [], [], [], [], 0.0
    ours_cpu, pass_cpu, loop_cpu, single_cpu, loads = [], [], [], [], []  # CPU ms per frame
    n_frames = len(videos) * frames
    for r in range(repeats):
        marks = {}  # the CPU reading when the job says its decoding pass is done

        def progress(msg: str) -> None:
            if msg.startswith("decoded and staged"):
                marks["pass"] = cpu_tree_seconds()

        c0 = cpu_tree_seconds()
        with RssPoller() as rss:
            s = run(spark, FramesConfig(videos=str(videos[0].parent), table="bench.frames"), progress)
        ours_cpu.append((cpu_tree_seconds() - c0) * 1e3 / n_frames)
        pass_cpu.append((marks["pass"] - c0) * 1e3 / n_frames)
        assert s["frames"] == n_frames and s["quarantined"] == 0, s
        ours.append(s["frames"] / s["decode_seconds"])
        job_s.append(s["seconds"])
        peak = max(peak, rss.peak_mb)
        fps, _, cpu = loop(videos, encode=True)
        theirs.append(fps)
        loop_cpu.append(cpu * 1e3 / n_frames)
        fps, _, cpu = loop(videos, encode=True, one_thread=True)
        single.append(fps)
        single_cpu.append(cpu * 1e3 / n_frames)
        bare.append(loop(videos, encode=False)[0])
        loads.append(round(os.getloadavg()[0], 2))
        log(f"run {r + 1}: ours {ours[-1]:,.0f} frames/s (decode pass {s['decode_seconds']:.1f}s, job "
            f"{s['seconds']:.1f}s; CPU ms/frame: job {ours_cpu[-1]:.2f}, pass {pass_cpu[-1]:.2f}), loop {theirs[-1]:,.0f} frames/s "
            f"({loop_cpu[-1]:.2f} CPU ms/frame; one thread: {single[-1]:,.0f} frames/s, {single_cpu[-1]:.2f} "
            f"CPU ms/frame), bare decode loop {bare[-1]:,.0f} frames/s; load {loads[-1]}")
    spark.stop()
    loop_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the loop ran in this process
    emit({"bench": "frames", "videos": len(videos), "frames": len(videos) * frames, "size": args.size,
          "megabytes": round(megabytes, 1), "repeats": repeats,
          "ours_frames_per_s": round(median(ours), 1), "ours_each": [round(x, 1) for x in ours],
          "ours_job_seconds_each": job_s, "ours_job_frames_per_s": round(len(videos) * frames / median(job_s), 1),
          "loop_frames_per_s": round(median(theirs), 1), "loop_each": [round(x, 1) for x in theirs],
          "loop_one_thread_frames_per_s": round(median(single), 1), "bare_loop_frames_per_s": round(median(bare), 1),
          "ratio_vs_loop": round(median(ours) / median(theirs), 3), "peak_rss_mb": round(peak, 1),
          "bench_process_peak_rss_mb": round(loop_peak, 1), "seconds": round(time.monotonic() - t0, 1),
          "ours_cpu_ms_per_frame": round(median(ours_cpu), 3), "ours_cpu_ms_per_frame_each": [round(x, 3) for x in ours_cpu],
          "ours_pass_cpu_ms_per_frame": round(median(pass_cpu), 3), "ours_pass_cpu_ms_per_frame_each": [round(x, 3) for x in pass_cpu],
          "ratio_cpu_pass": round(median(loop_cpu) / median(pass_cpu), 3),
          "loop_cpu_ms_per_frame": round(median(loop_cpu), 3), "loop_cpu_ms_per_frame_each": [round(x, 3) for x in loop_cpu],
          "loop_one_thread_cpu_ms_per_frame": round(median(single_cpu), 3),
          "ratio_cpu": round(median(loop_cpu) / median(ours_cpu), 3), "load_avg_1m_each": loads,
          "machine": machine_info()}, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
