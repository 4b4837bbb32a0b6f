#!/usr/bin/env python3
"""Benchmark: ingest-images' files/s against a single-process OpenCV decode loop over the same files.

Usage::

    PYTHONPATH=lib .venv/bin/python bench/images.py [--files N] [--repeats R] [--workdir DIR] [--json-out FILE]

Data: real photographs that ship inside scikit-image (``skimage.data``: astronaut, coffee, chelsea,
rocket, camera, ...), cut into N (16,000) random crops of 240-480 px a side, resized to 320x240 ..
640x480 and written as JPEG (quality 90) in one folder per source photo, so every file is a
different real-photo JPEG of a realistic size (the seed fixes them; made once, then reused).

* ours: the ``ingest-images`` job in a local[2] SparkSession, the decoding pass (list, read,
  OpenCV decode + checks + sha256 in the tasks, staged as Parquet): its ``decode_seconds``; the
  table writes after it are reported apart (``seconds``).
* the loop: one Python process reading each file and running the same checks
  (``mljobs.ingest_images.decode.inspect``: signature, end marker, ``cv2.imdecode``, sha256),
  OpenCV's own threads left on; ``bare_loop`` is read + ``cv2.imdecode`` alone.

``--repeats R`` alternates the two R times, after every file was read once (the page cache warm
for both); the ratio is of the medians (target >= 0.9); the first of ours pays for the JVM's
JIT and the Python workers' start. Also: files per CPU second of our whole job (the process
tree's user + system time) and of the loop. Peak RSS of the driver process tree (JVM + Python
workers) during ours. The LAST stdout line is JSON.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
sys.path.insert(0, str(ROOT / "bench"))
from benchlib import RssPoller, cpu_tree_seconds, emit, local_spark, log, machine_info  # noqa: E402

import numpy as np  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon", "page", "text", "hubble_deep_field",
          "immunohistochemistry", "motorcycle_left", "retina", "cat", "colorwheel", "logo", "eagle")


def photos() -> dict[str, np.ndarray]:
    from skimage import data

    out = {}
    for name in PHOTOS:
        loader = getattr(data, name, None)
        try:
            img = loader() if loader else None
        except Exception:  # noqa: BLE001 - a photo that needs pooch's download is skipped
            img = None
        if img is not None and min(img.shape[:2]) >= 240:
            out[name] = img if img.ndim == 2 else img[..., :3][..., ::-1]  # RGB -> BGR for OpenCV
    return out


def make_files(where: Path, n: int, seed: int = 0) -> Path:
    import cv2

    done = where / f".done-{n}-{seed}"
    if done.exists():
        return where
    rng = np.random.default_rng(seed)
    sources = photos()
    names = sorted(sources)
    for i in range(n):
        name = names[i % len(names)]
        img = sources[name]
        side = int(rng.integers(240, min(480, min(img.shape[:2])) + 1))
        y, x = (int(rng.integers(0, s - side + 1)) for s in img.shape[:2])
        w = int(rng.integers(320, 641))
        crop = cv2.resize(img[y:y + side, x:x + side], (w, w * 3 // 4))
        (where / name).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(where / name / f"{i:06d}.jpg"), crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
    done.write_text("")
    return where


def loop(files: list[Path], bare: bool) -> tuple[float, float]:
    """(files per wall second, files per CPU second)."""
    import cv2

    from mljobs.imagefiles import inspect

    t, c = time.perf_counter(), time.process_time()
    for f in files:
        data = f.read_bytes()
        if bare:
            cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        else:
            inspect(data, 8)
    return len(files) / (time.perf_counter() - t), len(files) / (time.process_time() - c)


def warm_cache(files: list[Path]) -> None:
    """Every file read once, so neither side pays for the disk (the first run used to)."""
    for f in files:
        f.read_bytes()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=16000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workdir", default=None)
    p.add_argument("--json-out", default=None)
    args = p.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="mljobs-bench-images-"))
    src = make_files(work / "jpegs", args.files)
    files = sorted(src.rglob("*.jpg"))
    log(f"{len(files):,} JPEGs, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB under {src}")
    from mljobs.ingest_images.config import IngestImagesConfig
    from mljobs.ingest_images.job import run

    spark = local_spark("bench-images", work)
    ours, theirs, bare, seconds, peak, cpu, loop_cpu = [], [], [], [], 0.0, [], []
    warm_cache(files)
    for r in range(args.repeats):
        with RssPoller() as rss:
            c0 = cpu_tree_seconds()
            s = run(spark, IngestImagesConfig(input=str(src), table="bench.images"), lambda *_: None)
            cpu.append(s["files"] / (cpu_tree_seconds() - c0))  # the whole job's CPU, table writes included
        assert s["images"] == len(files), s
        ours.append(s["files"] / s["decode_seconds"])
        seconds.append(s["seconds"])
        peak = max(peak, rss.peak_mb)
        wall, per_cpu = loop(files, bare=False)
        theirs.append(wall)
        loop_cpu.append(per_cpu)
        bare.append(loop(files, bare=True)[0])
        log(f"run {r + 1}: ours {ours[-1]:,.0f} files/s (job {s['seconds']:.1f}s), loop {theirs[-1]:,.0f}/s, "
            f"bare imdecode loop {bare[-1]:,.0f}/s")
    spark.stop()
    emit({"bench": "images", "files": len(files), "megabytes": round(sum(f.stat().st_size for f in files) / 1e6, 1),
          "ours_files_per_s": round(median(ours), 1), "ours_each": [round(x, 1) for x in ours],
          "ours_job_seconds_each": seconds, "ours_job_files_per_s": round(len(files) / median(seconds), 1),
          "loop_files_per_s": round(median(theirs), 1),
          "loop_each": [round(x, 1) for x in theirs], "bare_loop_files_per_s": round(median(bare), 1),
          "ratio_vs_loop": round(median(ours) / median(theirs), 3), "target_ratio": 0.9,
          "ours_job_files_per_cpu_s": round(median(cpu), 1), "loop_files_per_cpu_s": round(median(loop_cpu), 1),
          "peak_rss_mb": round(peak, 1), "machine": machine_info()}, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
