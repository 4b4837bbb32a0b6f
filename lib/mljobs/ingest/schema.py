"""The airline (BTS on-time performance) schema: types to parse, columns to keep."""
from __future__ import annotations

from pyspark.sql.types import DataType, DoubleType, IntegerType, StringType

# The 13 features and the label of the RAPIDS HPO airline workflow.
FEATURES = (
    "Year", "Quarter", "Month", "DayOfWeek", "Flight_Number_Reporting_Airline",
    "DOT_ID_Reporting_Airline", "OriginCityMarketID", "DestCityMarketID", "DepTime",
    "DepDelay", "DepDel15", "AirTime", "Distance",
)
LABEL = "ArrDel15"
# Kept for analysis (SHAP by carrier, drill-down by route); not model features.
ANALYSIS_COLUMNS = ("Reporting_Airline", "Origin", "Dest", "FlightDate")
PARTITION_BY = ("Year", "Month")

# How each BTS column we use is parsed. BTS writes flags as "1.00", so flags parse as
# double and become int afterwards. FlightDate is read as text and cast in SQL: the CSV
# reader's own date parsing costs more than the rest of the row. Columns not listed are
# read as strings.
PARSE_TYPES: dict[str, DataType] = {
    "Year": IntegerType(), "Quarter": IntegerType(), "Month": IntegerType(),
    "DayofMonth": IntegerType(), "DayOfWeek": IntegerType(), "FlightDate": StringType(),
    "Reporting_Airline": StringType(), "DOT_ID_Reporting_Airline": IntegerType(),
    "Flight_Number_Reporting_Airline": IntegerType(), "Origin": StringType(), "Dest": StringType(),
    "OriginCityMarketID": IntegerType(), "DestCityMarketID": IntegerType(),
    "DepTime": IntegerType(), "DepDelay": DoubleType(), "DepDel15": DoubleType(),
    "ArrDelay": DoubleType(), "ArrDel15": DoubleType(), "Cancelled": DoubleType(),
    "Diverted": DoubleType(), "AirTime": DoubleType(), "Distance": DoubleType(),
}

# Each requirement is satisfied by any one of the alternatives (others are derived).
REQUIRED: tuple[tuple[str, ...], ...] = (
    ("Year",), ("Month",), ("FlightDate", "DayofMonth"), ("Reporting_Airline",),
    ("DOT_ID_Reporting_Airline",), ("Flight_Number_Reporting_Airline",), ("Origin",), ("Dest",),
    ("OriginCityMarketID",), ("DestCityMarketID",), ("DepTime",), ("DepDelay",),
    ("ArrDel15", "ArrDelay"), ("AirTime",), ("Distance",),
)

# Output table: features, label, analysis columns; partition columns last (Hive layout).
OUTPUT_TYPES: dict[str, str] = {
    "Quarter": "int", "DayOfWeek": "int", "Flight_Number_Reporting_Airline": "int",
    "DOT_ID_Reporting_Airline": "int", "OriginCityMarketID": "int", "DestCityMarketID": "int",
    "DepTime": "int", "DepDelay": "double", "DepDel15": "int", "AirTime": "double",
    "Distance": "double", "ArrDel15": "int", "Reporting_Airline": "string", "Origin": "string",
    "Dest": "string", "FlightDate": "date", "Year": "int", "Month": "int",
}


def missing_required(columns) -> list[str]:
    """Requirements not met by the given column names, as 'A' or 'A|B'."""
    have = set(columns)
    return ["|".join(alts) for alts in REQUIRED if not have.intersection(alts)]
