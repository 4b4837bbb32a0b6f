"""mljobs.tables: several tables staged together are swapped in together, or not at all."""
from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from mljobs.tables import commit, stage_all


def test_stage_all_then_commit_replaces_every_table_or_none(spark):
    spark.sql("CREATE DATABASE IF NOT EXISTS tables_t")
    spark.range(1).createOrReplaceTempView("tables_t_other_tests_view")  # SHOW TABLES lists temp views too
    stage_all(spark, "tables_t", {"a": spark.range(3), "b": spark.range(4)})
    commit(spark, "tables_t", ["a", "b"])
    assert (spark.table("tables_t.a").count(), spark.table("tables_t.b").count()) == (3, 4)
    failing = spark.range(5).select(F.coalesce(F.assert_true(F.col("id") < 2).cast("long"), F.col("id")).alias("id"))
    with pytest.raises(Exception, match="id < 2"):
        stage_all(spark, "tables_t", {"a": spark.range(7), "b": failing})
    names = {r.tableName for r in spark.sql("SHOW TABLES IN tables_t").collect() if not r.isTemporary}
    assert names == {"a", "b"}  # nothing staged is left behind ...
    assert (spark.table("tables_t.a").count(), spark.table("tables_t.b").count()) == (3, 4)  # ... and a is the old one
