"""The ingest-images job: image files -> <db>.<table> (one row per usable image: label, split,
format, size, sha256, the encoded bytes) and <db>.<table>_quarantine (every file or manifest
line that could not be used, with the reason).

One pass decodes every file inside the tasks (OpenCV) and stages the result as Parquet; the
split, the counts and the checks read the staged rows; only then are both tables written and
swapped in together, so a failed run leaves the previous tables as they were."""
from __future__ import annotations

import datetime as dt
import time
import uuid

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mljobs import fs, imagefiles, tables
from mljobs.emr import EmrStep
from mljobs.errors import BadDataError, InputError
from mljobs.gpu import UNSUPPORTED_CLASS, Known
from mljobs import splits as split
from mljobs.ingest_images import labels
from mljobs.ingest_images.config import IngestImagesConfig
from mljobs.session import StageProgress, session_conf

IMAGE_COLUMNS = ("path", "label", "split", "format", "width", "height", "channels", "bytes", "sha256",
                 "duplicates", "content")
QUARANTINE_COLUMNS = ("path", "label", "reason", "detail", "bytes", "manifest_line")


def list_files(spark: SparkSession, cfg: IngestImagesConfig) -> tuple[str, DataFrame]:
    """(--input as Hadoop spells it, every file under it: path, bytes, content, file, rel; content
    read in the decoding pass where the tasks can read the files themselves)."""
    root, files = imagefiles.list_files(spark, cfg.input, lazy=True)
    return root, files.withColumn("_rel", labels.relative_path(root))


def labelled(spark: SparkSession, cfg: IngestImagesConfig, root: str, files: DataFrame) -> tuple[DataFrame, DataFrame | None]:
    """(files with label, given split and manifest line; the manifest's entries, or None)."""
    if cfg.labels == "folders":
        return files.select("*", labels.folder_label(F.col("_rel")).alias("label"),
                            F.lit(None).cast("string").alias(split.GIVEN),
                            F.lit(None).cast("int").alias("manifest_line")), None
    entries = labels.read_manifest(spark, cfg.manifest, root, cfg.label_attribute).cache()
    good = entries.where(F.col("error").isNull()).dropDuplicates(["rel", "label"])
    # The manifest goes to the files (broadcast), never the files' bytes through a shuffle.
    found = files.join(F.broadcast(good), files["_rel"] == good["rel"])
    lost = good.join(files.select("_rel"), good["rel"] == files["_rel"], "left_anti")
    listed = [F.col("label"), F.col("split").alias(split.GIVEN), F.col("line").alias("manifest_line")]
    none = {t: F.lit(None).cast(t) for t in ("long", "binary", "string")}
    rows = found.select("path", "bytes", "content", "file", *listed, none["string"].alias("_missing"))
    rows = rows.unionByName(lost.select(F.col("ref").alias("path"), none["long"].alias("bytes"),
                                        none["binary"].alias("content"), none["string"].alias("file"), *listed,
                                        F.lit(imagefiles.MISSING).alias("_missing")))
    bad_rows = entries.where(F.col("error").isNotNull()).select(
        F.col("ref").alias("path"), none["long"].alias("bytes"), none["binary"].alias("content"),
        none["string"].alias("file"), "label",
        none["string"].alias(split.GIVEN), F.col("line").alias("manifest_line"),
        F.lit(imagefiles.BAD_MANIFEST).alias("_missing"), F.col("error").alias("_error"))
    return rows.withColumn("_error", F.lit(None).cast("string")).unionByName(bad_rows), entries


def inspected(cfg: IngestImagesConfig, rows: DataFrame) -> DataFrame:
    """Each row decoded (once, in its task), with its reason to be quarantined (NULL: usable)."""
    if "_missing" not in rows.columns:
        rows = rows.select("*", F.lit(None).cast("string").alias("_missing"), F.lit(None).cast("string").alias("_error"))
    info = rows.select("*", imagefiles.inspect_udf(int(cfg.min_size))("content", "file").alias("_i"))
    reason = F.coalesce(F.col("_missing"),
                        F.when(F.col("label").isNull() | (F.col("label") == ""), F.lit(imagefiles.NO_LABEL)),
                        F.col("_i.reason"))
    detail = F.coalesce(F.col("_error"), F.when(F.col("_missing").isNotNull(), F.lit("listed in the manifest, no such "
                        "file under --input")), F.when(F.col("label").isNull(), F.lit("a file directly under --input: "
                        "put it in a folder named after its label")), F.col("_i.detail"))
    content = F.coalesce(F.col("content"), F.col("_i.content")).alias("content")
    return info.select("path", "label", split.GIVEN, "manifest_line", "bytes", content, "_i.format", "_i.width",
                       "_i.height", "_i.channels", "_i.sha256", reason.alias("reason"), detail.alias("detail"))


def counted(spark: SparkSession, cfg: IngestImagesConfig, staged: DataFrame) -> dict[str, int]:
    """Rows per reason ('' = usable); too many quarantined or none usable fail here."""
    by = {r["reason"] or "": r["count"] for r in staged.groupBy("reason").count().collect()}
    total = sum(by.values())
    if total == 0:
        raise InputError(f"no files under --input {cfg.input}")
    bad = total - by.get("", 0)
    if bad / total > float(cfg.max_bad_fraction):
        raise BadDataError(f"{bad:,} of {total:,} files quarantined ({bad / total:.1%}), over --max-bad-fraction "
                           f"{cfg.max_bad_fraction}: {_reasons(by)}; nothing was written")
    if not by.get(""):
        raise InputError(f"no usable image among {total:,} files ({_reasons(by)}); nothing was written")
    return by


def _reasons(by: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {r}" for r, n in sorted(by.items()) if r)


def images_table(cfg: IngestImagesConfig, staged: DataFrame) -> DataFrame:
    """The usable rows with their split and how many copies of their bytes the input holds."""
    usable = staged.where(F.col("reason").isNull())
    splits = split.assign(usable, float(cfg.test_fraction), int(cfg.split_seed))
    copies = usable.groupBy("sha256").agg(F.count(F.lit(1)).cast("int").alias("duplicates"))
    return usable.join(splits, "sha256").join(copies, "sha256").select(*IMAGE_COLUMNS)


def duplicate_report(images: DataFrame) -> dict[str, int]:
    row = (images.groupBy("sha256").agg(F.count(F.lit(1)).alias("n"), F.countDistinct("label").alias("labels"))
           .where("n > 1").agg(F.count(F.lit(1)).alias("groups"), F.sum(F.col("n") - 1).alias("extra"),
                               F.sum(F.when(F.col("labels") > 1, 1).otherwise(0)).alias("mixed")).first())
    return {"images_with_copies": int(row["groups"] or 0), "extra_copies": int(row["extra"] or 0),
            "copies_under_several_labels": int(row["mixed"] or 0)}


def label_counts(images: DataFrame) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for r in images.groupBy("label", "split").count().collect():
        out.setdefault(r["label"], {"train": 0, "test": 0})[r["split"]] = r["count"]
    return dict(sorted(out.items()))


def run(spark: SparkSession, cfg: IngestImagesConfig, progress=print) -> dict:
    """Ingest the images under ``cfg.input`` into ``cfg.table``; returns the summary. Every scan of
    the files runs under imagefiles.scan_conf (a count with Spark's defaults made 125 tasks of 4,000 JPEGs)."""
    with session_conf(spark, imagefiles.scan_conf(spark)):
        return ingest(spark, cfg, progress)


def ingest(spark: SparkSession, cfg: IngestImagesConfig, progress) -> dict:
    t0 = time.monotonic()
    db, name = cfg.output
    qdb, qname = cfg.quarantine
    root, files = list_files(spark, cfg)
    rows, entries = labelled(spark, cfg, root, files)
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    lineage = [F.lit(at).cast("timestamp").alias("ingested_at"), F.lit(run_id).alias("run_id")]
    staging = tables.staging_path(spark, db, f"{name}-{run_id}")
    progress(f"decoding the files under {root} (labels from {cfg.labels}) into {staging}")
    try:
        with StageProgress(spark, progress):
            inspected(cfg, rows).write.parquet(staging)
        seconds = time.monotonic() - t0
        staged = spark.read.parquet(staging)
        by_reason = counted(spark, cfg, staged)
        images = images_table(cfg, staged)
        props = {"mljobs.input": cfg.input, "mljobs.labels": cfg.labels, "mljobs.run_id": run_id,
                 "mljobs.test_fraction": str(cfg.test_fraction), "mljobs.split_seed": str(cfg.split_seed)}
        try:
            tables.stage(spark, db, name, images.select("*", *lineage), props, comment="images (ingest-images)")
            quarantined = staged.where(F.col("reason").isNotNull()).select(*QUARANTINE_COLUMNS, *lineage)
            tables.stage(spark, qdb, qname, quarantined, props, comment="files ingest-images could not use")
            staged_images = spark.table(f"{db}.{name}{tables.NEW}")
            report = {"labels": label_counts(staged_images), "duplicates": duplicate_report(staged_images)}
            tables.commit(spark, db, [name, qname])
        except BaseException:
            tables.discard(spark, db, [name, qname])
            raise
        if entries is not None:
            report["files_not_in_manifest"] = files.join(entries, files["_rel"] == entries["rel"], "left_anti").count()
    finally:
        fs.remove(spark, staging)
        if entries is not None:
            entries.unpersist()
    total, usable = sum(by_reason.values()), by_reason.get("", 0)
    progress(f"{total:,} files: {usable:,} images, {total - usable:,} quarantined ({_reasons(by_reason) or 'none'}) "
             f"in {seconds:.1f}s ({total / max(seconds, 1e-9):,.0f} files/s)")
    return {"input": cfg.input, "table": f"{db}.{name}", "quarantine_table": f"{qdb}.{qname}",
            "label_source": cfg.labels, "files": total, "images": usable, "quarantined": total - usable,
            "quarantined_by_reason": {r: n for r, n in sorted(by_reason.items()) if r}, **report,
            "test_fraction": cfg.test_fraction, "split_seed": cfg.split_seed,
            "decode_seconds": round(seconds, 2), "files_per_s": round(total / max(seconds, 1e-9), 1),
            "run_id": run_id, "seconds": round(time.monotonic() - t0, 2)}


# ---- what the rest of the system knows about this job (see mljobs.registry)
NAME = "ingest-images"
CONFIG = IngestImagesConfig
EMR_STEP = EmrStep(needs=("images_input", "images_table"), label=lambda p: p.images_table, default=False,
                   args=lambda p: ["--input", p.images_input, "--table", p.images_table])
GPU_FALLBACKS = [
    *imagefiles.LISTING_FALLBACKS,
    Known("Sha2", UNSUPPORTED_CLASS, "splits.py assign: the order of the split (ingest-images, train-classifier)",
          "one sha256 of 64 hex characters per distinct image, in a plan that handles one short row per image"),
]
