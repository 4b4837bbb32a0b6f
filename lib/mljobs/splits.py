"""A deterministic, stratified split by content: ingest-images' train/test split, train-classifier's
validation slice of train.

Per label, the distinct images (by sha256) are ordered by sha256(seed:sha256) and the first
``round(n * test_fraction)`` of them are ``test``. The order depends on the bytes alone, so the
split is the same however Spark partitions the data, and copies of one image (same sha256)
always share a split, even under different labels (they are ranked under the smallest label).
A split given for an image (a manifest's ``split``) is kept for every copy of it ("test" wins
when copies are given both) and those images are left out of the ranking."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

GIVEN = "_given_split"


def assign(images: DataFrame, test_fraction: float, seed: int) -> DataFrame:
    """(sha256, split): one row per distinct image of ``images`` (sha256, label, GIVEN)."""
    per = images.groupBy("sha256").agg(F.min("label").alias("_by"), F.min(GIVEN).alias(GIVEN))
    given = per.where(F.col(GIVEN).isNotNull()).select("sha256", F.col(GIVEN).alias("split"))
    open_ = per.where(F.col(GIVEN).isNull())
    order = F.sha2(F.concat_ws(":", F.lit(str(seed)), "sha256"), 256)
    ranked = (open_.withColumn("_rank", F.row_number().over(Window.partitionBy("_by").orderBy(order, "sha256")))
              .withColumn("_n", F.count(F.lit(1)).over(Window.partitionBy("_by"))))
    tests = F.floor(F.col("_n") * F.lit(float(test_fraction)) + F.lit(0.5))
    split = F.when(F.col("_rank") <= tests, F.lit("test")).otherwise(F.lit("train"))
    return given.unionByName(ranked.select("sha256", split.alias("split")))
