"""The train-classifier job: an ingest-images table -> a torch image classifier (model directory:
model.pt, metadata.json, evaluation.json), its evaluation on the test split (a table, a confusion
matrix and a grid of the most confident mistakes).

Spark reads the table, holds out the validation slice and stages the training rows; TorchDistributor's
processes train (mljobs.torchtrain: checkpoints each epoch, a killed run resumes); the test split is
scored in Spark tasks with the code classify uses (mljobs.models.vision). The evaluation table is
staged before the model is saved and swapped in after: a failed run changes neither."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
import uuid

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from mljobs import fs, tables
from mljobs.device import device_for
from mljobs.config import parse_table_name
from mljobs.emr import EmrStep
from mljobs.gpu import DRIVER_ROWS, UNSUPPORTED_CLASS, Known
from mljobs.models import vision
from mljobs.models.classes import plot_confusion
from mljobs.torchtrain import checkpoint, launch
from mljobs.train_classifier import data as imagedata
from mljobs.train_classifier import evaluate, fit
from mljobs.train_classifier.config import TrainClassifierConfig

EVALUATION_FILE = "evaluation.json"
EVAL_SCHEMA = ("model string, label string, precision double, recall double, f1 double, test_images int, "
               "assumed_threshold double, f1_at_threshold double, model_sha256 string, run_id string, "
               "evaluated_at timestamp")


def output_dirs(spark, cfg: TrainClassifierConfig) -> tuple[str, str]:
    """The model and plot locations (defaults under the results root), checked reachable."""
    return fs.model_and_plot_dirs(spark, cfg.model_dir, cfg.plots_dir, cfg.model_name, "images")


def training_spec(spark, cfg: TrainClassifierConfig, data: imagedata.ImageData, staging: str, init: bytes | None,
                  model_dir: str) -> dict:
    """What the torch processes need (plain values) and the fingerprint a resume must match."""
    props = tables.mljobs_properties(spark, ".".join(parse_table_name(cfg.table)))
    shaping = {k: getattr(cfg, k) for k in ("arch", "image_size", "epochs", "batch_size", "learning_rate",
                                            "weight_decay", "patience", "val_fraction", "seed", "class_weights",
                                            "augment", "hflip", "num_processes")}
    identity = {"table": cfg.table, "table_run": props.get("mljobs.run_id"), "labels": data.labels,
                "counts": data.counts, "init": hashlib.sha256(init).hexdigest() if init else None, **shaping}
    fingerprint = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return {**shaping, "data": staging, "labels": data.labels, "init_weights": init, "fingerprint": fingerprint,
            "checkpoint_dir": checkpoint.of(model_dir), "use_gpu": device_for(spark) == "cuda"}


def train(spark, cfg: TrainClassifierConfig, model_dir: str, run_id: str, progress):
    """(ImageData, the processes' result): stage, train, remove the staged rows."""
    db = parse_table_name(cfg.table)[0]
    init = vision.read_init_weights(spark, cfg.init_weights)
    staging = tables.staging_path(spark, db, f"{cfg.model_name}-{run_id}")
    try:
        progress(f"reading {cfg.table}, holding out {cfg.val_fraction:g} of each label's training images for "
                 "validation, staging the training rows")
        data = imagedata.load(spark, cfg.table, cfg.val_fraction, cfg.seed, staging)
        progress(f"{len(data.labels)} labels: " + ", ".join(f"{k} {v['train']}/{v['val']}/{v['test']}"
                                                             for k, v in data.counts.items()) + " (train/val/test)")
        spec = training_spec(spark, cfg, data, staging, init, model_dir)
        progress(f"training a {cfg.arch} ({cfg.image_size}x{cfg.image_size}) for up to {cfg.epochs} epochs in "
                 f"{cfg.num_processes} process(es) on {'cuda' if spec['use_gpu'] else 'cpu'}")
        result = launch.run(spark, fit.train_process, spec, cfg.num_processes, spec["use_gpu"])
    finally:
        fs.remove(spark, staging)
    if not result:
        raise RuntimeError("the training processes returned no result")
    return data, result


def score_test(spark, meta: vision.ImageClassifier, weights: bytes, data: imagedata.ImageData):
    """(labels, probabilities, sha256s) of the test split, scored in Spark tasks."""
    bc = spark.sparkContext.broadcast(weights)
    try:
        udf = vision.probabilities_udf(meta.to_json(), bc, device_for(spark))
        rows = data.test.select("sha256", "label", udf("content").alias("p")).where(F.col("p").isNotNull()).collect()
    finally:
        bc.destroy()
    index = {lab: i for i, lab in enumerate(meta.labels)}
    y = np.array([index[r["label"]] for r in rows], np.int64)
    probs = np.array([r["p"] for r in rows], np.float32).reshape(len(rows), len(meta.labels))
    return y, probs, [r["sha256"] for r in rows]


def plots(spark, cfg, data, meta, y, probs, shas, metrics, plots_dir) -> list[str]:
    wrong = evaluate.mistakes(y, probs, cfg.mistakes)
    picked = {shas[i]: i for i in wrong}
    content = {r["sha256"]: r["content"] for r in
               data.test.where(F.col("sha256").isin(list(picked))).select("sha256", "content").collect()} if picked else {}
    images = [vision.decode_bgr(content[shas[i]])[:, :, ::-1] for i in wrong]  # as stored, RGB
    captions = [f"{meta.labels[y[i]]} -> {meta.labels[probs[i].argmax()]} {probs[i].max():.2f}" for i in wrong]
    with fs.output_dir(spark, plots_dir) as out:
        cm = plot_confusion(metrics["confusion"], meta.labels, f"{cfg.model_name}: test accuracy "
                            f"{metrics['accuracy']:.3f}, macro F1 {metrics['macro_f1']:.3f}", out.local)
        grid = evaluate.plot_mistakes(images, captions, out.local / "mistakes.png")
        return [out.final(cm), out.final(grid)]


def evaluation_rows(spark, cfg, meta, metrics, run_id):
    at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0, tzinfo=None)
    rows = [(cfg.model_name, c["label"], c["precision"], c["recall"], c["f1"], c["support"], c["assumed_threshold"],
             c["f1_at_threshold"], meta.model_sha256, run_id, at) for c in metrics["per_class"]]
    return spark.createDataFrame(rows, EVAL_SCHEMA)


def metadata(cfg, data, result) -> vision.ImageClassifier:
    return vision.ImageClassifier(
        name=cfg.model_name, arch=cfg.arch, labels=data.labels, image_size=cfg.image_size, mean=result["mean"],
        std=result["std"], params={k: getattr(cfg, k) for k in ("epochs", "batch_size", "learning_rate", "weight_decay",
                                   "patience", "val_fraction", "seed", "class_weights", "augment", "hflip",
                                   "num_processes", "init_weights")},
        data={"table": cfg.table, "images": data.counts, "test_images_unseen_label": data.unseen_test},
        metrics={"best_epoch": result["best_epoch"], "history": result["history"]})


def publish(spark, cfg, meta, weights, metrics, run_id, model_dir) -> tuple[str, str]:
    """Stage the evaluation table, save the model (with evaluation.json), swap the table in."""
    edb, ename = cfg.evaluation
    report = {"model": cfg.model_name, "run_id": run_id, **{k: metrics[k] for k in (
        "rows", "accuracy", "macro_precision", "macro_recall", "macro_f1", "micro_f1", "per_class", "confusion")},
        "labels": meta.labels, "threshold_rule": evaluate.__doc__.split("\n\n")[2].replace("\n", " ")}
    def save():
        where = vision.save_classifier(model_dir, weights, meta,
                                       {EVALUATION_FILE: (json.dumps(report, indent=2) + "\n").encode()})
        checkpoint.discard(model_dir)
        return where

    where = tables.stage_around(spark, edb, ename, evaluation_rows(spark, cfg, meta, metrics, run_id),
                                {"mljobs.model": cfg.model_name, "mljobs.run_id": run_id},
                                "train-classifier test evaluation", save)
    return str(where), f"{edb}.{ename}"


def run(spark: SparkSession, cfg: TrainClassifierConfig, progress=print) -> dict:
    t0 = time.monotonic()
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    model_dir, plots_dir = output_dirs(spark, cfg)
    data, result = train(spark, cfg, model_dir, run_id, progress)
    trained = time.monotonic() - t0
    meta, weights = metadata(cfg, data, result), result["best_state"]
    meta.model_sha256 = hashlib.sha256(weights).hexdigest()
    progress(f"scoring the test split ({sum(c['test'] for c in data.counts.values()):,} images) with the weights "
             f"of epoch {result['best_epoch']}")
    y, probs, shas = score_test(spark, meta, weights, data)
    metrics = evaluate.evaluation(y, probs, data.labels)
    meta.metrics["test"] = {k: metrics[k] for k in ("rows", "accuracy", "macro_f1", "micro_f1")}
    meta.metrics["per_label"] = {c["label"]: {k: c[k] for k in ("precision", "recall", "f1", "support",
                                 "assumed_threshold", "f1_at_threshold")} for c in metrics["per_class"]}
    where, table = publish(spark, cfg, meta, weights, metrics, run_id, model_dir)
    written = plots(spark, cfg, data, meta, y, probs, shas, metrics, plots_dir)
    progress(f"test: accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['macro_f1']:.4f}; model saved: {where}")
    hist = result["history"]
    return {"table": cfg.table, "model": cfg.model_name, "model_dir": where, "arch": cfg.arch, "labels": data.labels,
            "images": data.counts, "test_images_unseen_label": data.unseen_test, "processes": result["processes"],
            "epochs_run": len(hist), "resumed_after_epoch": result["resumed_after"], "best_epoch": result["best_epoch"],
            "stopped_early": result["stopped_early"], "init_weights_loaded": result["init_loaded"],
            "validation": {k: v for k, v in (hist[-1] if hist else {}).items() if k.startswith("val_")},
            "test": {"images": metrics["rows"], "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
                     "micro_f1": metrics["micro_f1"],
                     "per_label": {c["label"]: {k: c[k] for k in ("precision", "recall", "f1", "support",
                                                                   "assumed_threshold")} for c in metrics["per_class"]}},
            "evaluation_table": table, "evaluation_json": str(fs.join(where, EVALUATION_FILE)), "plots": written,
            "model_sha256": meta.model_sha256, "run_id": run_id, "train_seconds": round(trained, 2),
            "seconds": round(time.monotonic() - t0, 2)}


# ---- what the rest of the system knows about this job (see mljobs.registry)
NAME = "train-classifier"
CONFIG = TrainClassifierConfig
EMR_STEP = EmrStep(needs=("images_table",), label=lambda p: p.images_table, default=False,
                   args=lambda p: ["--table", p.images_table])
GPU_FALLBACKS = [
    Known("Sha2", UNSUPPORTED_CLASS, "splits.py assign: the order of the validation slice",
          "one sha256 per distinct training image, in a plan of one short row per image"),
    Known("RDDScanExec", UNSUPPORTED_CLASS, "train_classifier/job.py evaluation_rows: the evaluation table's rows",
          "one row per label, computed on the driver from the test predictions; " + DRIVER_ROWS,
          columns=("model", "label", "precision")),
]
