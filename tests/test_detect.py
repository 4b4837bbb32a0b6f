"""The detect job on real photos (scikit-image's astronaut, cameraman and coffee) encoded as
PNG/JPEG in a small frames table, plus one corrupt frame: OpenCV's Haar frontal-face cascade
and HOG people detector find what is plainly there, the job's rows equal a plain OpenCV loop
over the same bytes, the corrupt frame is quarantined, and the output feeds detection-metrics."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest
from helpers import last_json, run_cli
from skimage import data

from mljobs.detect.config import DetectConfig
from mljobs.detect.job import read_frames, run_detect
from mljobs.detection_metrics.job import DetectionConfig, run_detection_metrics
from mljobs.errors import InputError, MljobsError
from mljobs.models.detectors import DETECTION, DetectParams, build_detector, frame_rows, resolve_model

DB = "dettest"
VIDEO = "photos.mp4"
CORRUPT = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4 + b"IEND\xaeB`\x82"
# Regions found by eye on the images (checked against boxes drawn with OpenCV):
ASTRONAUT_FACE = (180, 65, 90, 95)  # left, top, width, height in the astronaut photo (frame 1)
# HOG's window is a whole 64x128 pedestrian with a margin: the cameraman (cut at the knees) is
# found once the photo is shrunk to a quarter and given a 64 px border (frame 2)
CAMERAMAN = (64, 80, 84, 150)
CAMERAMAN_FACE = (104, 80, 25, 34)  # ~25 px and in profile: the frontal cascade misses it


def _cameraman_small() -> np.ndarray:
    img = cv2.resize(data.camera(), None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    return cv2.copyMakeBorder(img, 64, 64, 64, 64, cv2.BORDER_REPLICATE)


def _encode(ext: str, pixels: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, pixels)
    assert ok
    return buf.tobytes()


def iou(a, b) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


@pytest.fixture(scope="module")
def frames(spark):
    """dettest.frames in the frames job's layout: 4 frames of one video, the last corrupt."""
    rows = [(1, _encode(".png", data.astronaut()[..., ::-1])), (2, _encode(".png", _cameraman_small())),
            (3, _encode(".jpg", data.coffee()[..., ::-1])), (4, CORRUPT)]
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {DB}")
    df = spark.createDataFrame([(VIDEO, f"/videos/{VIDEO}", n, 40.0 * (n - 1), 0, 0, "png", c, "") for n, c in rows],
                               "video string, path string, frame int, timestamp_ms double, width int, height int, "
                               "format string, content binary, sha256 string")
    df.write.mode("overwrite").saveAsTable(f"{DB}.frames")
    return {n: c for n, c in rows}


def reference(model: str, contents: dict) -> list[tuple]:
    """A single-process OpenCV loop over the same bytes with OpenCV's defaults: (frame, left,
    width, top, height, score) sorted; score = logistic of the margin, written out here."""
    out = []
    for frame, content in sorted(contents.items()):
        img = cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            continue
        if model == "opencv:hog-people":
            hog = cv2.HOGDescriptor()
            hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
            boxes, weights = hog.detectMultiScale(img)
            margins = list(np.ravel(weights))
        else:
            path = cv2.data.haarcascades + model.split(":")[1] + ".xml"
            last = float(ET.parse(path).getroot().find("cascade/stages")[-1].find("stageThreshold").text)
            boxes, _, weights = cv2.CascadeClassifier(path).detectMultiScale3(
                cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), outputRejectLevels=True)
            margins = [w - last for w in np.ravel(weights)]
        for (x, y, w, h), m in zip(np.reshape(boxes, (-1, 4)).tolist(), margins):
            out.append((frame, x, w, y, h, 1.0 / (1.0 + math.exp(-m))))
    return sorted(out)


def _rows(spark, table: str) -> list[tuple]:
    return sorted(tuple(r) for r in spark.table(table).select("frame", "left", "width", "top", "height",
                                                              "score").collect())


@pytest.fixture(scope="module")
def faces(spark, frames):
    cfg = DetectConfig(model="opencv:haarcascade_frontalface_default", frames=f"{DB}.frames",
                       out_table=f"{DB}.faces", batch_size=2)
    return run_detect(spark, cfg, progress=lambda m: None)


def test_haar_finds_the_astronauts_face_and_equals_plain_opencv(spark, frames, faces):
    rows = spark.table(f"{DB}.faces").collect()
    assert [r.label for r in rows] == ["face"] and rows[0].frame == 1 and rows[0].video == VIDEO
    assert iou((rows[0].left, rows[0].top, rows[0].width, rows[0].height), ASTRONAUT_FACE) > 0.7
    assert rows[0].video_frame == "photos_1" and rows[0].model == "opencv:haarcascade_frontalface_default"
    assert rows[0].run_id == faces["run_id"] and 0.5 < rows[0].score < 1
    assert _rows(spark, f"{DB}.faces") == reference("opencv:haarcascade_frontalface_default", frames)
    assert spark.table(f"{DB}.faces").columns == ["video_frame", "video", "frame", "label", "score", "left",
                                                  "width", "top", "height", "model", "run_id"]
    # every frame counted: 3 scored (one with a face), 1 quarantined
    assert {k: faces[k] for k in ("frames", "frames_scored", "frames_with_detections", "detections", "quarantined",
                                  "quarantined_by_reason")} == {
        "frames": 4, "frames_scored": 3, "frames_with_detections": 1, "detections": 1, "quarantined": 1,
        "quarantined_by_reason": {"cannot decode": 1}}
    assert faces["out_table"] == f"{DB}.faces" and faces["frames_per_s"] > 0
    assert [tuple(r) for r in spark.table(f"{DB}.faces_quarantine").select("video", "frame", "reason").collect()] \
        == [(VIDEO, 4, "cannot decode")]


def test_hog_finds_the_cameraman_and_equals_plain_opencv(spark, frames):
    cfg = DetectConfig(model="opencv:hog-people", frames=f"{DB}.frames", out_table=f"{DB}.people")
    summary = run_detect(spark, cfg, progress=lambda m: None)
    got = _rows(spark, f"{DB}.people")
    assert got == reference("opencv:hog-people", frames)
    person = [r for r in got if r[0] == 2]
    assert len(person) == 1 and iou((person[0][1], person[0][3], person[0][2], person[0][4]), CAMERAMAN) > 0.5
    assert {r.label for r in spark.table(f"{DB}.people").collect()} == {"person"}
    assert summary["frames_scored"] == 3 and summary["detections"] == len(got)
    # --score-min applies to the score written, inside the tasks' per-frame function (no Spark)
    spec = resolve_model("opencv:hog-people")
    bar = max(r[5] for r in got)
    rows = [r for n, c in frames.items() for r in frame_rows(build_detector(spec), spec, DetectParams(score_min=bar),
                                                             VIDEO, n, c) if r[0] == DETECTION]
    assert [(r[2], r[6], r[7], r[8], r[9], r[4]) for r in rows] == [r for r in got if r[5] >= bar]


def test_detections_feed_detection_metrics(spark, faces):
    """The astronaut's face is found (TP); the cameraman's small profile face is missed (FN)."""
    gt = spark.createDataFrame([(VIDEO, 1, "face", *ASTRONAUT_FACE), (VIDEO, 2, "face", *CAMERAMAN_FACE)],
                               "video string, frame int, label string, left int, top int, width int, height int")
    gt.write.mode("overwrite").saveAsTable(f"{DB}.face_gt")
    cfg = DetectionConfig(gt=f"{DB}.face_gt", pred=f"{DB}.faces", out_db="dettest_metrics", max_plots=0,
                          conf_thr=0.5)
    summary = run_detection_metrics(spark, cfg, progress=lambda m: None)
    assert {k: summary["overall"][k] for k in ("tp", "fp", "fn")} == {"tp": 1, "fp": 0, "fn": 1}
    assert summary["rows_quarantined"] == 0


def test_bad_arguments_fail_before_scoring(spark, tmp_path):
    with pytest.raises(MljobsError, match="unknown OpenCV model 'opencv:haarcascade_nope'; valid: opencv:hog-people"):
        DetectConfig(model="opencv:haarcascade_nope", frames="a.b", out_table="a.c")
    with pytest.raises(MljobsError, match="not a model directory \\(no metadata.json\\)"):
        DetectConfig(model=str(tmp_path), frames="a.b", out_table="a.c")
    with pytest.raises(MljobsError, match="--score-min must be a number"):
        DetectConfig(model="opencv:hog-people", frames="a.b", out_table="a.c", score_min="high")
    with pytest.raises(MljobsError, match="would overwrite the frames table"):
        DetectConfig(model="opencv:hog-people", frames="a.b", out_table="a.b")
    with pytest.raises(InputError, match="frames table dettest.nothing does not exist"):
        run_detect(spark, DetectConfig(model="opencv:hog-people", frames=f"{DB}.nothing", out_table=f"{DB}.x"))
    spark.createDataFrame([("a", 1)], "video string, frame int").write.mode("overwrite").saveAsTable(f"{DB}.nocontent")
    with pytest.raises(InputError, match="not a frames table: it needs video, frame, content"):
        read_frames(spark, f"{DB}.nocontent")
    # one CLI run: the entry point turns a bad flag into the failed summary, exit 2, before Spark
    res = run_cli(["./spark-submit.sh", "detect", "--model", "opencv:hog-people", "--frames", "a.b",
                   "--out-table", "a.c", "--score-min", "high"])
    assert res.returncode == 2 and "not a number" in last_json(res.stdout)["error"], res.stdout + res.stderr
