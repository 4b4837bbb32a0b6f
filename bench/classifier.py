#!/usr/bin/env python3
"""Benchmark: train-classifier's quality on the held-out split of real images, against scikit-learn's
SVC on the same split; and classify's images/s against a single-process torch loop.

Usage::

    PYTHONPATH=lib .venv/bin/python bench/classifier.py [--datasets digits,faces] [--epochs N] [--quick]
        [--repeats R] [--workdir DIR] [--json-out FILE]

Data: scikit-learn's 1,797 real handwritten digits (10 labels) and scikit-image's LFW subset (100
faces, 100 non-faces), exported as PNG folders and ingested with ``ingest-images`` (its split:
20 % test per label, by content).

* quality: ``train-classifier`` with its defaults (small-cnn, 32x32, 30 epochs, early stopping on a
  10 % validation slice of train; ``--hflip`` for faces) -> accuracy and macro F1 on the test split
  (faces: also the F1 of ``face``). The reference: scikit-learn's SVC (RBF) on the raw pixels of the
  same train (train + validation) and test images, as scikit-learn's digits example fits it
  (``gamma=0.001`` on the 0..16 levels); faces: ``SVC()`` on pixels scaled to [0, 1].
  Targets: digits macro F1 >= 0.985, faces F1 >= 0.97.
* speed (digits, the trained model): ``classify`` over the table, each digit ``--copies`` (20) times
  (35,940 images; decode + preprocess + score in Spark tasks, the model once per worker) against
  one Python process doing the same
  (``vision.to_pixels`` + ``vision.probabilities``, torch on 2 threads), on the same bytes; the
  JVM's start is excluded; medians of ``--repeats``; target >= 0.9.

``--quick``: digits only, 8 epochs, 1 repeat (a few minutes); ``--speed-only MODEL_DIR``: the speed
part alone with a trained digits model. Both sides are also measured in images per CPU second
(the whole process tree's user + system time), which other load on a shared machine does not
inflate as it inflates wall time. The LAST stdout line is JSON.
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


def quiet(*_):
    pass


def ingest(spark, work: Path, name: str) -> str:
    from mljobs.datasets import images
    from mljobs.ingest_images.config import IngestImagesConfig
    from mljobs.ingest_images.job import run

    folder = work / "raw" / name
    if not folder.exists():
        images.export(name, folder)
    run(spark, IngestImagesConfig(input=str(folder), table=f"bench.{name}"), quiet)
    return f"bench.{name}"


def svc_reference(spark, table: str, name: str) -> dict:
    """SVC on the raw pixels of the same split; its accuracy, macro F1 and seconds to fit."""
    import cv2
    from sklearn.metrics import f1_score
    from sklearn.svm import SVC

    rows = spark.table(table).select("label", "split", "content").collect()
    grey = [cv2.imdecode(np.frombuffer(r["content"], np.uint8), cv2.IMREAD_GRAYSCALE) for r in rows]
    x = np.stack([g.reshape(-1) for g in grey]).astype(np.float64)
    x = np.rint(x * 16 / 255) if name == "digits" else x / 255  # digits: back to their 16 levels
    y = np.array([r["label"] for r in rows])
    train = np.array([r["split"] == "train" for r in rows])
    t0 = time.monotonic()
    model = (SVC(gamma=0.001) if name == "digits" else SVC()).fit(x[train], y[train])
    fit_s = time.monotonic() - t0
    pred = model.predict(x[~train])
    out = {"accuracy": float((pred == y[~train]).mean()), "macro_f1": float(f1_score(y[~train], pred, average="macro")),
           "fit_seconds": round(fit_s, 3), "test_images": int((~train).sum())}
    if name == "faces":
        out["face_f1"] = float(f1_score(y[~train], pred, pos_label="face"))
    return out


def train(spark, table: str, name: str, work: Path, epochs: int | None) -> dict:
    from mljobs.train_classifier.config import TrainClassifierConfig
    from mljobs.train_classifier.job import run

    extra = {"epochs": epochs} if epochs else {}
    cfg = TrainClassifierConfig(table=table, model_dir=str(work / "models" / name), plots_dir=str(work / "plots" / name),
                                hflip=name == "faces", **extra)
    with RssPoller() as rss:
        s = run(spark, cfg, log)
    test = s["test"]
    out = {"accuracy": test["accuracy"], "macro_f1": test["macro_f1"], "epochs_run": s["epochs_run"],
           "best_epoch": s["best_epoch"], "train_seconds": s["train_seconds"], "job_seconds": s["seconds"],
           "peak_rss_mb": round(rss.peak_mb, 1), "model_dir": s["model_dir"]}
    if name == "faces":
        out["face_f1"] = test["per_label"]["face"]["f1"]
    return out


def loop_images_per_s(model_dir: str, contents: list[bytes]) -> tuple[float, float]:
    """One process: decode, preprocess and score every image, 64 at a time, torch on 2 threads;
    (images per wall second, images per CPU second)."""
    from mljobs.models import vision

    meta = vision.load_classifier(model_dir)
    net = vision.net_of(meta.to_json(), meta.weights(), threads=2)
    t0, c0 = time.monotonic(), time.process_time()
    for i in range(0, len(contents), 64):
        pixels = np.stack([vision.to_pixels(c, meta.image_size) for c in contents[i:i + 64]])
        vision.probabilities(net, pixels, meta.to_json())
    return len(contents) / (time.monotonic() - t0), len(contents) / (time.process_time() - c0)


def classify_images_per_s(spark, model_dir: str, table: str) -> tuple[float, float, float]:
    """(images per wall second of the classify job's scoring, images per CPU second of the whole
    job, peak RSS MB)."""
    from mljobs.classify.config import ClassifyConfig
    from mljobs.classify.job import run

    with RssPoller() as rss:
        c0 = cpu_tree_seconds()
        s = run(spark, ClassifyConfig(model=model_dir, table=table, out_table="bench.labelled"), quiet)
        cpu = cpu_tree_seconds() - c0
    return s["images_per_s"], s["rows_scored"] / cpu, rss.peak_mb


def repeated(spark, table: str, copies: int) -> str:
    """``table`` with each row ``copies`` times, in 8 Parquet files: a batch the size a scoring job
    is for (on 1,797 images, Spark's fixed cost of a job is most of classify's time)."""
    if copies <= 1:
        return table
    out = f"{table}_x{copies}"
    spark.sql(f"DROP TABLE IF EXISTS {out}")
    (spark.table(table).crossJoin(spark.range(copies).withColumnRenamed("id", "copy")).repartition(8)
     .write.saveAsTable(out))
    return out


def speed(spark, model_dir: str, table: str, repeats: int, copies: int = 1) -> dict:
    table = repeated(spark, table, copies)
    contents = [r["content"] for r in spark.table(table).select("content").collect()]
    ours, loops, ours_cpu, loops_cpu, peak = [], [], [], [], 0.0
    for r in range(repeats):
        rate, per_cpu, mb = classify_images_per_s(spark, model_dir, table)
        ours.append(rate)
        ours_cpu.append(per_cpu)
        peak = max(peak, mb)
        wall, cpu = loop_images_per_s(model_dir, contents)
        loops.append(wall)
        loops_cpu.append(cpu)
        log(f"speed run {r + 1}: classify {ours[-1]:,.0f} images/s ({per_cpu:,.0f} per CPU s), "
            f"loop {wall:,.0f} images/s ({cpu:,.0f} per CPU s)")
    return {"images": len(contents), "copies_of_each_image": copies,
            "classify_images_per_s": round(median(ours), 1), "classify_each": ours,
            "loop_images_per_s": round(median(loops), 1), "loop_each": loops,
            "ratio_vs_loop": round(median(ours) / median(loops), 3), "target_ratio": 0.9,
            "classify_images_per_cpu_s": round(median(ours_cpu), 1), "loop_images_per_cpu_s": round(median(loops_cpu), 1),
            "ratio_2_idle_cores_estimate": round(2 * median(ours_cpu) / median(loops_cpu), 3),
            "peak_rss_mb": round(peak, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="digits,faces")
    p.add_argument("--epochs", type=int, default=None, help="default: train-classifier's")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--speed-only", metavar="MODEL_DIR", help="only the speed part, with this digits model")
    p.add_argument("--copies", type=int, default=20, help="the speed part scores each digit this many times "
                   "(20: 35,940 images); 1: the 1,797 alone")
    p.add_argument("--workdir", default=None)
    p.add_argument("--json-out", default=None)
    args = p.parse_args(argv)
    names = [] if args.speed_only else ["digits"] if args.quick else args.datasets.split(",")
    epochs, repeats = (8, 1) if args.quick else (args.epochs, args.repeats)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="mljobs-bench-classifier-"))
    spark = local_spark("bench-classifier", work)
    result = {"bench": "classifier", "quick": args.quick, "quality": {}}
    for name in names:
        table = ingest(spark, work, name)
        ours, ref = train(spark, table, name, work, epochs), svc_reference(spark, table, name)
        result["quality"][name] = {"train_classifier": ours, "svc": ref}
        log(f"{name}: ours macro F1 {ours['macro_f1']:.4f} (acc {ours['accuracy']:.4f}, {ours['train_seconds']:.0f}s), "
            f"SVC macro F1 {ref['macro_f1']:.4f} (acc {ref['accuracy']:.4f})")
    if args.speed_only:
        result["speed"] = speed(spark, args.speed_only, ingest(spark, work, "digits"), repeats, args.copies)
    elif not args.skip_speed and "digits" in names:
        result["speed"] = speed(spark, result["quality"]["digits"]["train_classifier"]["model_dir"], "bench.digits", repeats,
                                args.copies)
    spark.stop()
    result["targets"] = {"digits_macro_f1": 0.985, "faces_face_f1": 0.97, "classify_vs_loop": 0.9}
    result["machine"] = machine_info()
    emit(result, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
