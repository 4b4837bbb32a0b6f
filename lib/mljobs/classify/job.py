"""The classify job: a train-classifier model + images (a table with a binary content column, or
image files) -> <out-table> (each scored image's labels, as Rekognition Custom Labels'
DetectCustomLabels returns them) and <out-table>_quarantine (each image that could not be scored,
with the reason).

The model is loaded and checked on the driver, its weights broadcast; the images are checked,
decoded and scored a batch at a time in the Python tasks (classify/score.py), and the scored rows
staged as Parquet once; the counts and the checks read the staged rows; only then are both tables
written and swapped in together, so a failed run leaves the previous tables as they were."""
from __future__ import annotations

import time
import uuid
from dataclasses import replace

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mljobs import fs, imagefiles, tables
from mljobs.classify import labels, score
from mljobs.classify.config import ASSUMED, AUTO, DEFAULT_KEEP, RESERVED, ClassifyConfig
from mljobs.config import parse_table_name
from mljobs.device import device_for
from mljobs.emr import EmrStep
from mljobs.errors import InputError
from mljobs.models import vision
from mljobs.session import StageProgress, session_conf
from mljobs.uris import s3_join

# A label without an assumed threshold (no test images of it), and every label of a model without
# any, under --min-confidence auto.
FALLBACK_THRESHOLD = 0.5


def load_model(cfg: ClassifyConfig) -> vision.ImageClassifier:
    """The classifier (a clear InputError when --model is not one, or its weights are not the ones
    its metadata describes)."""
    try:
        return vision.load_classifier(cfg.model)
    except InputError as exc:
        raise InputError(f"--model: {exc}") from None


def assumed_thresholds(meta: vision.ImageClassifier) -> dict[str, float | None]:
    """label -> its assumed threshold, from the model's metadata (``metrics.per_label``, written by
    train-classifier from its test evaluation); {} when it has none."""
    return {k: (v or {}).get("assumed_threshold") for k, v in (meta.metrics.get("per_label") or {}).items()}


def thresholds(meta: vision.ImageClassifier, min_confidence) -> tuple[list[float], str]:
    """(each label's threshold in the model's label order, the rule in words)."""
    if min_confidence not in (AUTO, ASSUMED):
        return [float(min_confidence)] * len(meta.labels), f"{float(min_confidence):g} for every label"
    assumed = assumed_thresholds(meta)
    if not any(assumed.get(x) is not None for x in meta.labels):
        if min_confidence == ASSUMED:
            raise InputError(f"--min-confidence assumed: the model {meta.name} has no assumed thresholds "
                             "(no per_label metrics in its metadata.json); give a probability")
        return [FALLBACK_THRESHOLD] * len(meta.labels), f"{FALLBACK_THRESHOLD:g} for every label (no assumed thresholds)"
    values = [float(assumed[x]) if assumed.get(x) is not None else FALLBACK_THRESHOLD for x in meta.labels]
    missing = [x for x in meta.labels if assumed.get(x) is None]
    return values, "each label's assumed threshold" + (f" ({FALLBACK_THRESHOLD:g} for {', '.join(missing)})"
                                                       if missing else "")


def select(spark: SparkSession, cfg: ClassifyConfig) -> tuple[DataFrame, list[str]]:
    """(the images: the kept columns and content, the kept names); every named column checked."""
    if cfg.input is not None:
        df = imagefiles.list_files(spark, cfg.input)[1]
        where = f"--input {cfg.input} (columns of the listing)"
    else:
        df = tables.read_table(spark, cfg.table)
        where = cfg.table
    by_lower = {c.lower(): c for c in df.columns}
    if "content" not in by_lower or not isinstance(df.schema[by_lower["content"]].dataType, T.BinaryType):
        raise InputError(f"{where} has no binary content column (the image bytes, as ingest-images writes "
                         f"them); columns: {', '.join(df.columns)}")
    wanted = cfg.keep if cfg.keep is not None else ([DEFAULT_KEEP] if DEFAULT_KEEP in by_lower else [])
    absent = [c for c in wanted if c.lower() not in by_lower]
    if absent:
        raise InputError(f"--keep: {where} has no column {', '.join(absent)}; columns: {', '.join(df.columns)}")
    keep = list(dict.fromkeys(by_lower[c.lower()] for c in wanted))
    clash = [c for c in keep if c.lower() in RESERVED]
    if clash:
        raise InputError(f"--keep {clash} clash with the output columns ({', '.join(RESERVED)})")
    return df.select(*[F.col(f"`{c}`") for c in keep], F.col(f"`{by_lower['content']}`").alias("content")), keep


def scored(spark: SparkSession, rows: DataFrame, keep: list[str], meta: vision.ImageClassifier, weights_bc,
           batch: int) -> DataFrame:
    """The kept columns, sha256, reason, detail and probs (array<float>) of every image."""
    threads = int(spark.sparkContext.getConf().get("spark.task.cpus", "1"))
    udf = score.score_udf(meta.to_json(), weights_bc, device_for(spark), threads, batch)
    out = rows.select(*[F.col(f"`{c}`") for c in keep], udf("content").alias("_s"))
    return out.select(*[F.col(f"`{c}`") for c in keep], "_s.sha256", "_s.reason", "_s.detail", "_s.probs")


def counted(staged: DataFrame, source: str) -> dict[str, int]:
    """Rows per reason ('' = scored); no rows, or no image scored, fail here."""
    by = {r["reason"] or "": r["count"] for r in staged.groupBy("reason").count().collect()}
    total = sum(by.values())
    if total == 0:
        raise InputError(f"no images in {source}")
    if not by.get(""):
        raise InputError(f"no image could be scored among {total:,} in {source} ({_reasons(by)}); nothing was "
                         "written")
    return by


def _reasons(by: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {r}" for r, n in sorted(by.items()) if r)


def publish(spark: SparkSession, cfg: ClassifyConfig, staged: DataFrame, keep: list[str], meta, floors, run_id,
            props) -> dict[str, int]:
    """Stage the labels and the quarantine, count the labels, swap both in; the top label counts."""
    (db, name), (_, qname) = cfg.output, cfg.quarantine
    lineage = [F.lit(meta.name).alias("model"), F.lit(meta.model_sha256).alias("model_sha256"),
               F.lit(run_id).alias("run_id")]
    good = staged.where(F.col("reason").isNull()).select(*[F.col(f"`{c}`") for c in keep], "sha256", "probs")
    out = labels.with_labels(good, "probs", meta.labels, floors, cfg.top_k).select("*", *lineage)
    bad = staged.where(F.col("reason").isNotNull()).select(*[F.col(f"`{c}`") for c in keep], "reason", "detail",
                                                            F.lit(run_id).alias("run_id"))
    try:
        tables.stage(spark, db, name, out, props, comment=f"labels of {meta.name} (classify)")
        tables.stage(spark, db, qname, bad, props, comment="images classify could not score")
        counts = {r["label"]: r["count"] for r in spark.table(f"{db}.{name}{tables.NEW}").groupBy("label")
                  .count().collect()}
        tables.commit(spark, db, [name, qname])
    except BaseException:
        tables.discard(spark, db, [name, qname])
        raise
    return counts


def run(spark: SparkSession, cfg: ClassifyConfig, progress=print) -> dict:
    """Label the images of ``cfg.table`` or ``cfg.input`` with ``cfg.model``; returns the summary."""
    with session_conf(spark, imagefiles.scan_conf(spark, int(cfg.batch_size))):
        return classify(spark, cfg, progress)


def classify(spark: SparkSession, cfg: ClassifyConfig, progress) -> dict:
    t0 = time.monotonic()
    meta = load_model(cfg)
    floors, rule = thresholds(meta, cfg.min_confidence)
    rows, keep = select(spark, cfg)
    source = cfg.table or cfg.input
    db, name = cfg.output
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    staging = tables.staging_path(spark, db, f"{name}-{run_id}")
    props = {"mljobs.model": meta.location, "mljobs.model_sha256": meta.model_sha256, "mljobs.source": source,
             "mljobs.min_confidence": str(cfg.min_confidence), "mljobs.top_k": str(cfg.top_k or ""),
             "mljobs.run_id": run_id}
    progress(f"labelling {source} with {meta.name} ({meta.arch}, {len(meta.labels)} labels, "
             f"{meta.image_size}x{meta.image_size}) on {device_for(spark)}; min confidence: {rule}; "
             f"into {db}.{name}")
    bc = spark.sparkContext.broadcast(meta.weights())
    try:
        t = time.monotonic()
        with StageProgress(spark, progress):
            scored(spark, rows, keep, meta, bc, int(cfg.batch_size)).write.parquet(staging)
        seconds = time.monotonic() - t
        staged = spark.read.parquet(staging)
        by_reason = counted(staged, source)
        counts = publish(spark, cfg, staged, keep, meta, floors, run_id, props)
    finally:
        fs.remove(spark, staging)
        bc.destroy()
    return summary(cfg, meta, rule, floors, by_reason, counts, seconds, run_id, t0, progress)


def summary(cfg, meta, rule, floors, by_reason, counts, seconds, run_id, t0, progress) -> dict:
    total, good = sum(by_reason.values()), by_reason.get("", 0)
    unlabelled = counts.get(None, 0)
    progress(f"{total:,} images: {good:,} scored ({good - unlabelled:,} labelled, {unlabelled:,} under the "
             f"threshold), {total - good:,} quarantined ({_reasons(by_reason) or 'none'}) in {seconds:.1f}s "
             f"({total / max(seconds, 1e-9):,.0f} images/s)")
    return {"model": meta.location, "model_name": meta.name, "model_sha256": meta.model_sha256,
            "source": cfg.table or cfg.input, "out_table": ".".join(cfg.output),
            "quarantine_table": ".".join(cfg.quarantine), "min_confidence": cfg.min_confidence, "threshold_rule": rule,
            "thresholds": dict(zip(meta.labels, floors)), "top_k": cfg.top_k, "images": total, "rows_scored": good,
            "labelled": good - unlabelled, "unlabelled_below_threshold": unlabelled, "quarantined": total - good,
            "quarantined_by_reason": {r: n for r, n in sorted(by_reason.items()) if r},
            "top_label_counts": {k: v for k, v in sorted(counts.items(), key=lambda kv: str(kv[0])) if k is not None},
            "score_seconds": round(seconds, 2), "images_per_s": round(total / max(seconds, 1e-9), 1),
            "run_id": run_id, "seconds": round(time.monotonic() - t0, 2)}


def _emr_args(p) -> list[str]:
    db, name = parse_table_name(p.images_table)
    return ["--model", s3_join(p.results_dir(), "models", f"{name}_classifier"), "--table", p.images_table,
            "--out-table", f"{db}.{name}_labels"]


# ---- what the rest of the system knows about this job (see mljobs.registry)
NAME = "classify"
CONFIG = ClassifyConfig
# After train-classifier's step on the same table: its default model directory, <db>.<table>_labels.
EMR_STEP = EmrStep(needs=("images_table",), label=lambda p: p.images_table, default=False, args=_emr_args)
GPU_FALLBACKS = [
    # --input only: the files' listing (the binaryFile scan; empty files added by a union).
    *[replace(k, required=False) for k in imagefiles.LISTING_FALLBACKS],
]
