"""The ingest job's DataFrame steps one by one, on small hand-built frames, and its config merge."""
from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from mljobs.errors import MljobsError
from mljobs.ingest import airline
from mljobs.ingest.stage import (
    STATUS, byod_exclusion_reason, byod_quarantine_reason, partitioned_if_accepted, tag_rows,
)
from mljobs.readers import RAW, REASON, SOURCE

ROOT = Path(__file__).resolve().parents[1]
D = dt.date


def test_with_flight_date_parses_text_and_nulls_bad_dates(spark):
    df = spark.createDataFrame([("2013-01-05",), ("2013-02-30",), ("soon",)], "FlightDate string")
    expected = spark.createDataFrame([(D(2013, 1, 5),), (None,), (None,)], "FlightDate date")
    assert_df_equality(airline.with_flight_date(df), expected, ignore_nullable=True)


def test_with_flight_date_made_from_year_month_day_when_absent(spark):
    df = spark.createDataFrame([(2013, 1, 31), (2012, 2, 29)], "Year int, Month int, DayofMonth int")
    expected = spark.createDataFrame(
        [(2013, 1, 31, D(2013, 1, 31)), (2012, 2, 29, D(2012, 2, 29))],
        "Year int, Month int, DayofMonth int, FlightDate date",
    )
    assert_df_equality(airline.with_flight_date(df), expected, ignore_nullable=True)


def test_with_calendar_derives_quarter_and_bts_day_of_week(spark):
    # 2013-01-06 is a Sunday (BTS 7), 2013-04-01 a Monday (BTS 1), 2013-12-25 a Wednesday (3).
    df = spark.createDataFrame(
        [(1, D(2013, 1, 6)), (4, D(2013, 4, 1)), (12, D(2013, 12, 25))], "Month int, FlightDate date"
    )
    expected = spark.createDataFrame(
        [(1, D(2013, 1, 6), 1, 7), (4, D(2013, 4, 1), 2, 1), (12, D(2013, 12, 25), 4, 3)],
        "Month int, FlightDate date, Quarter int, DayOfWeek int",
    )
    assert_df_equality(airline.with_calendar(df), expected, ignore_nullable=True)


def test_with_calendar_keeps_given_columns(spark):
    df = spark.createDataFrame([(1, D(2013, 1, 6), 9, 9)], "Month int, FlightDate date, Quarter int, DayOfWeek int")
    assert_df_equality(airline.with_calendar(df), df)


def test_with_delay_flags_keeps_given_flags_and_derives_missing_ones(spark):
    # DepDel15 given on some rows (it wins over the delay), ArrDel15 absent as a column.
    df = spark.createDataFrame(
        [(20.0, None, 15.0), (14.0, None, 14.9), (30.0, 0.0, None), (None, None, -3.0)],
        "DepDelay double, DepDel15 double, ArrDelay double",
    )
    expected = spark.createDataFrame(
        [(20.0, 1, 15.0, 1), (14.0, 0, 14.9, 0), (30.0, 0, None, None), (None, None, -3.0, 0)],
        "DepDelay double, DepDel15 int, ArrDelay double, ArrDel15 int",
    )
    assert_df_equality(airline.with_delay_flags(df), expected, ignore_nullable=True)


def test_airline_exclusion_and_invalid_reasons(spark):
    rows = [
        # Year, Month, FlightDate, Distance, Cancelled, Diverted, ArrDel15
        (2013, 1, D(2013, 1, 1), 100.0, 0.0, 0.0, 0),
        (2013, 1, D(2013, 1, 1), 100.0, 1.0, 1.0, None),
        (2013, 1, D(2013, 1, 1), 100.0, 0.0, 1.0, None),
        (2013, 1, D(2013, 1, 1), 100.0, 0.0, 0.0, None),
        (None, 1, D(2013, 1, 1), 100.0, 0.0, 0.0, 1),
        (2013, 13, D(2013, 1, 1), 100.0, 0.0, 0.0, 1),
        (2013, None, D(2013, 1, 1), 100.0, 0.0, 0.0, 1),
        (2013, 2, None, 100.0, 0.0, 0.0, 1),
        (2013, 2, D(2013, 2, 1), -1.0, 0.0, 0.0, 1),
    ]
    df = spark.createDataFrame(
        rows, "Year int, Month int, FlightDate date, Distance double, Cancelled double, Diverted double, ArrDel15 int"
    )
    got = df.select(airline.exclusion_reason(df).alias("excluded"), airline.invalid_reason(df).alias("invalid"))
    expected = spark.createDataFrame(
        [
            (None, None), ("cancelled", None), ("diverted", None), ("missing_arrival", None),
            (None, "missing value in Year"), (None, "invalid Month"), (None, "invalid Month"),
            (None, "invalid FlightDate"), (None, "negative Distance"),
        ],
        "excluded string, invalid string",
    )
    assert_df_equality(got, expected, ignore_nullable=True)


def test_tag_rows_sets_status_reason_and_raw_line(spark):
    # A parse failure keeps its raw line; a failed check keeps its fields as name=value.
    df = spark.createDataFrame(
        [(1, 2, None, None, None), (3, None, "wrong token count: 1", "3", None), (5, 6, None, None, "bad x"),
         (None, 8, None, None, "bad x")],
        f"x int, y int, {REASON} string, {RAW} string, check string",
    )
    quarantine = F.coalesce(F.col(REASON), F.col("check"))
    excluded = F.when(F.col("y").isNull(), F.lit("missing_label"))
    got = tag_rows(df, quarantine, excluded, ["x", "y"], [F.col("x"), F.col("y")])
    expected = spark.createDataFrame(
        [(1, 2, "", None, None, "accepted"),
         (3, None, "", "wrong token count: 1", "3", "quarantined"),
         (5, 6, "", "bad x", "x=5, y=6", "quarantined"),
         (None, 8, "", "bad x", "x=, y=8", "quarantined")],
        f"x int, y int, {SOURCE} string, {REASON} string, {RAW} string, {STATUS} string",
    )
    assert_df_equality(got, expected, ignore_nullable=True)


def test_tag_rows_excludes_rows_that_parsed_but_have_no_label(spark):
    df = spark.createDataFrame([(1, None, None, None)], f"x int, y int, {REASON} string, {RAW} string")
    excluded = F.when(F.col("y").isNull(), F.lit("missing_label"))
    got = tag_rows(df, F.col(REASON), excluded, ["x", "y"], [F.col("x"), F.col("y")])
    expected = spark.createDataFrame(
        [(1, None, "", "missing_label", None, "excluded")],
        f"x int, y int, {SOURCE} string, {REASON} string, {RAW} string, {STATUS} string",
    )
    assert_df_equality(got, expected, ignore_nullable=True)


def test_partition_values_only_on_accepted_rows(spark):
    df = spark.createDataFrame(
        [(1, 2013, 1, "accepted"), (2, 2013, 2, "quarantined"), (3, 2013, 3, "excluded")],
        f"x int, Year int, Month int, {STATUS} string",
    )
    expected = spark.createDataFrame(
        [(1, 2013, 1, "accepted"), (2, None, None, "quarantined"), (3, None, None, "excluded")],
        f"x int, Year int, Month int, {STATUS} string",
    )
    assert_df_equality(partitioned_if_accepted(df, ["Year", "Month"]), expected, ignore_nullable=True)


def test_byod_reasons(spark):
    df = spark.createDataFrame(
        [(None, "a", 1, 1), ("unparseable value in x", None, None, 1), (None, None, 2, None), (None, "a", None, 0)],
        f"{REASON} string, region string, day int, label int",
    )
    got = df.select(byod_quarantine_reason(["region", "day"]).alias("q"), byod_exclusion_reason("label").alias("e"))
    expected = spark.createDataFrame(
        [(None, None), ("unparseable value in x", None), ("missing value in region", "missing_label"),
         ("missing value in day", None)],
        "q string, e string",
    )
    assert_df_equality(got, expected, ignore_nullable=True)


# ---- the config: conf/ingest.yaml < --config FILE < flags (mljobs.config.load_config); no Spark

def ingest_config(argv):
    from mljobs.jobs_common import job_config

    spec = importlib.util.spec_from_file_location("jobs_ingest", ROOT / "jobs" / "ingest.py")
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    return job_config("ingest", entry.parse_args(["--input", "a.csv", "--table", "db.t", *argv]))


def test_config_rejects_an_unknown_yaml_key(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("max_bad_fraction: 0.2\npartition_columns: [Year]\n")
    with pytest.raises(MljobsError, match=r"unknown keys \['partition_columns'\]"):
        ingest_config(["--config", str(f)])


def test_config_flag_overrides_yaml(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("max_bad_fraction: 0.2\ndelimiter: ';'\n")
    cfg = ingest_config(["--config", str(f), "--max-bad-fraction", "0.3"])
    assert (cfg.max_bad_fraction, cfg.delimiter, cfg.inputs, cfg.full_name) == (0.3, ";", ["a.csv"], "db.t")


def test_config_partition_by_rule(tmp_path):
    """YAML partition_by applies in airline mode only; the flag in any mode, '' meaning none."""
    f = tmp_path / "c.yaml"
    f.write_text("partition_by: [Month]\n")
    assert ingest_config([]).partition_by == ["Year", "Month"]
    assert ingest_config(["--config", str(f)]).partition_by == ["Month"]
    assert ingest_config(["--config", str(f), "--partition-by", ""]).partition_by == []
    byod = ["--mode", "byod", "--label", "y"]
    assert ingest_config(["--config", str(f), *byod]).partition_by == []
    assert ingest_config(["--config", str(f), *byod, "--partition-by", "day, region"]).partition_by == ["day", "region"]
    assert ingest_config([*byod, "--features", "a,b"]).features == ["a", "b"]
