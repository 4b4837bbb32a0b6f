"""Stratified k-fold assignment in Spark: exact, deterministic given the seed, scalable.

Each row gets a 64-bit hash of its content and the seed. Rows of one class are spread
over 1024 buckets by that hash; within a bucket they are numbered in hash order, and a
bucket's numbering continues where the previous bucket of the class stopped (offsets
from a small count table). The fold is that running number mod k, so every fold holds
the same number of rows of each class, give or take one, whatever the table's
partitioning or row order: the same table and seed always give the same folds.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

FOLD_COL = "_fold"
KEY_COL = "_rowkey"
KEY2_COL = "_rowkey2"
BUCKETS = 1024


def assign_folds(df: DataFrame, label: str, k: int, seed: int, content_cols: list[str]) -> tuple[DataFrame, dict]:
    """(df with `_fold` in [0, k) and the row keys `_rowkey`, `_rowkey2`; rows per class)."""
    keyed = with_row_keys(df, seed, content_cols)
    counts = keyed.groupBy(F.col(f"`{label}`").alias("_cls"), "_bucket").count().collect()
    offsets, running = bucket_offsets([(r["_cls"], r["_bucket"], r["count"]) for r in counts])
    label_type = df.schema[label].dataType.simpleString()
    off_df = df.sparkSession.createDataFrame(offsets, f"_cls {label_type}, _obucket bigint, _offset bigint")
    return with_folds(keyed, off_df, label, k), running


def with_row_keys(df: DataFrame, seed: int, content_cols: list[str]) -> DataFrame:
    """Adds the row keys (64- and 32-bit hashes of the content and the seed) and the row's bucket."""
    cols = [F.col(f"`{c}`") for c in content_cols]
    return (df.withColumn(KEY_COL, F.xxhash64(F.lit(int(seed)), *cols))
              .withColumn(KEY2_COL, F.hash(F.lit(int(seed)), *cols))
              .withColumn("_bucket", F.pmod(F.col(KEY_COL), F.lit(BUCKETS))))


def bucket_offsets(counts: list[tuple]) -> tuple[list[tuple], dict]:
    """From (class, bucket, rows): (class, bucket, rows of the class in earlier buckets), and rows per class."""
    offsets, running = [], {}
    for cls, bucket, n in sorted(counts, key=lambda c: (c[0], c[1])):
        start = running.get(cls, 0)
        offsets.append((cls, bucket, start))
        running[cls] = start + n
    return offsets, running


def with_folds(keyed: DataFrame, offsets: DataFrame, label: str, k: int) -> DataFrame:
    """Adds `_fold`: the row's running number within its class (bucket offset + rank in the
    bucket by row key) mod k; drops the bucket columns."""
    w = Window.partitionBy(F.col(f"`{label}`"), "_bucket").orderBy(KEY_COL, KEY2_COL)
    numbered = keyed.withColumn("_rn", F.row_number().over(w))
    joined = numbered.join(F.broadcast(offsets),
                           (F.col(f"`{label}`") == F.col("_cls")) & (F.col("_bucket") == F.col("_obucket")))
    return (joined.withColumn(FOLD_COL, ((F.col("_offset") + F.col("_rn") - 1) % F.lit(int(k))).cast("int"))
                  .drop("_cls", "_bucket", "_obucket", "_offset", "_rn"))
