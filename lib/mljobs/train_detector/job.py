"""The train-detector job: a frames table + boxes -> a torch object detector (torchvision's
Faster R-CNN; model directory: model.pt, metadata.json, training.png), its per-epoch history
as a table <db>.<name>_training.

Spark reads the frames and the boxes, splits the labelled videos into train and validation
(by video, deterministic) and stages one row per frame; TorchDistributor's processes train
(mljobs.torchtrain: a checkpoint every epoch under the model directory, a killed run resumes)
and after every epoch compute the validation AP and AP50 with COCO's rules (mljobs.coco).
The history table is staged before the model is saved and swapped in after: a failed run
changes neither."""
from __future__ import annotations

import hashlib
import io
import json
import time
import uuid

from pyspark.sql import SparkSession

from mljobs import fs, tables
from mljobs.config import parse_table_name
from mljobs.device import device_for
from mljobs.emr import EmrStep
from mljobs.gpu import DRIVER_ROWS, UNSUPPORTED_CLASS, Known
from mljobs.models import torchdet
from mljobs.models.vision import read_init_weights
from mljobs.readers import is_path
from mljobs.torchtrain import checkpoint, launch
from mljobs.train_detector import data as detdata
from mljobs.train_detector import fit
from mljobs.train_detector.config import TrainDetectorConfig

PLOT_FILE = "training.png"
HISTORY_SCHEMA = "epoch int, train_loss double, val_ap double, val_ap50 double, model string, run_id string"
SHAPING = ("arch", "image_size", "epochs", "batch_size", "learning_rate", "weight_decay", "patience", "val_fraction",
           "seed", "class_column", "num_processes")


def frames_run(spark, cfg: TrainDetectorConfig) -> str | None:
    """The frames table's mljobs.run_id (a rewritten table is other data for a resume)."""
    if is_path(cfg.frames):
        return None
    return tables.mljobs_properties(spark, ".".join(parse_table_name(cfg.frames))).get("mljobs.run_id")


def training_spec(spark, cfg: TrainDetectorConfig, data: detdata.DetectionData, staging: str,
                  init: bytes | None) -> dict:
    """What the torch processes need (plain values) and the fingerprint a resume must match."""
    shaping = {k: getattr(cfg, k) for k in SHAPING}
    identity = {"frames": cfg.frames, "frames_run": frames_run(spark, cfg), "labels": cfg.labels,
                "classes": data.classes, "videos": data.videos, "counts": data.counts,
                "init": hashlib.sha256(init).hexdigest() if init else None, **shaping}
    fingerprint = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return {**shaping, "data": staging, "classes": data.classes, "init_weights": init, "fingerprint": fingerprint,
            "checkpoint_dir": checkpoint.of(cfg.model_dir), "use_gpu": device_for(spark) == "cuda"}


def train(spark, cfg: TrainDetectorConfig, run_id: str, progress):
    """(DetectionData, the processes' result): stage, train, remove the staged rows."""
    init = read_init_weights(spark, cfg.init_weights)
    staging = tables.staging_path(spark, cfg.training[0], f"{cfg.model_name}-{run_id}")
    try:
        progress(f"reading {cfg.frames} and the boxes of {cfg.labels}; holding out {cfg.val_fraction:g} of the "
                 "labelled videos for validation, staging the frames")
        data = detdata.load(spark, cfg.frames, cfg.labels, cfg.class_column, cfg.val_fraction, cfg.seed, staging)
        c = data.counts
        progress(f"classes {', '.join(data.classes)}; {len(data.videos['train'])} training videos "
                 f"({c['train_frames']:,} frames), {len(data.videos['val'])} validation videos "
                 f"({c['val_frames']:,} frames); {c['boxes']:,} boxes ({c['boxes_without_frame']:,} without a frame "
                 f"in {cfg.frames}, {c['boxes_rejected']:,} rejected)")
        spec = training_spec(spark, cfg, data, staging, init)
        progress(f"training a {cfg.arch} (frames scaled to at most {cfg.image_size} px) for up to {cfg.epochs} "
                 f"epochs in {cfg.num_processes} process(es) on {'cuda' if spec['use_gpu'] else 'cpu'}")
        result = launch.run(spark, fit.train_process, spec, cfg.num_processes, spec["use_gpu"])
    finally:
        fs.remove(spark, staging)
    if not result:
        raise RuntimeError("the training processes returned no result")
    if result["init_loaded"]:
        progress(f"--init-weights: loaded {result['init_loaded']}")
    return data, result


def plot_history(history: list[dict], title: str) -> bytes:
    """Training loss and validation AP / AP50 per epoch, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, loss_ax = plt.subplots(figsize=(7, 4))
    loss_ax.plot(epochs, [h["train_loss"] for h in history], "o-", color="tab:red", label="train loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("train loss")
    ap_ax = loss_ax.twinx()
    for key, style in (("val_ap", "s-"), ("val_ap50", "^-")):
        if any(key in h for h in history):
            ap_ax.plot(epochs, [h.get(key) for h in history], style, label=key.replace("val_", "validation "))
    ap_ax.set_ylim(-0.02, 1.02)
    ap_ax.set_ylabel("validation AP")
    handles = [h for ax in (loss_ax, ap_ax) for h in ax.get_legend_handles_labels()[0]]
    ap_ax.legend(handles, [h.get_label() for h in handles], loc="center right", fontsize=8)
    loss_ax.set_title(title, fontsize=9)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def metadata(cfg: TrainDetectorConfig, data: detdata.DetectionData, result: dict, run_id: str) -> torchdet.TorchDetector:
    return torchdet.TorchDetector(
        name=cfg.model_name, arch=cfg.arch, classes=data.classes, image_size=cfg.image_size,
        params={**{k: getattr(cfg, k) for k in SHAPING}, "init_weights": cfg.init_weights,
                "init_weights_loaded": result["init_loaded"]},
        data={"frames": cfg.frames, "labels": cfg.labels, "videos": data.videos, **data.counts, "run_id": run_id},
        metrics={"best_epoch": result["best_epoch"], "kept_by": "val_ap" if data.videos["val"] else "last epoch",
                 "history": result["history"]})


def history_rows(spark, history: list[dict], model: str, run_id: str):
    rows = [(h["epoch"], float(h["train_loss"]), h.get("val_ap"), h.get("val_ap50"), model, run_id) for h in history]
    return spark.createDataFrame(rows, HISTORY_SCHEMA)


def publish(spark, cfg: TrainDetectorConfig, meta, weights: bytes, run_id: str) -> tuple[str, str]:
    """Stage the history table, save the model (with the plot), swap the table in."""
    db, name = cfg.training
    def save():
        plot = plot_history(meta.metrics["history"], f"{cfg.model_name}: {cfg.arch}, kept epoch "
                                                     f"{meta.metrics['best_epoch']}")
        where = torchdet.save_detector(cfg.model_dir, weights, meta, {PLOT_FILE: plot})
        checkpoint.discard(cfg.model_dir)
        return where

    where = tables.stage_around(spark, db, name, history_rows(spark, meta.metrics["history"], cfg.model_name, run_id),
                                {"mljobs.model": cfg.model_name, "mljobs.run_id": run_id},
                                "train-detector per-epoch history", save)
    return str(where), f"{db}.{name}"


def run(spark: SparkSession, cfg: TrainDetectorConfig, progress=print) -> dict:
    t0 = time.monotonic()
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    fs.check_location(spark, cfg.model_dir, "model directory")
    data, result = train(spark, cfg, run_id, progress)
    trained = time.monotonic() - t0
    meta, weights = metadata(cfg, data, result, run_id), result["best_state"]
    where, table = publish(spark, cfg, meta, weights, run_id)
    hist = result["history"]
    last = {k: v for k, v in (hist[-1] if hist else {}).items() if k.startswith("val_")}
    progress(f"model saved: {where} (epoch {result['best_epoch']} kept); history: {table}")
    return {"frames": cfg.frames, "labels": cfg.labels, "model": cfg.model_name, "model_dir": where, "arch": cfg.arch,
            "classes": data.classes, "videos": {k: len(v) for k, v in data.videos.items()}, **data.counts,
            "processes": result["processes"], "epochs_run": len(hist), "resumed_after_epoch": result["resumed_after"],
            "best_epoch": result["best_epoch"], "stopped_early": result["stopped_early"],
            "init_weights_loaded": result["init_loaded"], "validation": last, "history": hist,
            "training_table": table, "plot": str(fs.join(where, PLOT_FILE)), "model_sha256": meta.model_sha256,
            "run_id": run_id, "train_seconds": round(trained, 2), "seconds": round(time.monotonic() - t0, 2)}


# ---- what the rest of the system knows about this job (see mljobs.registry)
NAME = "train-detector"
CONFIG = TrainDetectorConfig
EMR_STEP = EmrStep(needs=("frames_table", "labels_input"), label=lambda p: p.frames_table, default=False,
                   args=lambda p: ["--frames", p.frames_table, "--labels", p.labels_input,
                                   "--model-dir", p.detector_dir()])
GPU_FALLBACKS = [
    Known("RDDScanExec", UNSUPPORTED_CLASS, "train_detector/job.py history_rows: the training history table's rows",
          "one row per epoch, computed by the training processes; " + DRIVER_ROWS,
          columns=("epoch", "train_loss", "val_ap")),
]
