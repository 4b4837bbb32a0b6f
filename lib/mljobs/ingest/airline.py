"""Airline transforms: DataFrame -> DataFrame, plain SQL expressions only (GPU-ready)."""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from mljobs.readers import safe_cast
from mljobs.ingest.schema import LABEL, OUTPUT_TYPES


def _has(df: DataFrame, name: str) -> bool:
    return name in df.columns


def with_flight_date(df: DataFrame) -> DataFrame:
    """FlightDate as a date: parsed from the file's text (NULL when invalid, then
    quarantined), or made from Year/Month/DayofMonth where the file has none."""
    if _has(df, "FlightDate"):
        if dict(df.dtypes)["FlightDate"] == "date":
            return df
        return df.withColumn("FlightDate", safe_cast(df.sparkSession, "FlightDate", "date"))
    return df.withColumn("FlightDate", F.make_date("Year", "Month", "DayofMonth"))


def with_calendar(df: DataFrame) -> DataFrame:
    """Quarter from Month and DayOfWeek (BTS: 1 = Monday) from FlightDate when absent."""
    if not _has(df, "Quarter"):
        df = df.withColumn("Quarter", F.floor((F.col("Month") - 1) / 3).cast("int") + 1)
    if not _has(df, "DayOfWeek"):
        # Spark's dayofweek is 1 = Sunday; BTS counts from Monday.
        df = df.withColumn("DayOfWeek", ((F.dayofweek("FlightDate") + 5) % 7 + 1).cast("int"))
    return df


def del15(delay: str) -> Column:
    return (F.col(delay) >= 15).cast("int")


def with_delay_flags(df: DataFrame) -> DataFrame:
    """DepDel15/ArrDel15 from the delays where the flag is missing (column or value)."""
    for flag, delay in (("DepDel15", "DepDelay"), (LABEL, "ArrDelay")):
        derived = del15(delay) if _has(df, delay) else F.lit(None).cast("int")
        given = F.col(flag).cast("int") if _has(df, flag) else F.lit(None).cast("int")
        df = df.withColumn(flag, F.coalesce(given, derived))
    return df


def exclusion_reason(df: DataFrame) -> Column:
    """Cancelled and diverted flights never arrive: no label, so they are excluded."""
    cancelled = F.col("Cancelled") == 1 if _has(df, "Cancelled") else F.lit(False)
    diverted = F.col("Diverted") == 1 if _has(df, "Diverted") else F.lit(False)
    return (
        F.when(cancelled, F.lit("cancelled"))
        .when(diverted, F.lit("diverted"))
        .when(F.col(LABEL).isNull(), F.lit("missing_arrival"))
    )


def invalid_reason(df: DataFrame) -> Column:
    """Parsed but impossible values, quarantined like parse failures."""
    return (
        F.when(F.col("Year").isNull(), F.lit("missing value in Year"))
        .when(F.col("Month").isNull() | ~F.col("Month").between(1, 12), F.lit("invalid Month"))
        .when(F.col("FlightDate").isNull(), F.lit("invalid FlightDate"))
        .when(F.col("Distance") < 0, F.lit("negative Distance"))
    )


def prepare(df: DataFrame) -> DataFrame:
    """Derived columns of the airline table, from whatever BTS columns the files have."""
    return df.transform(with_flight_date).transform(with_calendar).transform(with_delay_flags)


def output_columns(df: DataFrame) -> list[Column]:
    """The table's columns in order, cast to the table's types."""
    return [F.col(name).cast(t).alias(name) for name, t in OUTPUT_TYPES.items()]
