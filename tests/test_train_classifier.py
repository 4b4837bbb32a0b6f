"""train-classifier: a torch image classifier trained by TorchDistributor's processes on an
ingest-images table of real digits, evaluated on the test split; the evaluation checked against
scikit-learn and an independent recomputation of the assumed thresholds; a killed run resumes."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import ROOT, last_json, wait_for
from mljobs.datasets import images as datasets
from mljobs.errors import InputError, MljobsError
from mljobs.ingest_images.config import IngestImagesConfig
from mljobs.ingest_images.job import run as ingest
from mljobs.models import vision
from mljobs.train_classifier import evaluate
from mljobs.train_classifier.config import TrainClassifierConfig
from mljobs.train_classifier.job import run as train

LABELS = ("0", "1", "7")
SMALL = dict(image_size=16, batch_size=16, learning_rate=0.005, seed=3)


def quiet(*_):
    pass


def small_digits(root: Path, per_label: int = 40) -> Path:
    """The first ``per_label`` real digits of three labels, as ingest-images reads them."""
    full = root / "all"
    datasets.export("digits", full)
    out = root / "digits3"
    for label in LABELS:
        (out / label).mkdir(parents=True)
        for p in sorted((full / label).glob("*.png"))[:per_label]:
            shutil.copy(p, out / label / p.name)
    return out


@pytest.fixture(scope="module")
def digits3(spark, tmp_path_factory) -> str:
    folder = small_digits(tmp_path_factory.mktemp("tc"))
    ingest(spark, IngestImagesConfig(input=str(folder), table="t_tc.digits3", test_fraction=0.25), quiet)
    return "t_tc.digits3"


@pytest.fixture(scope="module")
def trained(spark, digits3, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("tc-model")
    cfg = TrainClassifierConfig(table=digits3, model_dir=str(out / "model"), plots_dir=str(out / "plots"),
                                epochs=12, patience=12, val_fraction=0.15, **SMALL)
    return train(spark, cfg, quiet)


def test_training_learns_and_writes_a_complete_model(trained):
    meta = json.loads((Path(trained["model_dir"]) / "metadata.json").read_text())
    hist = [h["train_loss"] for h in meta["metrics"]["history"]]
    assert len(hist) == trained["epochs_run"] == 12 and hist[-1] < hist[0] / 3
    weights = (Path(trained["model_dir"]) / "model.pt").read_bytes()
    assert hashlib.sha256(weights).hexdigest() == meta["model_sha256"] == trained["model_sha256"]
    assert meta["labels"] == list(LABELS) and meta["image_size"] == 16 and meta["model_format"] == vision.MODEL_FORMAT
    assert trained["images"] == {lab: {"train": 25, "val": 5, "test": 10} for lab in LABELS}  # round(30 * 0.15), half up
    assert trained["test"]["accuracy"] >= 0.9 and trained["resumed_after_epoch"] == 0
    assert [Path(p).name for p in trained["plots"]] == ["confusion_matrix.png", "mistakes.png"]
    assert all(Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in trained["plots"])


def test_training_images_are_learnt(spark, digits3, trained):
    """Nearly every training image (the net saw them 12 times) is predicted right."""
    rows = spark.table(digits3).where("split = 'train'").select("label", "content").collect()
    meta = vision.load_classifier(trained["model_dir"])
    net = vision.net_of(meta.to_json(), meta.weights())
    pixels = np.stack([vision.to_pixels(r["content"], meta.image_size) for r in rows])
    pred = vision.probabilities(net, pixels, meta.to_json()).argmax(1)
    truth = np.array([meta.labels.index(r["label"]) for r in rows])
    assert (pred == truth).mean() >= 0.95


def brute_threshold(scores: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """Every candidate tried one by one: the highest-F1 threshold, the highest on ties."""
    best = (-1.0, -1.0)
    for t in sorted(set(scores[positive].tolist())):
        said = scores >= t
        tp = int((said & positive).sum())
        f1 = 2 * tp / (said.sum() + positive.sum())
        if f1 >= best[1]:
            best = (t, f1)
    return best


def test_evaluation_equals_scikit_learn_and_the_thresholds_recomputed(spark, digits3, trained):
    from sklearn.metrics import precision_recall_fscore_support

    meta = vision.load_classifier(trained["model_dir"])
    net = vision.net_of(meta.to_json(), meta.weights())
    rows = spark.table(digits3).where("split = 'test'").orderBy("sha256").select("label", "content").collect()
    probs = vision.probabilities(net, np.stack([vision.to_pixels(r["content"], 16) for r in rows]), meta.to_json())
    y = np.array([meta.labels.index(r["label"]) for r in rows])
    p, r, f, s = precision_recall_fscore_support(y, probs.argmax(1), labels=range(3), zero_division=0)
    table = {row["label"]: row for row in spark.table(trained["evaluation_table"]).collect()}
    report = json.loads(Path(trained["evaluation_json"]).read_text())
    for i, lab in enumerate(LABELS):
        got = table[lab]
        assert (got["precision"], got["recall"], got["f1"], got["test_images"]) == pytest.approx((p[i], r[i], f[i], s[i]))
        t, best_f1 = brute_threshold(probs[:, i], y == i)
        assert got["assumed_threshold"] == pytest.approx(t, abs=1e-6)
        assert got["f1_at_threshold"] == pytest.approx(best_f1)
        assert report["per_class"][i]["assumed_threshold"] == got["assumed_threshold"]
        assert meta.metrics["per_label"][lab]["assumed_threshold"] == got["assumed_threshold"]  # what classify reads
    assert report["macro_f1"] == pytest.approx(f.mean()) and report["micro_f1"] == pytest.approx((probs.argmax(1) == y).mean())


@pytest.mark.parametrize("scores, positive, want", [
    ([0.9, 0.8, 0.7, 0.6], [1, 1, 0, 0], (0.8, 1.0)),        # a clean cut
    ([0.9, 0.5, 0.5, 0.1], [1, 0, 1, 0], (0.5, 0.8)),        # 0.5 takes a negative along: 0.8 beats 0.9's 2/3
    ([0.9, 0.8, 0.7, 0.2], [1, 0, 0, 1], (0.9, 2 / 3)),    # 0.9 and 0.2 both give 2/3: the higher
    ([0.3, 0.3, 0.3], [1, 1, 1], (0.3, 1.0)),
    ([0.2, 0.9], [0, 0], (None, None)),                      # no test image of the label
])
def test_assumed_threshold_by_hand(scores, positive, want):
    t, f1 = evaluate.assumed_threshold(np.array(scores), np.array(positive, bool))
    assert (t, f1) == (pytest.approx(want[0]) if want[0] is not None else None,
                       pytest.approx(want[1]) if want[1] is not None else None)


def test_most_confident_mistakes_come_first():
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.7, 0.3]])
    assert evaluate.mistakes(np.array([0, 0, 0, 1]), probs, 5) == [2, 3, 1]


def test_init_weights_start_from_a_trained_net(spark, digits3, trained, tmp_path):
    cfg = TrainClassifierConfig(table=digits3, model_dir=str(tmp_path / "m2"), plots_dir=str(tmp_path / "p2"),
                                epochs=1, init_weights=str(Path(trained["model_dir"]) / "model.pt"),
                                **{**SMALL, "learning_rate": 1e-4})
    summary = train(spark, cfg, quiet)
    total = len(vision.build_net("small-cnn", 3).state_dict())
    assert summary["init_weights_loaded"] == f"{total} of {total} tensors"
    assert summary["test"]["accuracy"] >= 0.9  # one more epoch from trained weights, not from scratch


@pytest.mark.parametrize("kw, message", [
    (dict(arch="vgg99"), "--arch 'vgg99'"),
    (dict(val_fraction=1.0), "--val-fraction"),
    (dict(init_weights="/nonexistent/w.pt"), "no such file"),
    (dict(table="db.bad name"), "bad name"),
    (dict(epochs=0), "--epochs"),
])
def test_bad_options_fail_before_spark(kw, message):
    with pytest.raises(MljobsError, match=message):
        TrainClassifierConfig(**{"table": "t.x", **kw})


def test_bad_inputs_fail_before_training(spark, digits3, tmp_path):
    spark.sql("CREATE DATABASE IF NOT EXISTS t_tc")
    spark.createDataFrame([("a", b"x")], "label string, content binary").write.mode("overwrite").saveAsTable("t_tc.nosplit")
    spark.sql(f"CREATE OR REPLACE TEMP VIEW one_label AS SELECT * FROM {digits3} WHERE label = '7'")
    spark.table("one_label").write.mode("overwrite").saveAsTable("t_tc.onelabel")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a state dict")
    out = dict(model_dir=str(tmp_path / "m"), plots_dir=str(tmp_path / "p"))
    with pytest.raises(InputError, match="lacks"):
        train(spark, TrainClassifierConfig(table="t_tc.nosplit", **out), quiet)
    with pytest.raises(InputError, match="1 label"):
        train(spark, TrainClassifierConfig(table="t_tc.onelabel", **out), quiet)
    with pytest.raises(InputError, match="not a torch state dict"):
        train(spark, TrainClassifierConfig(table=digits3, init_weights=str(junk), **out), quiet)
    with pytest.raises(InputError, match="does not exist|not found"):
        train(spark, TrainClassifierConfig(table="t_tc.missing", **out), quiet)
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_killed_run_resumes_from_its_checkpoint(digits3, tmp_path):
    """kill -9 of the whole job after epoch 3's checkpoint; the same command again resumes there."""
    data_dir = tmp_path / "data"
    args = ["./spark-submit.sh", "ingest-images", "--data-dir", str(data_dir), "--input", "IN", "--table", "r.d"]
    folder = small_digits(tmp_path / "in", per_label=12)
    args[args.index("IN")] = str(folder)
    env = dict(os.environ)
    subprocess.run(args, cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
    model = tmp_path / "model"
    cmd = ["./spark-submit.sh", "train-classifier", "--data-dir", str(data_dir), "--table", "r.d", "--model-dir",
           str(model), "--epochs", "40", "--patience", "40", "--image-size", "8", "--batch-size", "8", "--no-augment"]
    log = tmp_path / "first.log"
    with log.open("w") as out:
        first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(log, "epoch 3/40", first)
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    state = torch.load(model / "checkpoint" / "last.pt", weights_only=True)
    assert 3 <= state["epoch"] < 40 and not (model / "metadata.json").exists()
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    summary = last_json(again.stdout)
    assert summary["resumed_after_epoch"] == state["epoch"] and summary["epochs_run"] == 40
    assert f"resuming after epoch {state['epoch']}" in again.stdout + again.stderr
    assert f"epoch {state['epoch'] + 1}/40" in again.stdout + again.stderr
    assert "epoch 1/40" not in again.stdout + again.stderr
    assert not (model / "checkpoint").exists()  # the finished model directory replaces the checkpoints
