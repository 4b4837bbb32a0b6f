"""COCO JSON inputs: an instances file (``images``, ``annotations`` with ``bbox``, ``area``,
``iscrowd``, ``categories``) as ground truth and a results file (a list of ``{image_id,
category_id, bbox, score}``) as detections, read by Spark (local or s3).

Both are read with Spark's JSON reader in multi-line mode, every scalar as a string (so a
wrong type is a quarantined row, not a failed read) and only the fields the evaluation
uses (``segmentation`` is skipped by the parser, never materialised):

* results: the top-level list yields one row per element, in file order (one file is one
  partition, so the row id follows the element order: equal scores keep it);
* instances: the file is one record; ``annotations`` is exploded with its position. The
  limit: that record (the annotations' ids, boxes, areas and flags, about 100 bytes a box
  without the segmentation) must fit in one executor task's memory and in Spark's 2 GB
  row limit — about 10 million boxes. The driver only collects the categories.

Images become frames of one video, ``coco`` (frame = image id), so COCO's sorted image ids
are the job's sorted (video, frame); categories become classes by name (by id where a
name is missing or repeated). Malformed elements get a reason (missing or unknown
image_id / category_id, a bbox that is not four numbers) and are quarantined by the job.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from mljobs import fs
from mljobs.detection_metrics.boxes import Layout
from mljobs.errors import InputError
from mljobs.readers import RAW, REASON
from mljobs.session import env_of
from mljobs.uris import normalize_path

VIDEO = "coco"
INSTANCES_SCHEMA = (
    "images array<struct<id:string>>, "
    "annotations array<struct<id:string,image_id:string,category_id:string,bbox:string,area:string,iscrowd:string>>, "
    "categories array<struct<id:string,name:string>>"
)
RESULTS_SCHEMA = "image_id string, category_id string, bbox string, score string, _corrupt_record string"
GT_LAYOUT = Layout("gt", "coco", ("left", "top", "width", "height"), "xywh")
PRED_LAYOUT = Layout("pred", "detections", ("left", "top", "width", "height"), "xywh")
_RAW_CHARS = 2000


def is_coco_json(source: str) -> bool:
    return str(source).lower().rstrip("/").endswith(".json")


class Instances:
    """A COCO instances file read by Spark: the image ids and the category names as small
    DataFrames (for the results file), and the annotations as ground-truth rows."""

    def __init__(self, spark: SparkSession, path: str):
        self.spark = spark
        self.path = _resolve(spark, path, "ground truth (--gt)")
        self.raw = spark.read.schema(INSTANCES_SCHEMA).option("multiLine", True).json(self.path)
        head = self.raw.select(F.size("images").alias("n_images"), F.size("annotations").alias("n_anns"),
                               "categories").limit(2).collect()
        if len(head) != 1 or head[0]["categories"] is None or head[0]["n_images"] < 0 or head[0]["n_anns"] < 0:
            raise InputError(f"ground truth {path} is not a COCO instances file (a JSON object with images, "
                             "annotations and categories)")
        self.n_images = head[0]["n_images"]
        names = category_names([(c["id"], c["name"]) for c in head[0]["categories"]])
        if not names:
            raise InputError(f"ground truth {path} has no categories")
        self.categories = names  # category id (as an integer string) -> class name
        self.images = self.raw.select(F.explode("images").alias("i")).select(
            _int_col(F.col("i.id")).alias("_image")).where(F.col("_image").isNotNull()).distinct()
        self.cats = spark.createDataFrame(list(names.items()), "_cat string, label string")

    def ground_truth(self) -> DataFrame:
        """The annotations as raw ground-truth rows (``GT_LAYOUT``), in file order."""
        ann = self.raw.select(F.posexplode("annotations").alias("_pos", "a"))
        a = F.col("a")
        rows = ann.select(
            "_pos", _int_col(a["image_id"]).alias("_image"), _int_col(a["category_id"]).alias("_cat"),
            a["bbox"].alias("bbox"), a["area"].alias("area"), a["iscrowd"].alias("iscrowd"),
            a["image_id"].alias("_image_raw"), a["category_id"].alias("_cat_raw"), a["id"].alias("id"),
            F.to_json(a).alias("_json"),
        )
        return _finish(rows, self, "annotation")

    def results(self, path: str) -> DataFrame:
        """A COCO results file as raw detection rows (``PRED_LAYOUT``), in file order."""
        full = _resolve(self.spark, path, "detections (--pred)")
        raw = self.spark.read.schema(RESULTS_SCHEMA).option("multiLine", True).json(full)
        rows = raw.select(
            F.monotonically_increasing_id().alias("_pos"),
            _int_col(F.col("image_id")).alias("_image"), _int_col(F.col("category_id")).alias("_cat"),
            "bbox", "score", F.col("image_id").alias("_image_raw"), F.col("category_id").alias("_cat_raw"),
            F.coalesce(F.col("_corrupt_record"),
                       F.to_json(F.struct("image_id", "category_id", "bbox", "score"))).alias("_json"),
            F.col("_corrupt_record").alias("_corrupt"),
        )
        return _finish(rows, self, "result")


def category_names(categories: list[tuple]) -> dict[str, str]:
    """(id, name) pairs (as read: strings) -> {id as an integer string: class name}; a
    category whose name is missing or repeated is named by its id."""
    raw_names = [(str(cid).strip(), name) for cid, name in categories if cid is not None]
    counts: dict[str, int] = {}
    for _, name in raw_names:
        counts[name] = counts.get(name, 0) + 1
    return {_int_text(cid): name if name and counts[name] == 1 else f"category {_int_text(cid)}"
            for cid, name in raw_names}


def _finish(rows: DataFrame, inst: Instances, what: str) -> DataFrame:
    """Join the image ids and category names (broadcast), parse the bbox, give reasons."""
    known = inst.images.withColumn("_known", F.lit(True))
    # broadcast joins stream ``rows`` in order: the file order survives
    joined = rows.join(F.broadcast(known), "_image", "left").join(F.broadcast(inst.cats), "_cat", "left")
    box = F.from_json(F.col("bbox"), "array<double>")
    corrupt = F.col("_corrupt").isNotNull() if "_corrupt" in rows.columns else F.lit(False)
    reason = F.coalesce(
        F.when(corrupt, F.lit(f"unparseable {what} (not a JSON object)")),
        F.when(F.col("_image_raw").isNull(), F.lit("missing image_id")),
        F.when(F.col("_image").isNull(), F.lit("non-integer image_id")),
        F.when(F.col("_known").isNull(), F.lit("unknown image_id (not in the instances file's images)")),
        F.when(F.col("_cat_raw").isNull(), F.lit("missing category_id")),
        F.when(F.col("label").isNull(), F.lit("unknown category_id (not in the instances file's categories)")),
        F.when(F.col("bbox").isNull(), F.lit("missing bbox")),
        F.when(box.isNull() | (F.size(box) != 4), F.lit("bbox is not a list of four numbers")),
    )
    extra = ["area", "iscrowd"] if "area" in rows.columns else ["score"]
    return joined.select(
        F.lit(VIDEO).alias("video"), F.col("_image").cast("string").alias("frame"), "label",
        *[box.getItem(i).alias(n) for i, n in enumerate(("left", "top", "width", "height"))],
        *extra, "_pos",
        reason.alias(REASON),
        F.when(reason.isNotNull(), F.substring(F.col("_json"), 1, _RAW_CHARS)).alias(RAW),
    )


def _int_col(c: Column) -> Column:
    """An id as a canonical integer string ("12", 12.0 -> "12"); NULL when not an integer."""
    d = F.trim(c).cast("double")
    return F.when(d.isNotNull() & (d == F.floor(d)) & (F.abs(d) < 9e15), d.cast("long").cast("string"))


def _int_text(text: str) -> str:
    try:
        d = float(text)
        return str(int(d)) if d == int(d) else text
    except (TypeError, ValueError):
        return text


def _resolve(spark: SparkSession, path: str, what: str) -> str:
    full = normalize_path(path, env_of(spark))
    if not fs.exists(spark, full):
        raise InputError(f"{what} {path} does not exist")
    return full


__all__ = ["GT_LAYOUT", "Instances", "category_names", "PRED_LAYOUT", "VIDEO", "is_coco_json"]
