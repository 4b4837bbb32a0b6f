"""classify: a real (untrained, seeded) small-cnn over scikit-learn's real digits, scored in Spark
tasks and compared with a single-process loop over the same bytes; the labels' threshold and
top-k rules on hand-built frames and on the job's output; broken files quarantined; bad
arguments failing before Spark or before any scoring."""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from chispa import assert_df_equality

from helpers import ROOT, last_json, run_cli
from mljobs.classify import labels as steps
from mljobs.classify.config import ClassifyConfig
from mljobs.classify.job import FALLBACK_THRESHOLD, run, thresholds
from mljobs.datasets import images as datasets
from mljobs.errors import InputError, MljobsError

torch = pytest.importorskip("torch")
from mljobs.models import vision  # noqa: E402 (after the torch check)

LABELS = ["0", "1", "2"]
PER_LABEL = 12
SIZE = 16


def quiet(*_):
    pass


def make_model(where: Path, extra: dict[str, bytes] | None = None, seed: int = 0, metrics: dict | None = None) -> Path:
    """A small-cnn with seeded random weights, saved as train-classifier saves one (no training)."""
    torch.manual_seed(seed)
    net = vision.build_net("small-cnn", len(LABELS))
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    meta = vision.ImageClassifier(name="digits_untrained", arch="small-cnn", labels=LABELS, image_size=SIZE,
                                  mean=[0.2, 0.2, 0.2], std=[0.3, 0.3, 0.3], metrics=metrics or {})
    return Path(vision.save_classifier(where, buf.getvalue(), meta, extra))


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory) -> Path:
    """The first PER_LABEL real digits of each of LABELS, as PNG files in label folders."""
    full, out = tmp_path_factory.mktemp("digits-all"), tmp_path_factory.mktemp("digits")
    datasets.export("digits", full)
    for label in LABELS:
        (out / label).mkdir()
        for p in sorted((full / label).glob("*.png"))[:PER_LABEL]:
            shutil.copy(p, out / label / p.name)
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("model") / "digits_untrained")


@pytest.fixture(scope="module")
def images_table(spark, digits_dir) -> str:
    """An ingest-images-like table (path, label, split, sha256, content) built directly."""
    rows = [(str(p), p.parent.name, "test", hashlib.sha256(p.read_bytes()).hexdigest(), p.read_bytes())
            for p in sorted(digits_dir.rglob("*.png"))]
    spark.sql("CREATE DATABASE IF NOT EXISTS t_cls")
    spark.createDataFrame(rows, "path string, label string, split string, sha256 string, content binary") \
        .repartition(2).write.mode("overwrite").saveAsTable("t_cls.digits")
    return "t_cls.digits"


def reference(model_dir: Path, contents: list[bytes]) -> np.ndarray:
    """The probabilities of a plain single-process loop over the same bytes."""
    meta = vision.load_classifier(model_dir)
    net = vision.net_of(meta.to_json(), meta.weights())
    pixels = np.stack([vision.to_pixels(b, SIZE) for b in contents])
    return vision.probabilities(net, pixels, meta.to_json())


@pytest.fixture(scope="module")
def all_labels(spark, images_table, model_dir) -> dict:
    """classify --table with min-confidence 0: every label of every image, highest first."""
    return run(spark, ClassifyConfig(model=str(model_dir), table=images_table, out_table="t_cls.all",
                                     min_confidence=0.0, batch_size=5), quiet)


def test_probabilities_equal_a_single_process_loop(spark, images_table, model_dir, all_labels):
    src = {r["path"]: r for r in spark.table(images_table).collect()}
    out = spark.table("t_cls.all").collect()
    assert all_labels["rows_scored"] == len(out) == len(src) == PER_LABEL * len(LABELS)
    assert all_labels["quarantined"] == 0 and all_labels["unlabelled_below_threshold"] == 0
    paths = sorted(src)
    want = reference(model_dir, [src[p]["content"] for p in paths])
    by_path = {r["path"]: r for r in out}
    for p, probs in zip(paths, want):
        row = by_path[p]
        got = {x["label"]: x["confidence"] for x in row["labels"]}
        assert sorted(got) == LABELS
        np.testing.assert_allclose([got[x] for x in LABELS], probs, atol=1e-5)
        assert [x["confidence"] for x in row["labels"]] == sorted(got.values(), reverse=True)
        assert row["label"] == row["labels"][0]["label"] and row["confidence"] == row["labels"][0]["confidence"]
        assert row["sha256"] == src[p]["sha256"]
    meta = vision.load_classifier(model_dir)
    assert {(r["model"], r["model_sha256"], r["run_id"]) for r in out} == {
        (meta.name, meta.model_sha256, all_labels["run_id"])}
    assert spark.table("t_cls.all_quarantine").count() == 0


def test_min_confidence_and_top_k_filter_exactly(spark, images_table, model_dir, all_labels):
    """The job's labels are its all-labels output filtered in Python: threshold, then top-k."""
    full = spark.table("t_cls.all").select("path", "sha256", "labels").collect()
    cut = float(np.median([r["labels"][0]["confidence"] for r in full]))  # half the images get no label
    s = run(spark, ClassifyConfig(model=str(model_dir), table=images_table, out_table="t_cls.top",
                                  min_confidence=cut, top_k=1), quiet)
    expected = []
    for r in full:
        kept = [(x["label"], x["confidence"]) for x in r["labels"] if x["confidence"] >= cut][:1]
        expected.append((r["path"], r["sha256"], kept, kept[0][0] if kept else None, kept[0][1] if kept else None))
    want = spark.createDataFrame(expected, "path string, sha256 string, labels array<struct<label:string,"
                                           "confidence:double>>, label string, confidence double")
    got = spark.table("t_cls.top").drop("model", "model_sha256", "run_id")
    assert_df_equality(got, want, ignore_row_order=True, ignore_nullable=True)
    unlabelled = sum(1 for e in expected if not e[2])
    assert 0 < unlabelled < len(expected) and s["unlabelled_below_threshold"] == unlabelled
    assert s["labelled"] == len(expected) - unlabelled and s["thresholds"] == {x: cut for x in LABELS}


def f32(x: float) -> float:
    return float(np.float32(x))


def test_labels_step_on_a_hand_built_frame(spark):
    """Per-label thresholds, highest first, ties in the model's label order, top-k, none passing."""
    df = spark.createDataFrame([("a", [0.5, 0.3, 0.2]), ("b", [0.25, 0.5, 0.25]), ("c", [0.4, 0.3, 0.3]),
                                ("d", [0.1, 0.1, 0.8]), ("e", [0.1, 0.1, 0.1])], "id string, p array<float>")
    out = steps.with_labels(df, "p", ["x", "y", "z"], [0.2, 0.2, 0.25], top_k=2)
    want = spark.createDataFrame([
        ("a", [("x", 0.5), ("y", f32(0.3))], "x", 0.5),                  # z's 0.2 is under its 0.25
        ("b", [("y", 0.5), ("x", 0.25)], "y", 0.5),                      # x and z tie: x first; top 2
        ("c", [("x", f32(0.4)), ("y", f32(0.3))], "x", f32(0.4)),        # three pass; top 2
        ("d", [("z", f32(0.8))], "z", f32(0.8)),
        ("e", [], None, None),                                           # none passes: no label
    ], "id string, labels array<struct<label:string,confidence:double>>, label string, confidence double")
    assert_df_equality(out, want, ignore_row_order=True, ignore_nullable=True)
    every = steps.with_labels(df, "p", ["x", "y", "z"], [0.0] * 3, top_k=None).where("id = 'b'").first()
    assert [(x["label"], x["confidence"]) for x in every["labels"]] == [("y", 0.5), ("x", 0.25), ("z", 0.25)]


def broken_tree(root: Path, digits_dir: Path) -> dict[str, str]:
    """Four good digit PNGs and four broken files under root/; the broken ones' reasons."""
    good = sorted(digits_dir.rglob("*.png"))[:4]
    (root / "sub").mkdir(parents=True)
    for i, p in enumerate(good):
        shutil.copy(p, (root if i % 2 else root / "sub") / p.name)
    png = good[0].read_bytes()
    (root / "cut.png").write_bytes(png[: len(png) // 2])
    (root / "sub" / "empty.png").write_bytes(b"")
    (root / "notes.png").write_text("not a png at all\n")
    rng = np.random.default_rng(0)
    (root / "garbled.png").write_bytes(png[:16] + rng.bytes(len(png) - 28) + png[-12:])
    return {"cut.png": "truncated", "sub/empty.png": "empty file", "notes.png": "not an image",
            "garbled.png": "cannot decode"}


def test_input_files_broken_ones_quarantined_and_a_rerun_replaces(spark, tmp_path, digits_dir, model_dir):
    broken = broken_tree(tmp_path / "in", digits_dir)
    cfg = ClassifyConfig(model=str(model_dir), input=str(tmp_path / "in"), out_table="t_cls.files", top_k=1,
                         min_confidence=0.0)
    for attempt in range(2):
        s = run(spark, cfg, quiet)
        assert (s["images"], s["rows_scored"], s["quarantined"]) == (8, 4, 4)
        assert s["quarantined_by_reason"] == {"cannot decode": 1, "empty file": 1, "not an image": 1, "truncated": 1}
        q = {r["path"].split("/in/", 1)[1]: r for r in spark.table("t_cls.files_quarantine").collect()}
        assert {k: r["reason"] for k, r in q.items()} == broken
        assert {r["run_id"] for r in q.values()} == {s["run_id"]} and "IEND" in q["cut.png"]["detail"]
        out = spark.table("t_cls.files").collect()
        assert len(out) == 4 and {r["run_id"] for r in out} == {s["run_id"]}
        assert all(len(r["labels"]) == 1 and r["label"] in LABELS for r in out)
        assert sorted(Path(r["path"]).name for r in out) == sorted(p.name for p in sorted(digits_dir.rglob("*.png"))[:4])


def test_all_bad_input_is_an_error_and_writes_nothing(spark, tmp_path, model_dir):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_text("text")
    (tmp_path / "in" / "b.png").write_bytes(b"")
    with pytest.raises(InputError, match=r"no image could be scored among 2 .*1 empty file, 1 not an image"):
        run(spark, ClassifyConfig(model=str(model_dir), input=str(tmp_path / "in"), out_table="t_cls.bad"), quiet)
    assert not spark.catalog.tableExists("t_cls.bad") and not spark.catalog.tableExists("t_cls.bad_quarantine")


@pytest.mark.parametrize("kw, message", [
    ({"table": "t.a", "input": "."}, "exactly one of --table"),
    ({}, "exactly one of --table"),
    ({"table": "t.a", "top_k": 0}, "--top-k must be at least 1"),
    ({"table": "t.a", "min_confidence": 55}, r"must be in \[0, 1\] \(a probability, not a percentage\)"),
    ({"table": "t.a", "min_confidence": "high"}, "a probability in"),
    ({"table": "t.a", "batch_size": 0}, "--batch-size"),
    ({"table": "t.a", "keep": ["label"]}, "clash"),
    ({"table": "t_cls.out"}, "would overwrite"),
    ({"input": "/no/such/dir"}, "does not exist"),
    ({"table": "t.a", "model": "/no/such/model"}, "no such directory"),
])
def test_bad_options_fail_before_spark(kw, message, model_dir):
    with pytest.raises(MljobsError, match=message):
        ClassifyConfig(**ClassifyConfig.coerce({"model": str(model_dir), "out_table": "t_cls.out", **kw}))


def test_cli_fails_before_spark_with_one_line(model_dir):
    res = run_cli([sys.executable, "jobs/classify.py", "--model", str(model_dir), "--out-table", "t.o",
                   "--table", "t.a", "--min-confidence", "80"], env_extra={"PYTHONPATH": str(ROOT / "lib")}, timeout=60)
    assert res.returncode == 2 and "not a percentage" in res.stderr
    assert last_json(res.stdout)["status"] == "failed" and "Traceback" not in res.stderr


@pytest.mark.parametrize("kw, message", [
    ({"table": "t_cls.nothere"}, "does not exist"),
    ({"table": "t_cls.digits", "keep": ["path", "nope"]}, "has no column nope"),
    ({"table": "t_cls.nocontent"}, "no binary content column"),
])
def test_bad_tables_and_columns_fail_before_scoring(spark, images_table, model_dir, kw, message):
    spark.sql("CREATE TABLE IF NOT EXISTS t_cls.nocontent (path string, content string) USING parquet")
    with pytest.raises(InputError, match=message):
        run(spark, ClassifyConfig(model=str(model_dir), out_table="t_cls.never", **kw), quiet)
    assert not spark.catalog.tableExists("t_cls.never")


def test_a_model_that_is_not_a_classifier_is_a_clear_error(spark, images_table, tmp_path, model_dir):
    other = tmp_path / "xgb"
    other.mkdir()
    (other / "model.json").write_text("{}")
    (other / "metadata.json").write_text(json.dumps({"format_version": 1, "model_format": "xgboost-json",
                                                     "model_file": "model.json"}))
    with pytest.raises(InputError, match="not an image classifier"):
        run(spark, ClassifyConfig(model=str(other), table=images_table, out_table="t_cls.never"), quiet)
    with pytest.raises(InputError, match="not a model directory"):
        run(spark, ClassifyConfig(model=str(tmp_path), table=images_table, out_table="t_cls.never"), quiet)
    bad = tmp_path / "torn"
    shutil.copytree(model_dir, bad)
    (bad / "model.pt").write_bytes(b"not these weights")
    with pytest.raises(InputError, match="sha256 differs"):
        run(spark, ClassifyConfig(model=str(bad), table=images_table, out_table="t_cls.never"), quiet)


def test_min_confidence_rules(tmp_path):
    plain = vision.load_classifier(make_model(tmp_path / "plain"))
    assert thresholds(plain, 0.25) == ([0.25] * 3, "0.25 for every label")
    assert thresholds(plain, "auto")[0] == [FALLBACK_THRESHOLD] * 3
    with pytest.raises(InputError, match="no assumed thresholds"):
        thresholds(plain, "assumed")
    per_label = {"0": {"assumed_threshold": 0.61}, "1": {"assumed_threshold": 0.2}, "2": {"assumed_threshold": None}}
    evaluated = vision.load_classifier(make_model(tmp_path / "ev", metrics={"per_label": per_label}))
    for rule in ("auto", "assumed"):
        floors, words = thresholds(evaluated, rule)
        assert floors == [0.61, 0.2, FALLBACK_THRESHOLD] and "assumed threshold" in words and "for 2" in words
