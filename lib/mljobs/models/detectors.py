"""Object detectors that score encoded frames in Spark tasks (the detect job): OpenCV's HOG
people detector and its Haar cascades; a torch detector of train-detector (a model directory)
is resolved here and scored by ``mljobs.models.torchdet``.

``resolve_model`` turns ``--model`` into a ``DetectorSpec`` before Spark starts; inside the
Python workers ``detect_fn`` decodes each frame's bytes, runs the detector built once per
worker (``mljobs.modelcache``) and yields detection rows, one marker row per frame scored
and one row per frame that cannot be decoded. This module imports nothing from mljobs but
the model cache, so both are shipped to the workers by value (``modelcache.ship_by_value``).

Scores. Both detectors give a margin, not a probability:

- HOG: the linear SVM's decision value of the window (``detectMultiScale``'s weights); the
  detector keeps windows with a margin >= 0 (its ``hitThreshold``).
- Haar: the sum of the last boosted stage's weak classifiers (``detectMultiScale3``'s
  levelWeights, ``outputRejectLevels=True``) minus that stage's threshold: how far past the
  cascade's final test the window got (>= 0 for every window the cascade accepts).

``score`` is the logistic of the margin, ``1 / (1 + exp(-margin))``: in [0, 1] as
detection-metrics requires, ordered exactly as the margins, 0.5 at the detector's own
threshold. It is not calibrated: 0.9 does not mean 90 % of such boxes are right.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from mljobs import modelcache

PREFIX = "opencv:"
HOG_PEOPLE = "hog-people"
TORCH = "torch"  # a model directory of train-detector (mljobs.models.torchdet)
HAAR = "haarcascade_"
# the label written for each cascade's object (by the part of the name after haarcascade_)
HAAR_LABELS = (("frontalcatface", "cat_face"), ("frontalface", "face"), ("profileface", "face"),
               ("eye", "eye"), ("lefteye", "eye"), ("righteye", "eye"), ("fullbody", "person"),
               ("upperbody", "upper_body"), ("lowerbody", "lower_body"), ("smile", "smile"),
               ("russian_plate", "license_plate"), ("license_plate", "license_plate"))
# HOG's and the cascades' own defaults (OpenCV's), used when --scale-factor / --min-neighbors are not given
DEFAULTS = {"hog": {"scale_factor": 1.05, "min_neighbors": 2}, "haar": {"scale_factor": 1.1, "min_neighbors": 3}}
# rows of detect_fn: one per detection, one per frame scored, one per frame not decoded
DETECTION, FRAME, BAD = 1, 0, 2
OUT_SCHEMA = ("row tinyint, video string, frame int, label string, score double, margin double, "
              "left int, width int, top int, height int, detections int, reason string")
OUT_COLUMNS = [f.strip().split(" ")[0] for f in OUT_SCHEMA.split(",")]
NO_CONTENT, CANNOT_DECODE = "no content", "cannot decode"


class ModelError(ValueError):
    """--model names no detector this module can build (the message lists the valid ones)."""


@dataclass(frozen=True)
class DetectorSpec:
    """What to build in the workers: ``kind`` "hog", "haar" or "torch", the model name, the
    label of its boxes, the cascade file (haar; torch: the model directory) and the cascade's
    last stage's threshold."""

    kind: str
    name: str
    label: str
    path: str | None = None
    stage_threshold: float = 0.0


@dataclass(frozen=True)
class DetectParams:
    """How to run the detector: None = the detector's OpenCV default (``DEFAULTS``)."""

    scale_factor: float | None = None
    min_neighbors: int | None = None
    min_size: int = 0
    score_min: float = 0.0
    threads: int = 1


def haar_names() -> list[str]:
    """The cascades the installed OpenCV ships (``cv2.data.haarcascades``), as model names."""
    import cv2

    folder = cv2.data.haarcascades
    return sorted(PREFIX + f[:-4] for f in os.listdir(folder) if f.startswith(HAAR) and f.endswith(".xml"))


def valid_models() -> list[str]:
    return [PREFIX + HOG_PEOPLE, *haar_names()]


def haar_label(name: str) -> str:
    """'haarcascade_frontalface_alt2' -> 'face'; a cascade not in HAAR_LABELS: its own name."""
    obj = name[len(HAAR):]
    return next((label for prefix, label in HAAR_LABELS if obj.startswith(prefix)), obj)


def last_stage_threshold(path: str) -> float:
    """The threshold of a cascade's last stage (either XML layout OpenCV reads)."""
    import xml.etree.ElementTree as ET

    found = [e.text for e in ET.parse(path).getroot().iter() if e.tag in ("stageThreshold", "stage_threshold")]
    return float(found[-1]) if found else 0.0


def resolve_model(model: str) -> DetectorSpec:
    """``--model`` as a DetectorSpec (kind "torch" for a model directory of train-detector,
    its label filled in when the job reads it); ModelError for an unknown name or a directory
    without metadata.json. No Spark: runs when the config is validated."""
    text = str(model or "").strip()
    if not text.startswith(PREFIX):
        if "://" in text:
            return DetectorSpec(TORCH, text, "", text)  # read (and checked) when the job starts
        if text and (os.path.isdir(text) or "/" in text):
            if not os.path.isfile(os.path.join(text.removeprefix("file://"), "metadata.json")):
                raise ModelError(f"--model {text}: not a model directory (no metadata.json); train-detector "
                                 f"writes one, or use an opencv: model ({', '.join(valid_models())})")
            return DetectorSpec(TORCH, text, "", text)
        raise ModelError(f"unknown --model {text!r}; valid: a train-detector model directory or "
                         f"{', '.join(valid_models())}")
    name = text[len(PREFIX):]
    if name == HOG_PEOPLE:
        return DetectorSpec("hog", text, "person")
    if text not in haar_names():
        raise ModelError(f"unknown OpenCV model {text!r}; valid: {', '.join(valid_models())}")
    import cv2

    path = os.path.join(cv2.data.haarcascades, name + ".xml")
    return DetectorSpec("haar", text, haar_label(name), path, last_stage_threshold(path))


def build_detector(spec: DetectorSpec, threads: int = 1):
    """The OpenCV detector of ``spec``, once per process (the per-worker model cache)."""
    def load():
        import cv2

        cv2.setNumThreads(threads)
        if spec.kind == "hog":
            hog = cv2.HOGDescriptor()
            hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
            return hog
        cascade = cv2.CascadeClassifier(spec.path)
        if cascade.empty():
            raise RuntimeError(f"OpenCV cannot load the cascade {spec.path}")
        return cascade

    return modelcache.get(("opencv", spec.name, spec.path, threads), load)


def decode(content) -> np.ndarray | None:
    """An encoded image (JPEG, PNG, ... any format OpenCV reads) as BGR pixels; None if not."""
    import cv2

    if content is None or len(content) == 0:
        return None
    return cv2.imdecode(np.frombuffer(content, dtype=np.uint8), cv2.IMREAD_COLOR)


def score_of(margin: float) -> float:
    """The logistic of the margin (see the module's docstring)."""
    return 1.0 / (1.0 + math.exp(-margin)) if margin >= 0 else math.exp(margin) / (1.0 + math.exp(margin))


def detect_image(detector, spec: DetectorSpec, bgr: np.ndarray, p: DetectParams) -> list[tuple]:
    """(left, top, width, height, margin) of each box the detector finds in one BGR image,
    boxes smaller than ``p.min_size`` in width or height left out."""
    import cv2

    d = DEFAULTS[spec.kind]
    scale = p.scale_factor or d["scale_factor"]
    neighbors = d["min_neighbors"] if p.min_neighbors is None else p.min_neighbors
    if spec.kind == "hog":
        boxes, weights = detector.detectMultiScale(bgr, scale=scale, groupThreshold=neighbors)
        margins = np.ravel(weights)
    else:
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        size = (p.min_size, p.min_size)
        boxes, _levels, weights = detector.detectMultiScale3(
            gray, scaleFactor=scale, minNeighbors=neighbors, minSize=size, outputRejectLevels=True)
        margins = np.ravel(weights) - spec.stage_threshold
    out = []
    for (x, y, w, h), m in zip(np.reshape(boxes, (-1, 4)).tolist(), margins.tolist()):
        if w >= p.min_size and h >= p.min_size:
            out.append((int(x), int(y), int(w), int(h), float(m)))
    return out


def frame_rows(detector, spec: DetectorSpec, p: DetectParams, video, frame, content) -> list[tuple]:
    """The ``OUT_COLUMNS`` rows of one frame: its detections with score >= ``p.score_min``
    and the frame's marker row (or one BAD row when its bytes cannot be decoded)."""
    bgr = decode(content)
    if bgr is None:
        reason = NO_CONTENT if content is None or len(content) == 0 else CANNOT_DECODE
        return [(BAD, video, frame, None, None, None, None, None, None, None, None, reason)]
    rows = []
    for x, y, w, h, m in detect_image(detector, spec, bgr, p):
        s = score_of(m)
        if s >= p.score_min:
            rows.append((DETECTION, video, frame, spec.label, s, m, x, w, y, h, None, None))
    rows.append((FRAME, video, frame, None, None, None, None, None, None, None, len(rows), None))
    return rows


def detect_fn(spec: DetectorSpec, params: DetectParams):
    """mapInArrow function: (video, frame, content) batches in, ``OUT_SCHEMA`` batches out;
    the detector is built once per Python worker."""
    def fn(batches):
        import pyarrow as pa

        detector = build_detector(spec, params.threads)
        for batch in batches:
            cols = batch.to_pydict()
            rows = []
            for video, frame, content in zip(cols["video"], cols["frame"], cols["content"]):
                rows.extend(frame_rows(detector, spec, params, video, frame, content))
            yield pa.RecordBatch.from_pylist([dict(zip(OUT_COLUMNS, r)) for r in rows], schema=arrow_schema())

    return fn


def arrow_schema():
    import pyarrow as pa

    types = {"tinyint": pa.int8(), "string": pa.string(), "int": pa.int32(), "double": pa.float64()}
    return pa.schema([(f.split()[0], types[f.split()[1]]) for f in OUT_SCHEMA.split(", ")])
