"""Where each image's label comes from: the folder it sits in (the first level under --input),
or a SageMaker Ground Truth manifest (JSON lines, the format Rekognition Custom Labels imports).

Paths are matched relative to --input, so ``s3://`` and ``s3a://`` spellings, ``file:`` URIs
and plain local paths of the same file agree."""
from __future__ import annotations

import json

import pandas as pd

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

SPLITS = ("train", "test")


def relative_path(root: str) -> Column:
    """The path of a listed file below ``root`` (as ``fs.qualified`` spells it)."""
    return F.expr(f"substring(path, {len(root) + 2})")


def folder_label(rel: Column) -> Column:
    """The first folder of the relative path; NULL for a file directly under --input."""
    return F.when(F.instr(rel, "/") > 0, F.substring_index(rel, "/", 1))


def canonical(uri: str) -> str:
    """One spelling per location: s3a:// and s3n:// as s3://, file: URIs as plain paths."""
    for scheme in ("s3a://", "s3n://"):
        if uri.startswith(scheme):
            uri = "s3://" + uri[len(scheme):]
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    elif uri.startswith("file:"):
        uri = uri[len("file:"):]
    return uri.rstrip("/")


def _class_name(entry: dict, attribute: str | None) -> str:
    """The label of a manifest entry: ``<attribute>-metadata.class-name`` (Ground Truth's image
    classification output), or the attribute's own value when it is a string."""
    names = [attribute] if attribute else [k[:-len("-metadata")] for k, v in entry.items()
                                           if k.endswith("-metadata") and isinstance(v, dict) and "class-name" in v]
    if len(names) != 1:
        raise ValueError("no label attribute (an <attribute>-metadata object with class-name): pass --label-attribute"
                         if not names else f"several label attributes ({', '.join(sorted(names))}): pass --label-attribute")
    meta = entry.get(f"{names[0]}-metadata")
    if isinstance(meta, dict) and isinstance(meta.get("class-name"), str):
        return meta["class-name"]
    if isinstance(entry.get(names[0]), str):
        return entry[names[0]]
    raise ValueError(f"no class-name for attribute {names[0]!r}")


def parse_line(line: str, root: str, attribute: str | None) -> tuple[str | None, ...]:
    """(source-ref, its path below --input, label, split or None, error or None) of one manifest line."""
    try:
        entry = json.loads(line)
        if not isinstance(entry, dict):
            raise ValueError("not a JSON object")
        ref = entry.get("source-ref")
        if not isinstance(ref, str) or not ref:
            raise ValueError("no source-ref")
        label = _class_name(entry, attribute)
        split = entry.get("split")
        if split is not None and split not in SPLITS:
            raise ValueError(f"split {split!r} is not train or test")
    except ValueError as exc:  # json.JSONDecodeError is one
        return None, None, None, None, str(exc)
    absolute = ref.startswith("/") or "://" in ref or ref.startswith("file:")
    where, base = canonical(ref) if absolute else f"{canonical(root)}/{ref.removeprefix('./')}", canonical(root)
    if not where.startswith(base + "/"):
        return ref, None, label, split, f"source-ref {ref} is not under --input {root}"
    return ref, where[len(base) + 1:], label, split, None


def read_manifest(spark: SparkSession, manifest: str, root: str, attribute: str | None) -> DataFrame:
    """The manifest's lines parsed in tasks: line (1-based), ref, rel, label, split, error."""
    from pyspark.sql.functions import pandas_udf
    from pyspark.sql.window import Window

    from mljobs.session import env_of
    from mljobs.uris import normalize_path

    columns = ["ref", "rel", "label", "split", "error"]

    @pandas_udf(", ".join(f"{c} string" for c in columns))
    def parse(lines: pd.Series) -> pd.DataFrame:
        return pd.DataFrame([parse_line(x, root, attribute) for x in lines], columns=columns)

    text = spark.read.text(normalize_path(manifest, env_of(spark)))
    lines = text.withColumn("line", F.row_number().over(Window.orderBy(F.monotonically_increasing_id())))
    lines = lines.where(F.trim("value") != "")
    return lines.select("line", parse("value").alias("m")).select("line", "m.*")
