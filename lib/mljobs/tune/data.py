"""Read and check the training table: label, features, encodings, folds — before any training."""
from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mljobs import tables
from mljobs.errors import InputError, MljobsError
from mljobs.models.artifact import feature_columns
from mljobs.studies.folds import FOLD_COL, KEY2_COL, KEY_COL, assign_folds

DEFAULT_LABEL = "ArrDel15"
_NUMERIC = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType, T.BooleanType)


@dataclass
class TrainingData:
    df: DataFrame  # features (double, NaN = missing), label (int), _fold, row keys
    label: str
    features: list[str]
    categorical_maps: dict[str, list[str]]
    rows: int
    class_counts: dict[int, int]
    rows_null_label: int
    table_properties: dict[str, str] = field(default_factory=dict)


def table_properties(spark, table: str) -> dict[str, str]:
    try:
        return {r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES {table}").collect()}
    except Exception:
        return {}


def load_training_data(spark, table: str, label: str | None, features: list[str] | None, k: int, seed: int,
                       where: str | None = None, max_categories: int = 1000) -> TrainingData:
    """The table's rows as training data: checked label and features, encoded, in k stratified folds."""
    df = tables.read_table(spark, table, where)
    props = table_properties(spark, table)
    label, features = resolve_columns(df, table, label, features, props)
    strings = check_types(df, label, features)
    stats = check_label(df, table, label, where)
    maps = category_maps(df, strings, max_categories)
    extra = [p for p in tables.partition_columns(spark, table) if p not in features and p != label]
    numeric = numeric_rows(df, label, features, maps, extra)
    folded, counts = assign_folds(numeric, label, k, seed, features + [label] + extra)
    smallest = min(counts.values())
    if smallest < k:
        raise InputError(f"the rarer class of {label} has {smallest} rows, fewer than cv_folds = {k}")
    keep = features + [label, FOLD_COL, KEY_COL, KEY2_COL]
    return TrainingData(folded.select(*[F.col(f"`{c}`") for c in keep]), label, features, maps,
                        rows=int(sum(counts.values())), class_counts={int(c): int(n) for c, n in counts.items()},
                        rows_null_label=int(stats["null_label"] or 0), table_properties=props)


def resolve_columns(df: DataFrame, table: str, label: str | None, features: list[str] | None,
                    props: dict[str, str]) -> tuple[str, list[str]]:
    """The label and features as the table spells them: given, else from its mljobs.* properties,
    else ArrDel15 and every numeric or string column."""
    by_lower = {c.lower(): c for c in df.columns}
    label = label or props.get("mljobs.label") or DEFAULT_LABEL
    if label.lower() not in by_lower:
        raise InputError(f"label column {label!r} is not in {table} (columns: {', '.join(df.columns)})")
    label = by_lower[label.lower()]
    if features is None:
        listed = props.get("mljobs.features")
        if listed:
            features = [f for f in listed.split(",") if f]
        else:  # BYOD: every numeric or string column but the label
            features = [f.name for f in df.schema.fields if f.name != label
                        and (isinstance(f.dataType, _NUMERIC) or isinstance(f.dataType, T.StringType))]
    missing = [f for f in features if f.lower() not in by_lower]
    if missing:
        raise InputError(f"feature columns {missing} are not in {table}")
    features = [by_lower[f.lower()] for f in features]
    if label in features:
        raise MljobsError(f"the label {label} is also listed as a feature")
    return label, features


def check_types(df: DataFrame, label: str, features: list[str]) -> list[str]:
    """Numeric or string features, a numeric label; returns the string features."""
    types = {f.name: f.dataType for f in df.schema.fields}
    strings = [f for f in features if isinstance(types[f], T.StringType)]
    bad = [f for f in features if not isinstance(types[f], _NUMERIC) and f not in strings]
    if bad:
        raise InputError(f"features {bad} are neither numeric nor string ({', '.join(types[b].simpleString() for b in bad)})")
    if not isinstance(types[label], _NUMERIC):
        raise InputError(f"label {label} must be numeric 0/1, it is {types[label].simpleString()}")
    return strings


def check_label(df: DataFrame, table: str, label: str, where: str | None):
    """One pass: rows, null labels and the label's values, which must be 0 and 1."""
    lab = F.col(f"`{label}`").cast("double")
    stats = df.agg(F.count(F.lit(1)).alias("n"), F.sum(lab.isNull().cast("long")).alias("null_label"),
                   F.collect_set(lab).alias("values")).collect()[0]
    if stats["n"] == 0:
        raise InputError(f"{table}{' (with --where)' if where else ''} has no rows")
    values = sorted(v for v in stats["values"] if v is not None)
    if not set(values) <= {0.0, 1.0}:
        shown = ", ".join(f"{v:g}" for v in values[:10])
        raise InputError(f"label {label} must be binary 0/1; it has {len(values)} distinct values ({shown}{', ...' if len(values) > 10 else ''})")
    if len(values) < 2:
        raise InputError(f"label {label} has only the value {values[0]:g} (with non-null labels): nothing to learn")
    return stats


def category_maps(df: DataFrame, strings: list[str], max_categories: int) -> dict[str, list[str]]:
    """Each string feature's values, sorted (a value's code is its position)."""
    maps = {}
    for s in strings:
        cats = df.select(F.col(f"`{s}`")).where(F.col(f"`{s}`").isNotNull()).distinct().limit(max_categories + 1).collect()
        if len(cats) > max_categories:
            raise InputError(f"string feature {s} has more than {max_categories} distinct values; "
                             "drop it or raise max_categories")
        maps[s] = sorted(r[0] for r in cats)
    return maps


def numeric_rows(df: DataFrame, label: str, features: list[str], maps: dict[str, list[str]],
                 extra: list[str] = ()) -> DataFrame:
    """The rows with a label: each feature a double (strings by their category's position,
    NaN for missing), the label an int, then the ``extra`` columns as they are."""
    usable = df.where(F.col(f"`{label}`").isNotNull())
    cols = [F.coalesce(c, F.lit(float("nan"))).alias(f) for c, f in zip(feature_columns(usable, features, maps), features)]
    return usable.select(*cols, F.col(f"`{label}`").cast("int").alias(label), *[F.col(f"`{p}`") for p in extra])


def collect_arrays(data: TrainingData) -> dict:
    """The training matrix on the driver, in a deterministic row order (fold, row keys): sorted
    here, after the collect, rather than by a Spark sort (a shuffle) before it."""
    import numpy as np

    pdf = (data.df.select(*[F.col(f"`{f}`").cast("float").alias(f) for f in data.features],
                          F.col(f"`{data.label}`").cast("tinyint").alias("_y"),
                          F.col(FOLD_COL).cast("tinyint").alias("_f"), KEY_COL, KEY2_COL)
               .toPandas())
    order = np.lexsort((pdf[KEY2_COL].to_numpy(), pdf[KEY_COL].to_numpy(), pdf["_f"].to_numpy()))
    X = np.ascontiguousarray(pdf[data.features].to_numpy(dtype=np.float32)[order])
    return {"X": X, "y": pdf["_y"].to_numpy(dtype=np.float32)[order], "fold": pdf["_f"].to_numpy(dtype=np.int8)[order]}
