"""Count the staged rows and decide, before any table is touched, whether to go on."""
from __future__ import annotations

from pyspark.sql import SparkSession

from mljobs import fs
from mljobs.errors import BadDataError, InputError
from mljobs.ingest.stage import STATUS
from mljobs.io import InputFile
from mljobs.readers import REASON, SOURCE


def count_staged(spark: SparkSession, staging: str, schema, partition_by: list[str]) -> list:
    """Row counts by file, status, reason and partition: one small aggregation."""
    staged = spark.read.schema(schema).parquet(staging)
    return staged.groupBy(SOURCE, STATUS, REASON, *partition_by).count().collect()


def check_counts(counts: list, files: list[InputFile], max_bad_fraction: float) -> dict:
    """Totals by status and reason; abort (nothing written yet) on header-only files,
    no accepted rows, or too many malformed rows."""
    per_file: dict[str, dict[str, int]] = {}
    excluded: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for row in counts:
        f = per_file.setdefault(row[SOURCE], {"read": 0, "quarantined": 0})
        f["read"] += row["count"]
        if row[STATUS] == "quarantined":
            f["quarantined"] += row["count"]
            key = row[REASON].split(" (expected")[0] if row[REASON].startswith("wrong token") else row[REASON]
            reasons[key] = reasons.get(key, 0) + row["count"]
        elif row[STATUS] == "excluded":
            excluded[row[REASON]] = excluded.get(row[REASON], 0) + row["count"]
    read = sum(f["read"] for f in per_file.values())
    quarantined = sum(f["quarantined"] for f in per_file.values())
    accepted = read - quarantined - sum(excluded.values())
    header_only = [f.path for f in files if f.format == "csv" and f.uri not in per_file]
    if header_only:
        raise InputError(f"input file(s) with a header but no data rows: {', '.join(header_only[:10])}")
    if read == 0:
        raise InputError("the input has no rows")
    fraction = quarantined / read
    if fraction > max_bad_fraction:
        worst = sorted(per_file.items(), key=lambda kv: (-kv[1]["quarantined"] / kv[1]["read"], kv[0]))[:5]
        named = "; ".join(f"{p}: {v['quarantined']}/{v['read']} bad" for p, v in worst if v["quarantined"])
        top = ", ".join(f"{k} ({v})" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
        raise BadDataError(
            f"{quarantined:,} of {read:,} rows are malformed ({fraction:.2%} > --max-bad-fraction "
            f"{max_bad_fraction:.2%}); nothing was written. Worst files: {named}. Reasons: {top}"
        )
    if accepted == 0:
        raise InputError(f"no rows accepted out of {read:,} (excluded: {excluded}); nothing was written")
    return {
        "rows_read": read,
        "rows_accepted": accepted,
        "rows_quarantined": quarantined,
        "rows_excluded": dict(sorted(excluded.items())),
        "quarantine_reasons": dict(sorted(reasons.items())),
        "bad_fraction": round(fraction, 6),
    }


def staged_partitions(spark: SparkSession, staging: str, partition_by: list[str], counts: list) -> list[dict]:
    """The accepted partitions: their values and the directory Spark wrote each to."""
    if not partition_by:
        return []
    values = sorted({tuple(r[p] for p in partition_by) for r in counts if r[STATUS] == "accepted"}, key=str)
    root = f"{staging}/{STATUS}=accepted"
    jvm = spark.sparkContext._jvm
    # Spark escapes partition values in directory names; ask Spark for the same escaping.
    escape = jvm.org.apache.spark.sql.catalyst.catalog.ExternalCatalogUtils.escapePathName
    out = []
    for vals in values:
        rel = "/".join(f"{escape(p)}={escape(_path_value(v))}" for p, v in zip(partition_by, vals))
        if not fs.exists(spark, f"{root}/{rel}"):
            raise RuntimeError(f"staged partition directory missing: {root}/{rel}")
        out.append({"values": dict(zip(partition_by, vals)), "dir": rel})
    return out


def _path_value(v) -> str:
    return v.isoformat() if hasattr(v, "isoformat") else str(v)
