#!/usr/bin/env python3
"""Benchmark: our Spark ingest (``mljobs.ingest.job.run_ingest``) against plain Spark and
the straightforward pyarrow and pandas ways of turning the same CSV files into Parquet.

Usage::

    PYTHONPATH=lib .venv/bin/python bench/ingest.py [--rows N [N ...]] [--quick]
        [--repeats K] [--chunk-rows C] [--workdir DIR] [--keep] [--json-out FILE]
        [--tools spark,plainspark,pyarrow,pandas] [--reader auto|arrow|spark]

For each size N: BTS-style CSV files are generated once with
``mljobs.datasets.airline.generate(dir, rows=N, seed=7, chunk_rows=C)`` (files of C
rows, default 500,000, so Spark gets several files), then each tool converts the SAME
files to Parquet, ``--repeats`` times (interleaved: spark, plainspark, pyarrow, pandas,
spark, ..., so background load hits all tools alike); the median time is reported.

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
  as spark: ``spark.read.schema(<the 26 BTS columns: our ingest's parse types for the
  18 kept columns, strings elsewhere>).option("header", True).csv(files)``, the 18
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
from pathlib import Path

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


def plain_schema():
    """The 26 BTS columns in file order: our ingest's parse type for each of the table's 18
    columns, string for the others."""
    from pyspark.sql.types import StringType, StructField, StructType

    from mljobs.datasets.airline import BTS_COLUMNS
    from mljobs.ingest import schema

    return StructType([
        StructField(c, schema.PARSE_TYPES.get(c, StringType()) if c in schema.OUTPUT_TYPES else StringType(), True)
        for c in BTS_COLUMNS
    ])


def plain_columns() -> list:
    """The 18 columns of our table, cast to its types (FlightDate from its text by to_date)."""
    from pyspark.sql import functions as F

    from mljobs.ingest import schema

    return [F.to_date(c).alias(c) if t == "date" else F.col(c).cast(t).alias(c) for c, t in schema.OUTPUT_TYPES.items()]


def check_bts_header(path: str) -> None:
    """plainspark reads columns by position (Spark's enforceSchema): the files must be in BTS order."""
    from mljobs.datasets.airline import BTS_COLUMNS

    with open(path) as fh:
        header = fh.readline().rstrip("\r\n").split(",")
    if tuple(header) != tuple(BTS_COLUMNS):
        raise BenchError(f"{path}: header is not the 26 BTS columns in order: {header}")


def plainspark_once(spark, files: list[str], out: Path, n: int) -> dict:
    rm(out)
    read = spark.read.schema(plain_schema()).option("header", True)
    with RssPoller() as poller:
        t0 = time.perf_counter()
        read.csv(files).select(*plain_columns()).write.partitionBy("Year", "Month").parquet(str(out))
        seconds = time.perf_counter() - t0
    rows = spark.read.parquet(str(out)).count()
    rm(out)
    if rows != n:
        raise BenchError(f"plainspark wrote {rows:,} rows of {len(files)} file(s), expected {n:,}")
    return {"rows": rows, "seconds": seconds, "peak_rss_mb": poller.peak / 2**20}


# --------------------------------------------------------------------- driver


def ingest_machine_info() -> dict:
    import pandas
    import pyarrow
    import pyspark

    return machine_info(pyspark=pyspark.__version__, pyarrow=pyarrow.__version__, pandas=pandas.__version__)


def inputs_for(workdir: Path, n: int, chunk_rows: int) -> tuple[Path, list[str], float]:
    """Generate (or reuse, when a previous run with the same parameters left them) the CSVs."""
    from mljobs.datasets.airline import generate

    inputs = workdir / f"csv_{n}"
    marker = workdir / f"csv_{n}.json"
    want = {"rows": n, "seed": SEED, "chunk_rows": chunk_rows}
    reuse = False
    if marker.is_file() and inputs.is_dir():
        try:
            reuse = json.loads(marker.read_text()) == want
        except ValueError:
            reuse = False
    if reuse:
        log(f"  reusing {inputs} ({n:,} rows, seed {SEED})")
        gen_s = 0.0
    else:
        marker.unlink(missing_ok=True)
        t0 = time.perf_counter()
        generate(inputs, rows=n, seed=SEED, chunk_rows=chunk_rows, force=True, progress=True)
        gen_s = time.perf_counter() - t0
        marker.write_text(json.dumps(want))
        log(f"  generated {n:,} rows in {gen_s:.1f} s")
    files = sorted(str(p) for p in inputs.glob("part-*.csv"))
    if not files:
        raise BenchError(f"no CSV files in {inputs}")
    return inputs, files, gen_s


def rm(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def bench_size(spark, workdir: Path, n: int, args, kinds) -> dict:
    log(f"== {n:,} rows")
    inputs, files, gen_s = inputs_for(workdir, n, args.chunk_rows)
    csv_mb = sum(os.path.getsize(f) for f in files) / 1e6
    log(f"  {len(files)} CSV file(s), {csv_mb:,.1f} MB")
    runs: dict[str, list[dict]] = {t: [] for t in args.tools}
    if "plainspark" in runs:
        check_bts_header(files[0])
    for r in range(args.repeats):
        for tool in args.tools:
            if tool == "spark":
                res = spark_once(spark, inputs, n, args.reader)
            elif tool == "plainspark":
                res = plainspark_once(spark, files, workdir / f"out_plainspark_{n}", n)
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

    entry: dict = {"rows": n, "files": len(files), "csv_mb": round(csv_mb, 1), "generate_s": round(gen_s, 1)}
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
        f"load average {load_before}")
    spark = None
    try:
        kinds = column_kinds()
        spark_setup = {}
        if any(t in args.tools for t in SPARK_TOOLS):
            from mljobs.session import build_session

            t0 = time.perf_counter()
            from mljobs.config import C2, JAVA_OPTIONS

            # As ./spark-submit.sh ingest starts it: C2 on (mljobs.config.LOCAL_C2_JOBS).
            spark = build_session("bench", data_dir=workdir / "data", conf={JAVA_OPTIONS: C2})
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
