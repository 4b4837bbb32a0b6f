"""json_object (plain string functions) writes what Spark's to_json writes."""
from __future__ import annotations

from pyspark.sql import functions as F
from pyspark.sql import types as T

from mljobs.sqljson import json_object

STRINGS = ["plain", 'q"uote', "back\\slash", "".join(chr(i) for i in range(0x20)), "ünï €", "\u2028/<>", "", None,
           "\x7f", '\\"\n']
DOUBLES = [0.0, -0.0, 0.1, 1e-5, 1e7, 123456789.0, 1e300, 5e-324, 2 / 3, float("nan"), float("inf"), float("-inf"),
           None, 20.0]


def test_json_object_equals_to_json(spark):
    schema = T.StructType([
        T.StructField('we"ird name\t', T.StringType()), T.StructField("d", T.DoubleType()),
        T.StructField("f", T.FloatType()), T.StructField("i", T.IntegerType()), T.StructField("l", T.LongType()),
        T.StructField("s", T.ShortType()), T.StructField("b", T.BooleanType()),
    ])
    rows = []
    for i in range(len(DOUBLES)):
        d = DOUBLES[i]
        rows.append((STRINGS[i % len(STRINGS)], d, d, i if i % 4 else None, i * 10**12, i - 7,
                     None if i % 3 == 0 else bool(i % 2)))
    rows.append((None,) * len(schema))  # every field NULL: {}
    df = spark.createDataFrame(rows, schema)
    names = [f.name for f in df.schema]
    ours = json_object([(f.name, F.col(f"`{f.name}`"), f.dataType) for f in df.schema])
    out = df.select(F.to_json(F.struct(*[F.col(f"`{n}`") for n in names])).alias("ref"), ours.alias("ours")).collect()
    assert len(out) == len(rows)
    assert [r.ours for r in out] == [r.ref for r in out]
    assert out[-1].ours == "{}"


def test_unsupported_types_are_left_to_to_json(spark):
    assert json_object([("d", F.col("d"), T.DecimalType(10, 2))]) is None
    assert json_object([("t", F.col("t"), T.TimestampType())]) is None
    assert json_object([("a", F.col("a"), T.ArrayType(T.StringType()))]) is None
