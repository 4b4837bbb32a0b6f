"""Ground-truth and detection inputs: layouts, normalisation and bad-input checks (SQL only).

Inputs are Hive tables or CSV/Parquet paths (files, directories, globs; local or s3).
Column names are matched case-insensitively.

Ground truth, two NFL Impact Detection layouts:

* ``train_labels.csv`` — gameKey, playID, view, video, frame, label, left, width, top,
  height, impact, impactType, confidence, visibility. ``label`` names the player (H12,
  V87), not a class: this layout is single-class ("helmet") and detections' classes
  are ignored. impact, confidence and visibility feed the NFL impact metric.
* ``image_labels.csv`` — image, label, left, width, top, height; ``label`` is the class
  (Helmet, Helmet-Blurred, ...). Video and frame come from the image name
  ``<video>_frame<N>.<ext>`` when it has that form, else video = image, frame 0.

Detections: video (or image), frame, optional label/class/category, score (or conf /
confidence), and the box as left/top/width/height or x1/y1/x2/y2 (xmin/ymin/xmax/ymax).

Every row gets a ``_reason``: NULL for a valid row, else why it is quarantined
(unparseable line, missing video, non-integer frame, missing/NaN/infinite coordinate,
width or height <= 0, missing score, score outside [0, 1], duplicate row). Missing
columns are an ``InputError`` before any Spark job runs.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from mljobs.errors import InputError
from mljobs.readers import RAW, REASON, safe_cast
from mljobs.sqljson import json_object

HELMET = "helmet"
_IMAGE_NAME = r"^(.+)_frame(\d+)\.[A-Za-z0-9]+$"
_BOX_SETS = (("left", "top", "width", "height"), ("x1", "y1", "x2", "y2"), ("xmin", "ymin", "xmax", "ymax"))
_SCORE_NAMES = ("score", "conf", "confidence")
_CLASS_NAMES = ("label", "class", "category")

# The normalised columns every later step uses (ground truth and detections alike).
NORMALIZED = ["video", "frame", "cls", "kind", "label", "left", "top", "width", "height", "score",
              "impact", "confidence", "visibility", "area", "iscrowd", "_rid", "_reason", "_raw"]
POSITION = "_pos"  # a reader's explicit input position (COCO JSON); else the scan order


@dataclass(frozen=True)
class Layout:
    """What was recognised in an input's columns."""

    role: str            # "gt" or "pred"
    kind: str            # "train_labels", "image_labels" or "detections"
    box: tuple[str, ...]  # the four actual box column names
    box_style: str       # "xywh" or "xyxy"

    @property
    def single_class(self) -> bool:
        return self.kind == "train_labels"


def detect_layout(columns: list[str], role: str, what: str) -> Layout:
    """Recognise the layout from the column names; InputError naming what is missing."""
    have = {c.lower() for c in columns if c not in (REASON, RAW)}
    shown = ", ".join(c for c in columns if c not in (REASON, RAW))
    box = next((s for s in _BOX_SETS if set(s) <= have), None)
    missing = []
    if box is None:
        missing.append("left, top, width, height (or x1, y1, x2, y2)")
    if "video" not in have and "image" not in have:
        missing.append("video (or image)")
    if "video" in have and "frame" not in have:
        missing.append("frame")
    if role == "pred" and not any(n in have for n in _SCORE_NAMES):
        missing.append("score")
    if role == "gt" and "video" not in have and "label" not in have:
        missing.append("label")
    if missing:
        raise InputError(f"{what} is missing required column(s): {'; '.join(missing)}. Columns found: {shown}")
    if role == "gt":
        kind = "train_labels" if "video" in have else "image_labels"
    else:
        kind = "detections"
    return Layout(role, kind, box, "xywh" if box[2] == "width" else "xyxy")


def normalize(spark: SparkSession, raw: DataFrame, layout: Layout, merge_labels: bool = False,
              single_class: bool = False) -> DataFrame:
    """The ``NORMALIZED`` columns with ``_reason`` (NULL = valid). ``single_class``: all
    boxes are one class (the ground truth is in train_labels layout)."""
    cols = _Columns(raw.columns)
    label_name = next((n for n in _CLASS_NAMES if cols.find(n)), None)
    one_class = merge_labels or single_class or layout.single_class
    df = _typed_fields(spark, raw, layout, cols, label_name, one_class)
    reason = _reason(layout, check_label=not one_class and label_name is not None,
                     coco_fields=layout.role == "gt" and (cols.find("area") or cols.find("iscrowd")) is not None)
    return df.select(
        "video", F.col("_frame_d").cast("int").alias("frame"), "cls",
        F.lit(0 if layout.role == "gt" else 1).cast("tinyint").alias("kind"), "label",
        "left", "top", "width", "height", "score", "impact", "confidence", "visibility",
        "area", F.coalesce(F.col("_crowd_d"), F.lit(0.0)).cast("tinyint").alias("iscrowd"), "_rid",
        reason.alias("_reason"), _raw_text(raw, reason).alias("_raw"),
    )


def _typed_fields(spark: SparkSession, raw: DataFrame, layout: Layout, cols: "_Columns", label_name: str | None,
                  one_class: bool) -> DataFrame:
    """The input's fields as typed columns (``_frame_d`` the frame as a double, ``_b0``..``_b3``
    the box as read), the row id, the reader's ``_malformed``/``_line`` and the raw fields."""
    video, frame_raw = _video_and_frame(spark, cols)
    label = F.col(f"`{cols.get(label_name)}`").cast("string") if label_name else F.lit(None).cast("string")
    cls = F.lit(HELMET) if one_class or label_name is None else F.trim(label)
    b = [_num(spark, cols, c) for c in layout.box]
    left, top, width, height = _xywh(b, layout.box_style)
    if layout.role == "pred":
        score = _num(spark, cols, next(n for n in _SCORE_NAMES if cols.find(n)))
    else:
        score = F.lit(None).cast("double")
    raw_cols = [c for c in raw.columns if c not in (REASON, RAW)]
    return raw.select(
        video.alias("video"), frame_raw.alias("_frame_d"), cls.alias("cls"), label.alias("label"),
        left.alias("left"), top.alias("top"), width.alias("width"), height.alias("height"),
        *[x.alias(f"_b{i}") for i, x in enumerate(b)],
        score.alias("score"),
        *[_impact_field(spark, cols, layout, name).alias(name) for name in ("impact", "confidence", "visibility")],
        *_coco_fields(spark, cols, layout),
        (F.col(POSITION).cast("long") if POSITION in raw.columns else F.monotonically_increasing_id()).alias("_rid"),
        F.col(REASON).alias("_malformed"),
        F.col(RAW).alias("_line"),
        F.struct(*[F.col(f"`{c}`") for c in raw_cols]).alias("_fields"),
    )


def _num(spark: SparkSession, cols: "_Columns", name: str) -> Column:
    return safe_cast(spark, cols.get(name), "double")


def _impact_field(spark: SparkSession, cols: "_Columns", layout: Layout, name: str) -> Column:
    """impact / confidence / visibility: ground truth only, NULL where the column is absent."""
    if layout.role == "gt" and cols.find(name):
        return _num(spark, cols, name)
    return F.lit(None).cast("double")


def _coco_fields(spark: SparkSession, cols: "_Columns", layout: Layout) -> list[Column]:
    """Ground truth's optional COCO ``area`` (NULL = width x height) and ``iscrowd`` (NULL =
    0; true/false accepted), with their raw text for the checks. Detections: none (COCO
    gives a detection the area width x height and never a crowd flag)."""
    out = []
    for name, alias in (("area", "area"), ("iscrowd", "_crowd_d")):
        found = cols.find(name) if layout.role == "gt" else None
        if found is None:
            out += [F.lit(None).cast("double").alias(alias), F.lit(None).cast("string").alias(f"_{name}_raw")]
            continue
        text = F.trim(F.col(f"`{found}`").cast("string"))
        value = _num(spark, cols, name)
        if name == "iscrowd":
            low = F.lower(text)
            value = F.when(low == "true", 1.0).when(low == "false", 0.0).otherwise(value)
        out += [value.alias(alias), F.when(text != "", text).alias(f"_{name}_raw")]
    return out


def _video_and_frame(spark: SparkSession, cols: "_Columns") -> tuple[Column, Column]:
    """video and frame (as a double) from video/frame columns, else from the image name
    ``<video>_frame<N>.<ext>`` (other names: video = image, frame 0)."""
    if cols.find("video"):
        return F.trim(F.col(f"`{cols.get('video')}`").cast("string")), _num(spark, cols, "frame")
    image = F.trim(F.col(f"`{cols.get('image')}`").cast("string"))
    stem = F.regexp_extract(image, _IMAGE_NAME, 1)
    video = F.when(stem != "", stem).otherwise(image)
    frame = F.when(stem != "", F.regexp_extract(image, _IMAGE_NAME, 2).cast("double")).otherwise(F.lit(0.0))
    return video, frame


def _xywh(b: list[Column], box_style: str) -> tuple[Column, Column, Column, Column]:
    """left, top, width, height from the four box columns (xywh or xyxy)."""
    if box_style == "xywh":
        return b[0], b[1], b[2], b[3]
    return b[0], b[1], b[2] - b[0], b[3] - b[1]


def _reason(layout: Layout, check_label: bool, coco_fields: bool = False) -> Column:
    """Why a row of ``_typed_fields`` is rejected (the first failed check), NULL when valid."""
    fd = F.col("_frame_d")
    checks = [
        F.col("_malformed"),
        F.when(F.col("video").isNull() | (F.col("video") == ""), F.lit("missing video")),
        F.when(fd.isNull() | F.isnan(fd), F.lit("missing or non-numeric frame")),
        F.when((fd != F.floor(fd)) | (F.abs(fd) > 2_000_000_000), F.lit("non-integer frame")),
    ]
    for i, name in enumerate(layout.box):
        x = F.col(f"_b{i}")
        checks.append(F.when(x.isNull(), F.lit(f"missing or non-numeric {name}")))
        checks.append(F.when(F.isnan(x) | (F.abs(x) == float("inf")), F.lit(f"NaN or infinite {name}")))
    checks.append(F.when((F.col("width") <= 0) | (F.col("height") <= 0), F.lit("width or height <= 0")))
    if layout.role == "pred":
        s = F.col("score")
        checks.append(F.when(s.isNull() | F.isnan(s), F.lit("missing or NaN score")))
        checks.append(F.when((s < 0) | (s > 1), F.lit("score outside [0, 1]")))
    if check_label:
        checks.append(F.when(F.col("cls").isNull() | (F.col("cls") == ""), F.lit("missing label")))
    if coco_fields:
        area, crowd = F.col("area"), F.col("_crowd_d")
        checks.append(F.when(F.col("_area_raw").isNotNull() & area.isNull(), F.lit("non-numeric area")))
        checks.append(F.when(F.isnan(area) | (area < 0) | (F.abs(area) == float("inf")),
                             F.lit("NaN, infinite or negative area")))
        checks.append(F.when((F.col("_iscrowd_raw").isNotNull() & crowd.isNull()) | ~crowd.isin(0.0, 1.0),
                             F.lit("iscrowd is not 0 or 1")))
    return F.coalesce(*checks)


def _raw_text(raw: DataFrame, reason: Column) -> Column:
    """The raw line (or the row's fields as JSON) only for rejected rows: CASE is lazy,
    so valid rows never pay for the JSON."""
    raw_cols = [c for c in raw.columns if c not in (REASON, RAW)]
    raw_types = {f.name: f.dataType for f in raw.schema.fields}
    return F.when(reason.isNotNull(), F.coalesce(F.col("_line"), _fields_json(
        [(c, F.col("_fields").getField(c), raw_types[c]) for c in raw_cols], F.col("_fields"))))


DUPLICATE_KEYS = ["kind", "cls", "label", "left", "top", "width", "height", "score"]


def mark_duplicates(df: DataFrame) -> DataFrame:
    """Valid rows repeating an earlier row's video, frame, class, label, box and score:
    the first (in input order) stays, the others get the reason 'duplicate row' (and
    their normalised fields as JSON). Partitioned by video and frame first, so a frame
    partitioning done before is reused, and rows come out grouped by (video, frame)."""
    valid = F.col("_reason").isNull()
    w = Window.partitionBy("video", "frame", valid, *DUPLICATE_KEYS).orderBy("_rid")
    dup = valid & (F.row_number().over(w) > 1)
    types = {f.name: f.dataType for f in df.schema.fields}
    names = ["video", "frame", "label", "left", "top", "width", "height", "score"]
    fields = _fields_json([(c, F.col(c), types[c]) for c in names], F.struct(*names))
    return df.select(
        *[c for c in df.columns if c not in ("_reason", "_raw")],
        F.when(dup, F.lit("duplicate row")).otherwise(F.col("_reason")).alias("_reason"),
        F.when(dup, fields).otherwise(F.col("_raw")).alias("_raw"),
    )


def _fields_json(fields: list, struct: Column) -> Column:
    """The fields as a JSON object: plain string functions the RAPIDS Accelerator runs
    (``mljobs.sqljson``), or ``to_json`` for types those do not cover."""
    built = json_object(fields)
    return built if built is not None else F.to_json(struct)


class _Columns:
    """An input's column names, looked up case-insensitively (the first spelling wins)."""

    def __init__(self, columns: list[str]):
        self.columns = list(columns)
        self.lower: dict[str, str] = {}
        for c in self.columns:
            self.lower.setdefault(c.lower(), c)

    def find(self, name: str) -> str | None:
        return self.lower.get(name.lower())

    def get(self, name: str) -> str:
        found = self.find(name)
        if found is None:
            raise InputError(f"column {name!r} not found; columns: {', '.join(self.columns)}")
        return found


__all__ = ["HELMET", "Layout", "NORMALIZED", "detect_layout", "mark_duplicates", "normalize"]
