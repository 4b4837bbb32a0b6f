"""The validation report of a text model: per-class metrics and the most confidently wrong rows
as tables (partitioned by study, each run replacing its study's partition: staged first and
published only once the model is saved), and the confusion matrix as a plot."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mljobs import fs, tables
from mljobs.models.text import LABEL_IDX, PREDICTED, TEXT
from mljobs.tables import column_ddl, quoted

LABEL = "_label"


def metric_rows(metrics: dict[str, Any], study: str, run_id: str) -> list[tuple]:
    """One row per class and one for the whole validation set (label NULL, macro means)."""
    rows = [(c["label"], float(c["precision"]), float(c["recall"]), float(c["f1"]), int(c["support"]), None)
            for c in metrics["per_class"]]
    rows.append((None, float(metrics["macro_precision"]), float(metrics["macro_recall"]), float(metrics["macro_f1"]),
                 int(metrics["rows"]), float(metrics["accuracy"])))
    return [(*r, run_id, study) for r in rows]


METRIC_SCHEMA = ("label string, precision double, recall double, f1 double, support bigint, accuracy double, "
                 "run_id string, study string")


def confidently_wrong(pred: DataFrame, n: int, study: str, run_id: str) -> DataFrame:
    """The n wrong predictions with the highest probability of the predicted class."""
    confidence = F.array_max(vector_to_array("probability"))
    return (pred.where(F.col("prediction") != F.col(LABEL_IDX))
                .select(F.col(TEXT).alias("text"), F.col(LABEL).alias("label"), F.col(PREDICTED).alias("predicted"),
                        confidence.alias("confidence"))
                .orderBy(F.desc("confidence"), "text").limit(n)
                .withColumn("rank", F.row_number().over(_rank_window()))
                .select("rank", "text", "label", "predicted", "confidence", F.lit(run_id).alias("run_id"),
                        F.lit(study).alias("study")))


def _rank_window():
    from pyspark.sql import Window

    return Window.orderBy(F.desc("confidence"), "text")


@dataclass
class StagedPartition:
    """The study's rows of db.name written as Parquet under a staging folder, not yet in the catalog."""
    db: str
    name: str
    study: str
    ddl: str
    path: str

    @property
    def part_dir(self) -> str:
        return f"study={self.study}"  # study names are letters, digits, '_', '-', '.': no escaping


def stage_study_partition(spark, db: str, name: str, df: DataFrame, study: str, staging: str) -> StagedPartition:
    """Write the study's rows (a ``study`` column last) under staging/name; the table is untouched."""
    if spark.catalog.tableExists(f"{db}.{name}"):
        df = df.select(*spark.table(f"{db}.{name}").columns)
    path = f"{staging.rstrip('/')}/{name}"
    df.write.partitionBy("study").parquet(path)
    return StagedPartition(db, name, study, column_ddl(df), path)


def publish_study_partition(spark, staged: StagedPartition, trash: str) -> str:
    """Replace the study's partition of db.name by the staged one (the table created when absent);
    no staged rows (no wrong predictions, say) drop the old partition."""
    full = f"{staged.db}.{staged.name}"
    # IF NOT EXISTS: another study (another process) may create it at the same moment
    spark.sql(f"CREATE TABLE IF NOT EXISTS {quoted(staged.db, staged.name)} ({staged.ddl}) USING parquet "
              "PARTITIONED BY (study)")
    if fs.exists(spark, f"{staged.path}/{staged.part_dir}"):
        tables.publish_partitions(spark, full, staged.path, [{"values": {"study": staged.study}, "dir": staged.part_dir}],
                                  trash)
    else:
        spark.sql(f"ALTER TABLE {quoted(staged.db, staged.name)} DROP IF EXISTS PARTITION "
                  f"(study = {tables.sql_literal(staged.study)})")
    return full
