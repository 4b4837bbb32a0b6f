"""train-detector: a tiny Faster R-CNN overfits synthetic "helmets" (filled ellipses) — its loss
falls and AP50 on the frames is >= 0.9 by the project's COCO engine; a kill -9 during training
resumes from the checkpoint; the model directory is complete; ``detect --model DIR`` gives the
rows of a plain single-process torch run; bad arguments and inputs fail with one clear line."""
from __future__ import annotations

import json
import os
import signal
import subprocess

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from helpers import ROOT, last_json, wait_for
from mljobs import coco
from mljobs.detect.config import DetectConfig
from mljobs.detect.job import run_detect
from mljobs.errors import InputError, MljobsError
from mljobs.models import torchdet
from mljobs.train_detector import data as detdata
from mljobs.train_detector.config import TrainDetectorConfig
from mljobs.train_detector.job import run as train

DB = "trdet"
SIZE = 64
EPOCHS = 24
IMAGE_SIZE = 128  # the net scales the 64-pixel frames up to 128
VIDEOS = [f"clip{i}.mp4" for i in range(1, 6)]  # one frame each: 4 train, 1 validation


def synthetic(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(frames, labels): one 64x64 PNG frame per video, a light filled ellipse on a dark
    background, its box in the NFL train_labels layout."""
    rng = np.random.default_rng(seed)
    frames, labels = [], []
    for v, video in enumerate(VIDEOS):
        img = np.full((SIZE, SIZE, 3), 40, np.uint8)
        w, h = int(rng.integers(22, 32)), int(rng.integers(22, 32))
        x, y = int(rng.integers(2, SIZE - 2 - w)), int(rng.integers(2, SIZE - 2 - h))
        cv2.ellipse(img, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, (230, 230, 230), -1)
        ok, png = cv2.imencode(".png", img)
        frames.append({"video": video, "path": f"/videos/{video}", "frame": 1, "timestamp_ms": 0.0, "width": SIZE,
                       "height": SIZE, "format": "png", "content": png.tobytes(), "sha256": str(v)})
        labels.append({"video": video, "frame": 1, "label": f"H{v}", "left": x, "width": w, "top": y, "height": h})
    return pd.DataFrame(frames), pd.DataFrame(labels)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("trdet")
    frames, labels = synthetic()
    pq.write_table(pa.Table.from_pandas(frames, preserve_index=False), root / "frames.parquet")
    absent = {"video": "missing.mp4", "frame": 1, "label": "H9", "left": 1, "width": 5, "top": 1, "height": 5}
    pd.concat([labels, pd.DataFrame([absent])]).to_csv(root / "train_labels.csv", index=False)
    return {"root": root, "frames": frames, "labels": labels, "frames_path": root / "frames.parquet",
            "labels_csv": root / "train_labels.csv"}


@pytest.fixture(scope="module")
def trained(inputs) -> dict:
    """The CLI killed (kill -9 of its whole session) after epoch 2's checkpoint, then the same
    command again: (first checkpoint's epoch, the second run's summary, the model dir, stdout)."""
    root = inputs["root"]
    model = root / "model"
    cmd = ["./spark-submit.sh", "train-detector", "--data-dir", str(root / "data"), "--frames",
           str(inputs["frames_path"]), "--labels", str(inputs["labels_csv"]), "--model-dir", str(model),
           "--image-size", str(IMAGE_SIZE), "--epochs", str(EPOCHS), "--batch-size", "2", "--learning-rate", "0.0005",
           "--val-fraction", "0.2", "--training-table", f"{DB}.helmets_training"]
    log = root / "first.log"
    with log.open("w") as out:
        first = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(log, f"epoch 2/{EPOCHS}", first)
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    state = torch.load(model / "checkpoint" / "last.pt", weights_only=True)
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    return {"killed_at": state["epoch"], "summary": last_json(again.stdout), "model": model,
            "out": again.stdout + again.stderr, "data": root / "data"}


def test_killed_run_resumes_and_writes_a_complete_model(trained):
    s, k = trained["summary"], trained["killed_at"]
    assert 2 <= k < EPOCHS
    assert s["resumed_after_epoch"] == k and s["epochs_run"] == EPOCHS
    assert f"resuming after epoch {k}" in trained["out"] and f"epoch {k + 1}/{EPOCHS}" in trained["out"]
    assert "epoch 1/" not in trained["out"]
    model = trained["model"]
    assert not (model / "checkpoint").exists()  # the finished model directory replaces the checkpoints
    meta = json.loads((model / "metadata.json").read_text())
    assert meta["arch"] == "fasterrcnn_resnet18_fpn" and meta["classes"] == ["helmet"]
    assert meta["image_size"] == IMAGE_SIZE and meta["model_format"] == "torch-detector"
    assert {"torch", "torchvision", "mljobs"} <= set(meta["versions"]) and len(meta["model_sha256"]) == 64
    assert meta["data"]["videos"] == {"train": sorted(set(VIDEOS) - set(meta["data"]["videos"]["val"])),
                                      "val": meta["data"]["videos"]["val"]} and len(meta["data"]["videos"]["val"]) == 1
    assert (model / "training.png").read_bytes()[:4] == b"\x89PNG"
    # the box of a video the frames lack is counted, not an error
    assert s["boxes"] == len(VIDEOS) and s["boxes_without_frame"] == 1 and s["boxes_rejected"] == 0
    hist = s["history"]
    assert [h["epoch"] for h in hist] == list(range(1, EPOCHS + 1)) and meta["metrics"]["history"] == hist
    assert all(0.0 <= h["val_ap"] <= h["val_ap50"] <= 1.0 for h in hist)
    assert np.mean([h["train_loss"] for h in hist[-3:]]) < 0.5 * np.mean([h["train_loss"] for h in hist[:3]])
    # the history table (in the CLI's own metastore): its Parquet files
    files = [p for p in trained["data"].rglob("*.parquet") if "helmets_training" in str(p)]
    table = pd.concat([pd.read_parquet(p) for p in files]).sort_values("epoch")
    assert table["epoch"].tolist() == list(range(1, EPOCHS + 1))
    assert np.allclose(table["train_loss"], [h["train_loss"] for h in hist])
    assert np.allclose(table["val_ap50"], [h["val_ap50"] for h in hist])


@pytest.fixture(scope="module")
def detected(spark, inputs, trained) -> pd.DataFrame:
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {DB}")
    spark.createDataFrame(inputs["frames"]).write.mode("overwrite").saveAsTable(f"{DB}.frames")
    summary = run_detect(spark, DetectConfig(model=str(trained["model"]), frames=f"{DB}.frames",
                                             out_table=f"{DB}.helmets", batch_size=3), progress=lambda m: None)
    assert summary["label"] == "helmet" and summary["frames_scored"] == len(VIDEOS)
    return spark.table(f"{DB}.helmets").toPandas()


def test_the_detector_overfits_its_frames(inputs, detected):
    """AP50 >= 0.9 on the synthetic frames, by mljobs.coco (COCO's rules)."""
    gt = inputs["labels"].assign(cls="helmet", kind=0, score=np.nan)
    dets = detected.assign(cls=detected["label"], kind=1)
    cols = ["video", "frame", "cls", "kind", "left", "top", "width", "height", "score"]
    stats = coco.evaluate(pd.concat([gt[cols], dets[cols]], ignore_index=True)).iloc[0]
    assert stats["ap50"] >= 0.9, stats.to_dict()


def test_detect_rows_equal_a_plain_torch_run(inputs, trained, detected):
    meta = torchdet.load_detector(trained["model"])
    net = torchdet.net_of(meta.to_json(), meta.weights())
    images = [torchdet.to_image(b) for b in inputs["frames"]["content"]]
    rows = []
    for video, found in zip(inputs["frames"]["video"], torchdet.predict(net, images, batch=1)):
        for (x, y, w, h), s in zip(torchdet.xywh(found["boxes"]).tolist(), found["scores"].tolist()):
            rows.append((video, 1, "helmet", x, y, w, h, s))
    expected = pd.DataFrame(rows, columns=["video", "frame", "label", "left", "top", "width", "height", "score"])
    got = detected[expected.columns]
    key = ["video", "score"]
    expected, got = expected.sort_values(key).reset_index(drop=True), got.sort_values(key).reset_index(drop=True)
    assert len(got) == len(expected) > 0
    pd.testing.assert_frame_equal(got.drop(columns="score"), expected.drop(columns="score"), check_dtype=False)
    assert np.allclose(got["score"], expected["score"], atol=1e-4)
    assert detected["video_frame"].str.match(r"^clip\d_1$").all() and detected["score"].between(0, 1).all()


def test_score_min_filters_the_torch_rows(spark, trained, detected):
    cut = float(detected["score"].median())
    summary = run_detect(spark, DetectConfig(model=str(trained["model"]), frames=f"{DB}.frames",
                                             out_table=f"{DB}.helmets_min", score_min=cut), progress=lambda m: None)
    got = spark.table(f"{DB}.helmets_min").toPandas()
    assert summary["detections"] == len(got) == int((detected["score"] >= cut - 1e-6).sum())


def test_bad_arguments_fail_before_training(spark, inputs, tmp_path):
    base = {"frames": f"{DB}.frames", "labels": str(inputs["labels_csv"]), "model_dir": str(tmp_path / "m")}
    with pytest.raises(MljobsError, match="--arch .yolo.: valid: fasterrcnn_resnet18_fpn, fasterrcnn_mobilenet_v3_"):
        TrainDetectorConfig(**base, arch="yolo")
    with pytest.raises(InputError, match="--init-weights .*nope.pt: no such file"):
        TrainDetectorConfig(**base, init_weights=str(tmp_path / "nope.pt"))
    with pytest.raises(MljobsError, match="--val-fraction must be in"):
        TrainDetectorConfig(**base, val_fraction=1.0)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {DB}")
    spark.createDataFrame([], "video string, frame int, content binary").write.mode("overwrite") \
        .saveAsTable(f"{DB}.no_frames")
    with pytest.raises(InputError, match="no usable frame: none of the 6 boxes .* is on a frame of trdet.no_frames "
                                         r"\(frames: 0"):
        train(spark, TrainDetectorConfig(**{**base, "frames": f"{DB}.no_frames"}), progress=lambda m: None)
    assert not (tmp_path / "m").exists()
    with pytest.raises(InputError, match="lacks left"):
        detdata.read_boxes(spark, str(inputs["frames_path"]), None)


@pytest.mark.parametrize("arch", torchdet.ARCHS)
def test_every_arch_builds_offline_and_scores_a_frame(arch):
    """weights=None everywhere (a download would fail here: no network to the model hub); eval
    mode gives boxes in the frame's pixels; resnet18's pyramid starts at stride 8 with 16-px anchors."""
    torch.manual_seed(0)
    net = torchdet.build_net(arch, 2, 96).eval()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    found = torchdet.predict(net, [torch.rand(3, 72, 96)])[0]
    assert set(found) == {"boxes", "scores", "labels"} and len(found["boxes"]) == len(found["scores"]) <= 100
    assert (found["boxes"][:, 2] <= 96 + 1e-3).all() and set(found["labels"].tolist()) <= {1, 2}
    if arch == "fasterrcnn_resnet18_fpn":
        levels = net.backbone(torch.rand(1, 3, 96, 96))
        assert [tuple(v.shape[-2:]) for v in levels.values()] == [(12, 12), (6, 6), (3, 3)]
        assert net.rpn.anchor_generator.sizes == torchdet.SMALL_ANCHORS


def test_the_split_is_by_video_and_seeded():
    videos = [f"v{i}" for i in range(10)]
    a = detdata.split_videos(videos, 0.3, 0)
    assert len(a["val"]) == 3 and sorted(a["train"] + a["val"]) == videos
    assert detdata.split_videos(list(reversed(videos)), 0.3, 0) == a
    assert detdata.split_videos(videos, 0.3, 1) != a
    assert detdata.split_videos(["x", "y"], 0.1, 0)["val"] != [] and detdata.split_videos(["x"], 0.5, 0)["val"] == []
    assert detdata.split_videos(videos, 0.0, 0)["val"] == []
