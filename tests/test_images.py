"""ingest-images and the image datasets: real images (scikit-learn's digits, scikit-image's LFW
subset) exported as files, decoded in Spark tasks with OpenCV, labelled from folders or a Ground
Truth manifest, split by content; broken files quarantined with their reason."""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import ROOT, last_json, run_cli
from mljobs.datasets import images as datasets
from mljobs.errors import BadDataError, MljobsError
from mljobs import fs, imagefiles
from mljobs import splits as split
from mljobs.ingest_images.config import IngestImagesConfig
from mljobs.ingest_images.job import run
from mljobs.ingest_images.labels import parse_line


def quiet(*_):
    pass


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("digits")
    datasets.export("digits", out)
    return out


@pytest.fixture(scope="module")
def digits(spark, digits_dir) -> dict:
    return run(spark, IngestImagesConfig(input=str(digits_dir), table="t_img.digits"), quiet)


def test_exported_datasets_are_the_packages_images(tmp_path):
    from skimage import data
    from sklearn.datasets import load_digits

    summary = datasets.export("digits", tmp_path / "a")
    ref = load_digits()
    assert summary["images"] == 1797 and summary["labels"] == {str(d): int((ref.target == d).sum()) for d in range(10)}
    first_seven = np.flatnonzero(ref.target == 7)[0]
    pixels = cv2.imread(str(tmp_path / "a" / "7" / "digit_0000.png"), cv2.IMREAD_UNCHANGED)
    assert pixels.shape == (8, 8) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(np.rint(pixels.astype(float) * 16 / 255), ref.images[first_seven])  # the 16 levels, exactly
    datasets.export("digits", tmp_path / "b")  # the same call, the same bytes
    assert all(sha(p) == sha(tmp_path / "b" / p.relative_to(tmp_path / "a")) for p in (tmp_path / "a").rglob("*.png"))
    faces = datasets.export("faces", tmp_path / "f")
    assert faces["labels"] == {"face": 100, "non-face": 100}
    face = cv2.imread(str(tmp_path / "f" / "face" / "face_0003.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(face, np.rint(data.lfw_subset()[3] * 255).astype(np.uint8))


def expected_split(files: dict[str, tuple[str, str]], fraction: float, seed: int = 0) -> dict[str, str]:
    """sha256 -> split, recomputed here: per label (the smallest of an image's labels) the distinct
    images ordered by sha256('seed:sha256'), the first round(n * fraction) are test."""
    by_label: dict[str, set[str]] = {}
    for digest, label in files.values():
        by_label.setdefault(label, set()).add(digest)
    owner = {}
    for label in sorted(by_label, reverse=True):
        for digest in by_label[label]:
            owner[digest] = label
    out = {}
    for label in by_label:
        mine = sorted((d for d, o in owner.items() if o == label),
                      key=lambda d: (hashlib.sha256(f"{seed}:{d}".encode()).hexdigest(), d))
        n_test = int(np.floor(len(mine) * fraction + 0.5))
        out.update({d: ("test" if i < n_test else "train") for i, d in enumerate(mine)})
    return out


def test_digits_labels_split_and_bytes(spark, digits, digits_dir):
    on_disk = {f"file:{p}": (sha(p), p.parent.name) for p in digits_dir.rglob("*.png")}
    rows = spark.table("t_img.digits").collect()
    assert digits["images"] == len(rows) == len(on_disk) == 1797 and digits["quarantined"] == 0
    assert {r["path"]: (r["sha256"], r["label"]) for r in rows} == on_disk
    want = expected_split(on_disk, 0.2)
    assert all(r["split"] == want[r["sha256"]] for r in rows)
    per_label = Counter((r["label"], r["split"]) for r in rows)
    assert {k: v for k, v in digits["labels"].items()} == {
        lab: {"train": per_label[(lab, "train")], "test": per_label[(lab, "test")]} for lab in map(str, range(10))}
    assert all(abs(v["test"] / (v["test"] + v["train"]) - 0.2) < 0.01 for v in digits["labels"].values())
    r = rows[0]
    assert (r["width"], r["height"], r["channels"], r["format"]) == (8, 8, 1, "png")
    assert bytes(r["content"]) == Path(r["path"][len("file:"):]).read_bytes()
    assert spark.table("t_img.digits_quarantine").count() == 0


def test_split_is_the_same_however_spark_partitions(spark, digits):
    base = spark.table("t_img.digits").selectExpr("sha256", "label", f"CAST(NULL AS STRING) AS {split.GIVEN}")
    one = sorted(split.assign(base.coalesce(1), 0.2, 0).collect())
    many = sorted(split.assign(base.repartition(7), 0.2, 0).collect())
    assert one == many and len(one) == base.select("sha256").distinct().count()
    assert sorted(split.assign(base, 0.2, 1).collect()) != one  # another seed, another split


def make_bad_tree(root: Path) -> dict[str, str]:
    """Good and broken files under cat/ and dog/; the expected reason of each broken one."""
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
    for i in range(6):
        img = (rng.random((40, 50, 3)) * 255).astype(np.uint8)
        cv2.imwrite(str(root / "cat" / f"c{i}.jpg"), img)
        cv2.imwrite(str(root / "dog" / f"d{i}.png"), img[::-1])
    whole = (root / "cat" / "c0.jpg").read_bytes()
    (root / "cat" / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "dog" / "notes.png").write_text("not a png at all\n")
    (root / "dog" / "empty.jpg").write_bytes(b"")
    png = (root / "dog" / "d0.png").read_bytes()  # a PNG's signature and end, noise between
    (root / "dog" / "garbled.png").write_bytes(png[:16] + rng.bytes(len(png) - 28) + png[-12:])
    cv2.imwrite(str(root / "dog" / "dot.png"), np.zeros((1, 1), np.uint8))
    cv2.imwrite(str(root / "loose.png"), img)
    shutil.copy(root / "cat" / "c1.jpg", root / "dog" / "c1_copy.jpg")  # one image under two labels
    shutil.copy(root / "cat" / "c2.jpg", root / "cat" / "c2_again.jpg")
    return {"cat/cut.jpg": "truncated", "dog/notes.png": "not an image", "dog/empty.jpg": "empty file",
            "dog/dot.png": "too small", "loose.png": "no label", "dog/garbled.png": "cannot decode"}


def test_broken_files_are_quarantined_with_their_reason(spark, tmp_path):
    broken = make_bad_tree(tmp_path / "in")
    s = run(spark, IngestImagesConfig(input=str(tmp_path / "in"), table="t_img.bad", max_bad_fraction=0.5), quiet)
    n_files = sum(1 for p in (tmp_path / "in").rglob("*") if p.is_file())
    assert s["files"] == n_files == 20 and s["images"] + s["quarantined"] == n_files and s["quarantined"] == 6
    q = {r["path"].split("/in/", 1)[1]: r for r in spark.table("t_img.bad_quarantine").collect()}
    assert {k: r["reason"] for k, r in q.items()} == broken
    assert "FFD9" in q["cat/cut.jpg"]["detail"] and "1x1" in q["dog/dot.png"]["detail"]
    assert s["quarantined_by_reason"] == dict(Counter(broken.values()))
    rows = spark.table("t_img.bad").collect()
    copies = [r for r in rows if r["sha256"] == sha(tmp_path / "in" / "cat" / "c1.jpg")]
    assert sorted(r["label"] for r in copies) == ["cat", "dog"] and len({r["split"] for r in copies}) == 1
    assert all(r["duplicates"] == 2 for r in copies)
    assert s["duplicates"] == {"images_with_copies": 2, "extra_copies": 2, "copies_under_several_labels": 1}


def test_empty_files_found_on_disk_equal_the_scans_missing_ones(spark, tmp_path):
    """The local listing of empty files (no Spark job) agrees with the scan's listed-not-scanned
    files, the path any other file system takes: hidden names skipped, spaces kept."""
    root = tmp_path / "in"
    make_bad_tree(root)
    for rel in ("dog/also empty.png", "cat/deep er/zero.jpg", "_skipped/empty.png", "cat/.hidden.png", "cat/_x.png"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")
    where = fs.qualified(spark, str(root))
    scan = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(where)
    on_disk = sorted(r["path"] for r in imagefiles.empty_files(spark, scan, where).collect())
    missing = sorted(r["path"] for r in imagefiles.listed_not_scanned(spark, scan).collect())
    assert on_disk == missing == [f"file:{root}/{p}" for p in ("cat/deep er/zero.jpg", "dog/also empty.png",
                                                                "dog/empty.jpg")]


def test_too_many_broken_files_write_nothing(spark, tmp_path):
    make_bad_tree(tmp_path / "in")
    with pytest.raises(BadDataError, match=r"6 of 20 files quarantined .* 1 cannot decode, 1 empty file, 1 no label"):
        run(spark, IngestImagesConfig(input=str(tmp_path / "in"), table="t_img.none", max_bad_fraction=0.1), quiet)
    assert not spark.catalog.tableExists("t_img.none") and not spark.catalog.tableExists("t_img.none_quarantine")
    names = [t.name for t in spark.catalog.listTables("t_img") if not t.isTemporary]
    assert not [n for n in names if n.startswith("none")]


def gt_line(ref: str, name: str, **extra) -> str:
    """One line of a SageMaker Ground Truth image-classification manifest."""
    return json.dumps({"source-ref": ref, "animal": 0, **extra, "animal-metadata": {
        "class-name": name, "confidence": 1, "type": "groundtruth/image-classification", "human-annotated": "yes"}})


def test_manifest_labels_and_given_split(spark, tmp_path):
    root = tmp_path / "in"
    make_bad_tree(root)
    lines = [gt_line(str(root / "cat" / "c0.jpg"), "cat"), gt_line(f"file://{root}/cat/c1.jpg", "cat", split="test"),
             gt_line("cat/c3.jpg", "kitten"), gt_line(str(root / "dog" / "d0.png"), "dog"),
             gt_line(str(root / "dog" / "gone.png"), "dog"), "{not json",
             json.dumps({"source-ref": str(root / "dog" / "d1.png")}), gt_line("/elsewhere/x.png", "dog"), ""]
    manifest = tmp_path / "train.manifest"
    manifest.write_text("\n".join(lines) + "\n")
    s = run(spark, IngestImagesConfig(input=str(root), table="t_img.man", labels="manifest", manifest=str(manifest),
                                      max_bad_fraction=0.6), quiet)
    got = {r["path"].split("/in/", 1)[1]: (r["label"], r["split"]) for r in spark.table("t_img.man").collect()}
    assert {k: v[0] for k, v in got.items()} == {"cat/c0.jpg": "cat", "cat/c1.jpg": "cat", "cat/c3.jpg": "kitten",
                                                  "dog/d0.png": "dog"}
    assert got["cat/c1.jpg"][1] == "test"
    q = sorted((r["manifest_line"], r["reason"]) for r in spark.table("t_img.man_quarantine").collect())
    assert q == [(5, "missing file"), (6, "bad manifest line"), (7, "bad manifest line"), (8, "bad manifest line")]
    assert s["files_not_in_manifest"] == 20 - 4 and s["images"] == 4 and s["quarantined"] == 4


@pytest.mark.parametrize("ref, root, want", [
    ("s3://b/imgs/cat/1.jpg", "s3a://b/imgs", ("cat/1.jpg", "cat")),
    ("file:///data/x/dog/2.png", "file:/data/x", ("dog/2.png", "dog")),
    ("./dog/3.png", "file:/data/x", ("dog/3.png", "dog")),
])
def test_manifest_paths_agree_however_spelled(ref, root, want):
    got = parse_line(gt_line(ref, want[1]), root, None)
    assert (got[1], got[2], got[4]) == (*want, None)
    assert "several label attributes" in parse_line(json.dumps({"source-ref": ref, "a-metadata": {"class-name": "x"},
                                                               "b-metadata": {"class-name": "y"}}), root, None)[4]
    assert parse_line(json.dumps({"source-ref": ref, "a-metadata": {"class-name": "x"}, "b-metadata": {
        "class-name": "y"}}), root, "b")[2] == "y"


@pytest.mark.parametrize("kw, message", [
    ({"labels": "manifest"}, "needs the manifest file"),
    ({"labels": "tags"}, "valid are folders, manifest FILE"),
    ({"test_fraction": 1.0}, r"--test-fraction must be in \[0, 1\)"),
    ({"min_size": 0}, "at least 1 pixel"),
    ({"input": "/no/such/dir"}, "does not exist"),
    ({"table": "a.b-c"}, "table"),
])
def test_bad_options_fail_before_spark(kw, message, tmp_path):
    with pytest.raises(MljobsError, match=message):
        IngestImagesConfig(**{"input": str(tmp_path), "table": "t_img.x", **kw})


def test_cli_fails_before_spark_with_one_line(tmp_path):
    res = run_cli([sys.executable, "jobs/ingest_images.py", "--input", str(tmp_path), "--table", "t.x",
                   "--labels", "manifest"], env_extra={"PYTHONPATH": str(ROOT / "lib")}, timeout=60)
    assert res.returncode == 2 and "needs the manifest file" in res.stderr
    assert last_json(res.stdout)["status"] == "failed" and "Traceback" not in res.stderr


def test_input_may_be_a_file_uri(tmp_path):
    for spelled in (f"file:{tmp_path}", f"file://{tmp_path}"):
        assert IngestImagesConfig(input=spelled, table="t_img.x").input == spelled
    with pytest.raises(MljobsError, match="does not exist"):
        IngestImagesConfig(input=f"file:{tmp_path}/none", table="t_img.x")


def test_a_file_gone_before_its_task_reads_it_is_quarantined(tmp_path):
    """The tasks read local files themselves: one that vanished (or cannot be opened) since the
    listing is quarantined with the error, not a failed task."""
    fields, read = imagefiles.inspect_read(None, f"file:{tmp_path}/gone.png", 8)
    assert read is None and fields["reason"] == imagefiles.UNREADABLE and "No such file" in fields["detail"]
    cv2.imwrite(str(tmp_path / "here.png"), np.full((20, 30, 3), 7, np.uint8))
    fields, read = imagefiles.inspect_read(None, f"file:{tmp_path}/here.png", 8)
    assert fields["reason"] is None and (fields["width"], fields["height"]) == (30, 20)
    assert read == (tmp_path / "here.png").read_bytes()
