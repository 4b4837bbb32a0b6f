"""The Spark side of training: read and check the ingest-images table, hold out a validation
slice of train (mljobs.splits: stratified, by content, deterministic), and stage the training
rows as Parquet that the torch processes read without Spark."""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mljobs import splits
from mljobs.errors import InputError
from mljobs.tables import read_table

NEEDED = ("label", "split", "content", "sha256")


@dataclass
class ImageData:
    labels: list[str]
    counts: dict[str, dict[str, int]]   # label -> train / val / test images
    test: DataFrame                     # the test split, labels known to training
    unseen_test: int                    # test images whose label has no training image


def read_images(spark: SparkSession, table: str) -> DataFrame:
    df = read_table(spark, table)
    missing = [c for c in NEEDED if c not in df.columns]
    if missing:
        raise InputError(f"{table} lacks {missing}: train-classifier reads an ingest-images table "
                         "(./spark-submit.sh ingest-images --input DIR --table ...)")
    return df


def with_val(train: DataFrame, fraction: float, seed: int) -> DataFrame:
    """The training rows with ``part``: 'val' for the held-out slice, else 'train'."""
    base = train.select("sha256", "label", F.lit(None).cast("string").alias(splits.GIVEN))
    parts = splits.assign(base, fraction, seed).select(
        "sha256", F.when(F.col("split") == "test", "val").otherwise("train").alias("part"))
    return train.join(parts, "sha256")


def label_index(labels: list[str]):
    """label -> its position in ``labels`` (NULL for another), as a SQL expression."""
    codes = F.create_map(*[x for i, v in enumerate(labels) for x in (F.lit(v), F.lit(i))])
    return codes[F.col("label")]


def load(spark: SparkSession, table: str, val_fraction: float, seed: int, staging: str) -> ImageData:
    """Stage (content, y, part, sha256) of the training rows under ``staging``."""
    df = read_images(spark, table)
    train = df.where(F.col("split") == "train")
    labels = sorted(r["label"] for r in train.select("label").distinct().collect())
    if len(labels) < 2:
        raise InputError(f"{table}: {len(labels)} label(s) in its train split; a classifier needs at least 2")
    rows = with_val(train, float(val_fraction), int(seed))
    rows.select("content", label_index(labels).alias("y"), "part", "sha256").write.parquet(staging)
    counts: dict[str, dict[str, int]] = {lab: {"train": 0, "val": 0, "test": 0} for lab in labels}
    for r in spark.read.parquet(staging).groupBy("y", "part").count().collect():
        counts[labels[r["y"]]][r["part"]] = r["count"]
    test = df.where(F.col("split") == "test")
    known = test.where(F.col("label").isin(labels))
    for r in known.groupBy("label").count().collect():
        counts[r["label"]]["test"] = r["count"]
    return ImageData(labels, counts, known, test.count() - sum(c["test"] for c in counts.values()))
