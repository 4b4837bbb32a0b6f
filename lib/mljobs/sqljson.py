"""``to_json`` of a flat struct, written with plain string functions.

Spark's ``to_json`` (``StructsToJson``) is off by default in the RAPIDS Accelerator
(beta), and one such expression keeps its whole projection on the CPU. ``json_object``
builds the same text with ``concat``/``replace``/``cast``, which the GPU runs: fields in
order, NULL fields left out (Spark's ``ignoreNullFields``), strings escaped as Jackson
escapes them (``\\"``, ``\\\\``, ``\\b \\t \\n \\f \\r``, other control characters as
``\\u00XX``), numbers and booleans as their string cast, and NaN / ±Infinity quoted.
Tested equal to ``to_json`` on the CPU. Other types (decimals, dates, nested values)
return None: the caller keeps ``to_json`` for those.
"""
from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

_SHORT = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}
# Backslash first, so the backslashes the other escapes add are not doubled.
ESCAPES = [("\\", "\\\\"), ('"', '\\"')] + [(chr(i), _SHORT.get(i, f"\\u{i:04X}")) for i in range(0x20)]
_INTEGRAL = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.BooleanType)
_FLOATING = (T.FloatType, T.DoubleType)


def escape_text(text: str) -> str:
    """A Python string escaped like ``json_string`` escapes a column (for field names)."""
    for search, repl in ESCAPES:
        text = text.replace(search, repl)
    return text


def json_string(col: Column) -> Column:
    """A string column as a JSON string literal, quotes included (NULL stays NULL)."""
    for search, repl in ESCAPES:
        col = F.replace(col, F.lit(search), F.lit(repl))
    return F.concat(F.lit('"'), col, F.lit('"'))


def json_value(col: Column, data_type: T.DataType) -> Column | None:
    """The JSON text of one value as ``to_json`` writes it, or None for unsupported types."""
    if isinstance(data_type, T.StringType):
        return json_string(col)
    if isinstance(data_type, _INTEGRAL):
        return col.cast("string")
    if isinstance(data_type, _FLOATING):
        text = col.cast("string")
        return F.when(F.isnan(col) | (F.abs(col) == float("inf")), F.concat(F.lit('"'), text, F.lit('"'))).otherwise(text)
    return None


def json_object(fields: list[tuple[str, Column, T.DataType]]) -> Column | None:
    """``to_json(struct(...))`` of (name, column, type) fields; None when a type is unsupported."""
    parts = []
    for name, col, data_type in fields:
        value = json_value(col, data_type)
        if value is None:
            return None
        parts.append(F.concat(F.lit(f'"{escape_text(name)}":'), value))  # NULL value: concat_ws skips it
    return F.concat(F.lit("{"), F.concat_ws(",", *parts), F.lit("}")) if parts else F.lit("{}")
