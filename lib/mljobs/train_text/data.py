"""The labelled text of a table, checked before any training: the text and label columns exist,
the text is a string, at least two classes; rows without text or label counted and left out;
an 80/20 stratified split (the validation rows) and stratified CV folds on the 80 %."""
from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mljobs import tables
from mljobs.errors import InputError
from mljobs.models.text import LABEL_IDX, TEXT
from mljobs.studies.folds import FOLD_COL, KEY2_COL, KEY_COL, assign_folds

LABEL = "_label"
SPLIT_FOLDS = 5  # one of five stratified folds is the validation set: the 80/20 split
_LABEL_TYPES = (T.StringType, T.IntegerType, T.LongType, T.ShortType, T.ByteType, T.BooleanType)


@dataclass
class TextData:
    train: DataFrame        # _text, _label, _label_idx, _fold (CV), persisted
    validation: DataFrame   # _text, _label, _label_idx, persisted
    labels: list[str]       # class names, index order (sorted)
    rows: int               # labelled rows with text
    rows_null_label: int
    rows_null_text: int
    class_counts: dict[str, int]
    rows_train: int
    rows_validation: int


def select_text(df: DataFrame, table: str, text_col: str, label_col: str) -> DataFrame:
    """(_text, _label as a string) of the table; missing columns and non-string text refused."""
    by_lower = {c.lower(): c for c in df.columns}
    absent = [c for c in (text_col, label_col) if c.lower() not in by_lower]
    if absent:
        raise InputError(f"{table} has no column {', '.join(absent)}; columns: {', '.join(df.columns)}")
    text, label = by_lower[text_col.lower()], by_lower[label_col.lower()]
    if not isinstance(df.schema[text].dataType, T.StringType):
        raise InputError(f"--text-col {text} is {df.schema[text].dataType.simpleString()}, not a string")
    if not isinstance(df.schema[label].dataType, _LABEL_TYPES):
        raise InputError(f"--label-col {label} is {df.schema[label].dataType.simpleString()}; "
                         "a label is a string, an integer or a boolean")
    return df.select(F.col(f"`{text}`").alias(TEXT), F.col(f"`{label}`").cast("string").alias(LABEL))


def check_classes(df: DataFrame, table: str) -> tuple[dict[str, int], int, int]:
    """Rows per class (rows with text and label), rows without a label, rows without text."""
    counts = (df.groupBy(F.col(LABEL).isNull().alias("nl"), F.col(TEXT).isNull().alias("nt"), LABEL)
                .count().collect())
    per_class: dict[str, int] = {}
    null_label = null_text = 0
    for r in counts:
        if r["nl"]:
            null_label += r["count"]
        elif r["nt"]:
            null_text += r["count"]
        else:
            per_class[r[LABEL]] = per_class.get(r[LABEL], 0) + r["count"]
    rows = sum(per_class.values())
    if rows == 0:
        raise InputError(f"no rows with both text and label in {table} (check --where and the columns)")
    if len(per_class) < 2:
        raise InputError(f"one class only ({', '.join(per_class)}) in {table}: a classifier needs two or more")
    small = sorted(k for k, n in per_class.items() if n < SPLIT_FOLDS)
    if small:
        raise InputError(f"class(es) {', '.join(small)} have fewer than {SPLIT_FOLDS} rows: too few to split "
                         "into training and validation rows")
    return dict(sorted(per_class.items())), null_label, null_text


def with_label_index(df: DataFrame, labels: list[str]) -> DataFrame:
    """_label_idx: the label's position in ``labels`` (a double, as Spark ML wants)."""
    mapping = F.create_map(*[x for i, name in enumerate(labels) for x in (F.lit(name), F.lit(float(i)))])
    return df.withColumn(LABEL_IDX, mapping[F.col(LABEL)])


def split(df: DataFrame, cv_folds: int, seed: int) -> tuple[DataFrame, DataFrame]:
    """(training rows with CV `_fold`, validation rows): 80/20 stratified by content hash."""
    keyed, _ = assign_folds(df, LABEL, SPLIT_FOLDS, seed, [TEXT, LABEL])
    drop = (KEY_COL, KEY2_COL)
    validation = keyed.where(F.col(FOLD_COL) == 0).drop(FOLD_COL, *drop)
    train = keyed.where(F.col(FOLD_COL) != 0).drop(FOLD_COL, *drop)
    train, _ = assign_folds(train, LABEL, cv_folds, seed + 1, [TEXT, LABEL])
    return train.drop(*drop), validation


def load_text_data(spark, table: str, text_col: str, label_col: str, cv_folds: int, seed: int,
                   where: str | None = None) -> TextData:
    from pyspark import StorageLevel

    df = select_text(tables.read_table(spark, table, where), table, text_col, label_col)
    class_counts, null_label, null_text = check_classes(df, table)
    labels = list(class_counts)
    usable = with_label_index(df.where(F.col(LABEL).isNotNull() & F.col(TEXT).isNotNull()), labels)
    train, validation = split(usable, cv_folds, seed)
    train = train.persist(StorageLevel.MEMORY_AND_DISK)
    validation = validation.persist(StorageLevel.MEMORY_AND_DISK)
    n_train, n_valid = train.count(), validation.count()
    return TextData(train, validation, labels, sum(class_counts.values()), null_label, null_text, class_counts,
                    n_train, n_valid)
