#!/usr/bin/env python3
"""Benchmark: the detection-metrics job against what a user would run instead.

Usage::

    PYTHONPATH=lib .venv/bin/python bench/detection.py [--quick] [--frames N [N ...]]
        [--frames-per-play F] [--workdir DIR] [--keep] [--json-out FILE] [--skip-ap] [--repeats N]

For each size N (default 10,000 and 100,000 frames; ``--quick``: 10,000), plays of F
frames (default 250, about 20 helmets each) are generated once with
``mljobs.datasets.helmets.generate`` (seed 7; not timed), then, on the SAME CSV files:

* ours: ``run_detection_metrics`` (``--conf-thr 0.9 --iou-thr 0.5``, greedy, plots off:
  ``max_plots=0``) in one SparkSession from ``build_session`` (conf/local.properties:
  ``local[*]``), created and warmed on a tiny play before any timing. Timed: the whole
  job: reading and checking both CSVs, matching, AP, writing the four Hive tables.
  Peak memory: RSS of this process and all its children (the JVM, Python workers),
  polled every 0.2 s.
* pandas loop (a): in a fresh interpreter, the straightforward per-frame loop a user
  writes from the reference code: ``pandas.read_csv`` both files; for each video, for
  each frame, select the frame's helmets and its detections with score >= 0.9 by
  boolean masks, sort the detections by score, and match them greedily in Python (each
  takes the unmatched helmet of highest IoU >= 0.5, IoU from a small Python function);
  collect TP/FP/FN per frame into a DataFrame. Timed: everything after the imports.
* AP: pycocotools (b) vs our engine, each in a fresh interpreter on the same boxes read
  with pandas. pycocotools: ``COCO`` index + ``loadRes`` + ``COCOeval`` evaluate,
  accumulate, summarize (building the annotation dicts is not timed). Ours:
  ``match_boxes`` (matching at the ten COCO thresholds) + ``coco_ap`` (building the
  input frame is not timed). Both get the detections in the generator's order, which is
  the engine's canonical order, so score ties are broken alike; the script fails if the
  two APs differ by more than 1e-9. Peak memory: each worker's VmHWM.

``--coco`` (a second benchmark): COCO's twelve figures on generated COCO JSON files
(``mljobs.datasets.cocoboxes``, seed 7; default 100,000 images, about 22 boxes each):

* ours: ``run_detection_metrics`` with ``--gt instances.json --pred results.json``, plots
  off, in the warmed SparkSession, twice over: with ``--coco-only`` (COCO's evaluation
  alone, as the other tools do it: reading both files, checks, COCO's matching and
  accumulation, ``det_quarantine`` and ``det_coco``; the speed-ups at top level are this
  one's) and as the whole job (plus the per-frame analysis and its three tables; the
  ``full_job_*`` keys). Both must give the same figures. Peak memory: RSS of this process
  and all its children (JVM, Python workers).
* faster-coco-eval 1.8 (the C++ re-implementation) in a fresh interpreter: ``COCO(path)``,
  ``loadRes(path)``, ``COCOeval_faster`` evaluate / accumulate / summarize. Timed: all of it
  (loading the JSON included, as ours).
* pycocotools in a fresh interpreter, the same steps; on the first ``--pycoco-images``
  images (default 10,000) when the run is larger, its time extrapolated linearly to the full
  size (said so in the output: ``pycocotools_extrapolated``); its figures on that subset are
  checked against our numpy engine's (``coco.evaluate``, untimed) on the same subset.

The script fails if ours and faster-coco-eval differ by more than 1e-6 on any figure.

Human-readable lines go to stderr; the LAST line on stdout is one JSON object (the
largest size at top level, every size under ``sizes``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
sys.path.insert(0, str(ROOT / "bench"))
from benchlib import RssPoller, emit, log  # noqa: E402

DEFAULT_FRAMES = (10_000, 100_000)
QUICK_FRAMES = (10_000,)
FRAMES_PER_PLAY = 250
SEED = 7
CONF_THR, IOU_THR = 0.9, 0.5


def _own_peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# --------------------------------------------------------------------------- workers
# Each runs in a fresh interpreter (``--worker NAME``), so its memory is its own.


def worker_pandas_loop(gt_path: str, det_path: str) -> dict:
    import pandas as pd

    def box_iou(a, b):
        ix = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
        iy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
        if ix <= 0 or iy <= 0:
            return 0.0
        inter = ix * iy
        return inter / (a[2] * a[3] + b[2] * b[3] - inter)

    t0 = time.perf_counter()
    gt = pd.read_csv(gt_path)
    det = pd.read_csv(det_path)
    rows = []
    for video in sorted(set(gt["video"]) | set(det["video"])):
        g_v = gt[gt["video"] == video]
        d_v = det[(det["video"] == video) & (det["score"] >= CONF_THR)]
        for frame in sorted(set(g_v["frame"]) | set(d_v["frame"])):
            g = g_v[g_v["frame"] == frame]
            d = d_v[d_v["frame"] == frame].sort_values("score", ascending=False, kind="stable")
            helmets = g[["left", "top", "width", "height"]].values
            taken, tp = set(), 0
            for box in d[["left", "top", "width", "height"]].values:
                best, pick = IOU_THR, -1
                for j, h in enumerate(helmets):
                    if j in taken:
                        continue
                    iou = box_iou(box, h)
                    if iou >= best:
                        best, pick = iou, j
                if pick >= 0:
                    taken.add(pick)
                    tp += 1
            fp, fn = len(d) - tp, len(g) - tp
            rows.append((video, frame, len(g), len(d), tp, fp, fn,
                         tp / (tp + fp) if tp + fp else None, tp / (tp + fn) if tp + fn else None))
    frames = pd.DataFrame(rows, columns=["video", "frame", "num_gt", "num_det", "tp", "fp", "fn", "precision", "recall"])
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "frames": len(frames), "tp": int(frames["tp"].sum()),
            "fp": int(frames["fp"].sum()), "fn": int(frames["fn"].sum()), "peak_rss_mb": _own_peak_rss_mb()}


def _read_boxes(gt_path: str, det_path: str):
    import numpy as np
    import pandas as pd

    gt = pd.read_csv(gt_path)
    det = pd.read_csv(det_path)
    cols = ["video", "frame", "cls", "kind", "left", "top", "width", "height", "score"]
    g = gt.assign(cls="helmet", kind=0, score=np.nan)[cols]
    d = det.assign(cls="helmet", kind=1)[cols]
    return g.astype({c: float for c in ("left", "top", "width", "height")}), d


def worker_pycocotools(gt_path: str, det_path: str) -> dict:
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    g, d = _read_boxes(gt_path, det_path)
    g = g.sort_values(["video", "frame", "left", "top", "width", "height"], kind="stable")
    images = sorted(set(zip(g["video"], g["frame"])) | set(zip(d["video"], d["frame"])))
    img_id = {k: i + 1 for i, k in enumerate(images)}
    gid = [img_id[k] for k in zip(g["video"], g["frame"])]
    did = [img_id[k] for k in zip(d["video"], d["frame"])]
    gb = g[["left", "top", "width", "height"]].to_numpy().tolist()
    db = d[["left", "top", "width", "height"]].to_numpy().tolist()
    dataset = {
        "images": [{"id": i} for i in img_id.values()],
        "categories": [{"id": 1, "name": "helmet"}],
        "annotations": [{"id": n + 1, "image_id": i, "category_id": 1, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
                        for n, (i, b) in enumerate(zip(gid, gb))],
    }
    dets = [{"image_id": i, "category_id": 1, "bbox": b, "score": s}
            for i, b, s in zip(did, db, d["score"].tolist())]
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "ap": float(ev.stats[0]), "ap50": float(ev.stats[1]), "ap75": float(ev.stats[2]),
            "peak_rss_mb": _own_peak_rss_mb()}


def worker_ours_ap(gt_path: str, det_path: str) -> dict:
    import pandas as pd

    from mljobs.detection_metrics.ap import coco_ap
    from mljobs.detection_metrics.matching import MatchParams, match_boxes

    g, d = _read_boxes(gt_path, det_path)
    boxes = pd.concat([g, d], ignore_index=True)
    t0 = time.perf_counter()
    res = match_boxes(boxes, MatchParams(conf_thr=CONF_THR, iou_thr=IOU_THR))
    dets = res[(res["kind"] == 1) & res["coco_kept"]]
    gts = res[res["kind"] == 0].groupby(["video", "cls"]).size().rename("n_gt").reset_index()
    ap = coco_ap(dets, gts).iloc[0]
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "ap": float(ap["ap"]), "ap50": float(ap["ap50"]), "ap75": float(ap["ap75"]),
            "peak_rss_mb": _own_peak_rss_mb()}


def _coco_worker(module: str, gt_path: str, det_path: str) -> dict:
    import contextlib
    import io

    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        if module == "faster":
            from faster_coco_eval import COCO, COCOeval_faster as COCOeval
        else:
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval
        gt = COCO(gt_path)
        dt = gt.loadRes(det_path)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "stats": [float(x) for x in ev.stats[:12]], "peak_rss_mb": _own_peak_rss_mb()}


def worker_faster_coco(gt_path: str, det_path: str) -> dict:
    return _coco_worker("faster", gt_path, det_path)


def worker_pycocotools_files(gt_path: str, det_path: str) -> dict:
    return _coco_worker("pycocotools", gt_path, det_path)


WORKERS = {"pandas-loop": worker_pandas_loop, "pycocotools": worker_pycocotools, "ours-ap": worker_ours_ap,
           "faster-coco-eval": worker_faster_coco, "pycocotools-files": worker_pycocotools_files}


def run_worker(name: str, gt_path: Path, det_path: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "lib"))
    proc = subprocess.run([sys.executable, __file__, "--worker", name, str(gt_path), str(det_path)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- ours (Spark)


def median_run(runs: list[dict]) -> dict:
    """The run of median seconds, with every run's seconds listed (``runs_s``)."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    return {**ordered[(len(ordered) - 1) // 2], "runs_s": [round(r["seconds"], 3) for r in runs],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}


def run_ours(spark, plays: Path, db: str) -> dict:
    from mljobs.detection_metrics.job import DetectionConfig, run_detection_metrics

    cfg = DetectionConfig(gt=str(plays / "train_labels.csv"), pred=str(plays / "detections.csv"),
                          conf_thr=CONF_THR, iou_thr=IOU_THR, out_db=db, max_plots=0)
    with RssPoller() as mem:
        t0 = time.perf_counter()
        summary = run_detection_metrics(spark, cfg, progress=lambda m: log(f"  ours: {m}"))
        seconds = time.perf_counter() - t0
    o = summary["overall"]
    return {"seconds": seconds, "frames": summary["frames"], "tp": o["tp"], "fp": o["fp"], "fn": o["fn"],
            "ap": o["ap"], "ap50": o["ap50"], "ap75": o["ap75"], "peak_rss_mb": mem.peak_mb, "reader": summary["reader"]}


def subset_files(inst_path: Path, det_path: Path, images: int, out: Path) -> tuple[Path, Path]:
    """The first ``images`` images of the files (and their boxes), for pycocotools."""
    inst = json.loads(inst_path.read_text())
    keep = {im["id"] for im in inst["images"][:images]}
    sub = {**inst, "images": inst["images"][:images],
           "annotations": [a for a in inst["annotations"] if a["image_id"] in keep]}
    dets = [d for d in json.loads(det_path.read_text()) if d["image_id"] in keep]
    out.mkdir(parents=True, exist_ok=True)
    (out / "instances.json").write_text(json.dumps(sub))
    (out / "results.json").write_text(json.dumps(dets))
    return out / "instances.json", out / "results.json"


def coco_bench(spark, work: Path, images: int, pycoco_images: int, repeats: int = 1) -> dict:
    from mljobs.datasets.cocoboxes import generate as generate_coco
    from mljobs import coco
    from mljobs.detection_metrics.job import DetectionConfig, run_detection_metrics

    data = work / f"coco_{images}"
    t0 = time.perf_counter()
    gen = generate_coco(data, images, seed=SEED)
    inst_path, det_path = Path(gen["instances"]), Path(gen["results"])
    boxes = gen["annotations"] + gen["detections"]
    log(f"COCO: {images:,} images, {gen['annotations']:,} ground-truth boxes, {gen['detections']:,} detections "
        f"({boxes:,} boxes; generated in {time.perf_counter() - t0:.1f} s)")
    modes = {}
    for mode in ("coco_only", "full_job"):
        cfg = DetectionConfig(gt=str(inst_path), pred=str(det_path), out_db="bench_coco", max_plots=0,
                              coco_only=mode == "coco_only")
        runs = []
        for _ in range(repeats):
            with RssPoller() as mem:
                t0 = time.perf_counter()
                summary = run_detection_metrics(spark, cfg, progress=lambda m: log(
                    f"  ours, {mode} [{time.perf_counter() - t0:6.1f} s]: {m}"))
                runs.append({"seconds": time.perf_counter() - t0, "peak_rss_mb": mem.peak_mb, "summary": summary})
        modes[mode] = best = median_run(runs)
        log(f"  ours, {mode}: {best['seconds']:.1f} s (median of {best['runs_s']}), peak RSS "
            f"{best['peak_rss_mb']:.0f} MB, reader {best['summary']['reader']}")
    full = [modes["full_job"]["summary"]["coco"]["overall"][k] for k in coco.STATS]
    ours_s, summary = modes["coco_only"]["seconds"], modes["coco_only"]["summary"]
    ours = [summary["coco"]["overall"][k] for k in coco.STATS]
    if ours != full:
        raise RuntimeError(f"--coco-only figures differ from the full job's: {ours} vs {full}")
    best = modes["coco_only"]
    fast = run_worker("faster-coco-eval", inst_path, det_path)
    log(f"  faster-coco-eval: {fast['seconds']:.1f} s, AP {fast['stats'][0]:.6f}")
    diff_fast = max(abs(a - b) for a, b in zip(ours, fast["stats"]))
    if diff_fast > 1e-6:
        raise RuntimeError(f"figures differ from faster-coco-eval by {diff_fast:.3g}: {ours} vs {fast['stats']}")
    n_sub = min(images, pycoco_images)
    if n_sub < images:
        sub_inst, sub_det = subset_files(inst_path, det_path, n_sub, work / f"coco_{images}_sub{n_sub}")
    else:
        sub_inst, sub_det = inst_path, det_path
    py = run_worker("pycocotools-files", sub_inst, sub_det)
    py_full_s = py["seconds"] * images / n_sub
    if n_sub < images:  # check pycocotools' figures on the subset against our engine
        import pandas as pd

        inst = json.loads(sub_inst.read_text())
        names = {c["id"]: c["name"] for c in inst["categories"]}
        rows = [("coco", a["image_id"], names[a["category_id"]], 0, *a["bbox"], float("nan"), a["area"],
                 a["iscrowd"]) for a in inst["annotations"]]
        rows += [("coco", d["image_id"], names[d["category_id"]], 1, *d["bbox"], d["score"], float("nan"), 0)
                 for d in json.loads(sub_det.read_text())]
        frame = pd.DataFrame(rows, columns=["video", "frame", "cls", "kind", "left", "top", "width", "height",
                                            "score", "area", "iscrowd"])
        mine = coco.evaluate(frame).iloc[0][list(coco.STATS)].tolist()
    else:
        mine = ours
    diff_py = max(abs(a - b) for a, b in zip(mine, py["stats"]))
    if diff_py > 1e-6:
        raise RuntimeError(f"figures differ from pycocotools by {diff_py:.3g}")
    log(f"  pycocotools: {py['seconds']:.1f} s on {n_sub:,} images"
        + (f" -> {py_full_s:.1f} s extrapolated linearly to {images:,}" if n_sub < images else ""))
    return {
        "images": images, "gt_boxes": gen["annotations"], "detections": gen["detections"], "boxes": boxes,
        "ours_s": round(ours_s, 3), "ours_runs_s": best["runs_s"], "ours_reader": summary["reader"],
        "ours_peak_rss_mb": round(best["peak_rss_mb"], 1), "ours_mode": "coco_only",
        "ours_full_job_s": round(modes["full_job"]["seconds"], 3), "ours_full_job_runs_s": modes["full_job"]["runs_s"],
        "ours_full_job_peak_rss_mb": round(modes["full_job"]["peak_rss_mb"], 1),
        "full_job_speedup_vs_faster_coco_eval": round(fast["seconds"] / modes["full_job"]["seconds"], 3),
        "full_job_speedup_vs_pycocotools": round(py_full_s / modes["full_job"]["seconds"], 3),
        "faster_coco_eval_s": round(fast["seconds"], 3), "faster_coco_eval_peak_rss_mb": round(fast["peak_rss_mb"], 1),
        "pycocotools_s": round(py_full_s, 3), "pycocotools_images_run": n_sub,
        "pycocotools_extrapolated": n_sub < images, "pycocotools_peak_rss_mb_on_run": round(py["peak_rss_mb"], 1),
        "speedup_vs_faster_coco_eval": round(fast["seconds"] / ours_s, 3),
        "speedup_vs_pycocotools": round(py_full_s / ours_s, 3),
        "stats": dict(zip(coco.STATS, ours)), "max_abs_diff_faster_coco_eval": diff_fast,
        "max_abs_diff_pycocotools": diff_py,
    }


# --------------------------------------------------------------------------- driver


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="10,000 frames only (< 5 minutes on 2 cores)")
    p.add_argument("--frames", type=int, nargs="+", help="sizes in frames (default 10000 100000)")
    p.add_argument("--frames-per-play", type=int, default=FRAMES_PER_PLAY)
    p.add_argument("--workdir", help="where plays and the metastore go (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the workdir")
    p.add_argument("--json-out", help="also write the JSON line here")
    p.add_argument("--repeats", type=int, default=1, help="runs of our job per size (the median is reported; "
                   "the other tools run once)")
    p.add_argument("--skip-ap", action="store_true", help="skip the AP comparison (pycocotools is slow at 100k frames)")
    p.add_argument("--coco", type=int, nargs="*", metavar="IMAGES",
                   help="the COCO benchmark instead, at these sizes in images (default 100000)")
    p.add_argument("--pycoco-images", type=int, default=10_000,
                   help="with --coco: run pycocotools on at most this many images, extrapolate linearly")
    p.add_argument("--worker", nargs=3, metavar=("NAME", "GT", "PRED"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        name, gt, pred = args.worker
        print(json.dumps(WORKERS[name](gt, pred)))
        return 0

    import psutil

    from mljobs.datasets.helmets import generate
    from mljobs.session import build_session

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers need pandas and pyarrow
    sizes = args.frames or (QUICK_FRAMES if args.quick else DEFAULT_FRAMES)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="mljobs-bench-det-"))
    work.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count()
    machine = f"{platform.machine()}, {cores} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, " \
              f"{platform.processor() or platform.platform()}"
    log(f"machine: {machine}; workdir {work}")
    results: dict[str, dict] = {}
    try:
        log("starting Spark and warming it up on a tiny play")
        spark = build_session("bench-detection", data_dir=work / "data")
        warm = work / "warm"
        generate(warm, plays=1, frames=30, seed=1, force=True)
        run_ours(spark, warm, "bench_det_warm")
        if args.coco is not None:
            coco_sizes = args.coco or [100_000]
            coco_results = {str(n): coco_bench(spark, work, n, args.pycoco_images, args.repeats) for n in coco_sizes}
            spark.stop()
            largest = coco_results[str(coco_sizes[-1])]
            emit({**largest, "benchmark": "coco", "cores": cores, "machine": machine, "spark_master": "local[*]",
                  "load_avg_1m": os.getloadavg()[0], "sizes": coco_results}, args.json_out)
            return 0
        for frames in sizes:
            plays = max(1, round(frames / args.frames_per_play))
            per_play = max(10, frames // plays)
            data = work / f"plays_{frames}"
            t0 = time.perf_counter()
            gen = generate(data, plays=plays, frames=per_play, seed=SEED, force=True)
            log(f"{frames:,} frames: {plays} plays x {per_play} frames, {gen['gt_rows']:,} helmets, "
                f"{gen['det_rows']:,} detections (generated in {time.perf_counter() - t0:.1f} s)")
            n = gen["frames"]
            ours = median_run([run_ours(spark, data, f"bench_det_{frames}") for _ in range(args.repeats)])
            log(f"  ours: {ours['seconds']:.1f} s (median of {ours['runs_s']}; {n / ours['seconds']:,.0f} frames/s), "
                f"peak {ours['peak_rss_mb']:.0f} MB, reader {ours['reader']}")
            loop = run_worker("pandas-loop", data / "train_labels.csv", data / "detections.csv")
            log(f"  pandas loop: {loop['seconds']:.1f} s ({n / loop['seconds']:,.0f} frames/s), "
                f"peak {loop['peak_rss_mb']:.0f} MB; TP/FP/FN {loop['tp']}/{loop['fp']}/{loop['fn']} "
                f"vs ours {ours['tp']}/{ours['fp']}/{ours['fn']}")
            result = {
                "frames": n, "plays": plays, "helmets": gen["gt_rows"], "detections": gen["det_rows"],
                "ours_s": round(ours["seconds"], 3), "ours_runs_s": ours["runs_s"], "ours_reader": ours["reader"],
                "ours_frames_per_s": round(n / ours["seconds"], 1),
                "ours_peak_rss_mb": round(ours["peak_rss_mb"], 1),
                "pandas_loop_s": round(loop["seconds"], 3), "pandas_loop_frames_per_s": round(n / loop["seconds"], 1),
                "pandas_loop_peak_rss_mb": round(loop["peak_rss_mb"], 1),
                "speedup_vs_pandas_loop": round(loop["seconds"] / ours["seconds"], 2),
                "counts_ours": [ours["tp"], ours["fp"], ours["fn"]], "counts_pandas_loop": [loop["tp"], loop["fp"], loop["fn"]],
                "ap": ours["ap"], "ap50": ours["ap50"], "ap75": ours["ap75"],
            }
            if not args.skip_ap:
                ap_ours = run_worker("ours-ap", data / "train_labels.csv", data / "detections.csv")
                log(f"  AP ours (engine, one process): {ap_ours['seconds']:.1f} s, AP {ap_ours['ap']:.6f}")
                coco = run_worker("pycocotools", data / "train_labels.csv", data / "detections.csv")
                log(f"  AP pycocotools: {coco['seconds']:.1f} s, AP {coco['ap']:.6f}")
                diff = max(abs(ap_ours[k] - coco[k]) for k in ("ap", "ap50", "ap75"))
                diff_job = max(abs(ours[k] - coco[k]) for k in ("ap", "ap50", "ap75"))
                if diff > 1e-9 or diff_job > 1e-9:
                    raise RuntimeError(f"AP differs from pycocotools: engine {diff:.3g}, job {diff_job:.3g}")
                result.update({
                    "ap_ours_s": round(ap_ours["seconds"], 3), "ap_ours_peak_rss_mb": round(ap_ours["peak_rss_mb"], 1),
                    "ap_pycocotools_s": round(coco["seconds"], 3),
                    "ap_pycocotools_peak_rss_mb": round(coco["peak_rss_mb"], 1),
                    "ap_speedup_vs_pycocotools": round(coco["seconds"] / ap_ours["seconds"], 2),
                    "ap_max_abs_diff": max(diff, diff_job),
                })
            results[str(frames)] = result
        spark.stop()
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    largest = results[str(sizes[-1])]
    out = {**largest, "cores": cores, "machine": machine, "spark_master": "local[*]",
           "conf_thr": CONF_THR, "iou_thr": IOU_THR, "sizes": results}
    emit(out, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
