"""mljobs.arrowcsv on its own (no Spark): Java's number rules, Spark's line and field rules.
tests/test_ingest_arrow.py compares the whole Arrow reader with Spark's on corrupted files."""
from __future__ import annotations

import math

import pyarrow as pa
import pytest

from mljobs.arrowcsv import Lines, arrow_reads_like_spark, decompress, java_double, java_double_text, java_int, parse_file, tokenize


@pytest.mark.parametrize("text, value", [
    ("12", 12), ("-0", 0), ("+7", 7), ("007", 7), ("-2147483648", -2147483648), ("2147483647", 2147483647),
    ("\u0661\u0662", 12),  # Arabic-Indic digits: Character.digit takes them
    ("2147483648", None), (" 5", None), ("5 ", None), ("1e3", None), ("12.0", None), ("1_000", None), ("", None),
    ("+", None), ("--5", None),
])
def test_java_int(text, value):
    assert java_int(text) == value


@pytest.mark.parametrize("text, value", [
    ("1.5", 1.5), (" 12\t", 12.0), ("+.5e2", 50.0), ("5.", 5.0), ("1d", 1.0), ("2.5F", 2.5), ("0x1p3", 8.0),
    ("-0x.8p1", -1.0), ("Infinity", math.inf), ("-Infinity", -math.inf), ("Inf", math.inf), ("-Inf", -math.inf),
    ("1e400", math.inf),
    ("inf", None), ("+Inf", None), ("infinity", None), ("1.2.3", None), ("abc", None), ("0x10", None),
    ("\u0661", None), ("1_0", None), ("", None), ("e5", None),
])
def test_java_double(text, value):
    assert java_double(text) == value


@pytest.mark.parametrize("text", ["NaN", "+NaN", "-NaN", " NaN "])
def test_java_double_nan(text):
    assert math.isnan(java_double(text))


@pytest.mark.parametrize("value, text", [
    (1.0, "1.0"), (-5.0, "-5.0"), (0.001, "0.001"), (1e-4, "1.0E-4"), (9999999.0, "9999999.0"), (1e7, "1.0E7"),
    (-2.5e20, "-2.5E20"), (123.456, "123.456"), (0.0, "0.0"), (-0.0, "-0.0"), (math.inf, "Infinity"),
    (-math.inf, "-Infinity"), (math.nan, "NaN"), (1.2345678e-5, "1.2345678E-5"),
])
def test_java_double_text(value, text):
    assert java_double_text(value) == text


@pytest.mark.parametrize("line, fields", [
    ("a,b,c", ["a", "b", "c"]), ("a,,c,", ["a", None, "c", None]), ("", [None]),
    ('"a,b",c', ["a,b", "c"]), ('x"y,z', ['x"y', "z"]), ('"J\\"FK",x', ['J"FK', "x"]),
    # Spark's default escape is a backslash: a quote with text after it makes the field its text as typed
    ('"a""b",c', ['"a""b"', "c"]), ('"ab"c,d', ['"ab"c', "d"]), ('"a,b"c,d', ['"a,b"c', "d"]),
    ('1,"open', ["1", "open"]), ('1,"open,more', ["1", "open,more"]), ('"",x', [None, "x"]),
])
def test_tokenize(line, fields):
    assert tokenize(line, ",") == fields


@pytest.mark.parametrize("data, fast", [
    (b'"AA","JFK",1\r\n"",x,""\n', True), (b"a,b\n", True), (b'a,"A""B"\n', False), (b'a,"1"6\n', False),
    (b'N1"23,x\n', False), (b'a,"J\\"FK"\n', False), (b"a\\b,c\n", False),
])
def test_arrow_only_where_it_reads_like_spark(data, fast):
    assert arrow_reads_like_spark(data, ",") is fast


def test_truncated_archives_name_the_file():
    import gzip

    whole = gzip.compress(b"a,b\n1,2\n" * 1000)
    assert decompress(whole, "file:/x/ok.csv.gz").startswith(b"a,b\n1,2")
    with pytest.raises(ValueError, match="cannot decompress file:/x/cut.csv.gz: EOFError"):
        decompress(whole[: len(whole) // 2], "file:/x/cut.csv.gz")


def test_lines_split_as_hadoop():
    data = b"h\r\na\r\n\r\nb\rc\nd"
    lines = Lines(data)
    assert [lines.text(i) for i in range(len(lines))] == ["h", "a", "", "b", "c", "d"]
    assert [Lines(b"x\n").text(0)] == ["x"] and len(Lines(b"x\n")) == 1


def test_parse_file_rows_lines_and_reasons():
    header = ["Year", "Amount", "Name"]
    types = {"Year": pa.int32(), "Amount": pa.float64(), "Name": pa.string()}
    data = (b"Year,Amount,Name\r\n2013,1.5,a\r\n \r\n\r\n2013, 2 ,\"b,c\"\r\n2013,1\r\n"
            b"x,Infinity,d\r\n2014,inf,e\r\n2015,-Inf,f")
    parsed = parse_file(data, header, types)
    assert parsed.columns["Year"].to_pylist() == [2013, 2013, 2013, None, 2014, 2015]
    assert parsed.columns["Amount"].to_pylist() == [1.5, 2.0, 1.0, math.inf, None, -math.inf]  # short rows keep what they have
    assert parsed.columns["Name"].to_pylist() == ["a", "b,c", None, "d", "e", "f"]
    assert [parsed.lines.text(i) for i in parsed.line_of_row] == [
        "2013,1.5,a", '2013, 2 ,"b,c"', "2013,1", "x,Infinity,d", "2014,inf,e", "2015,-Inf,f"]
    assert parsed.malformed == {2: "wrong token count: 2 (expected 3)", 3: "unparseable value in Year",
                                4: "unparseable value in Amount"}


def test_parse_file_open_quote_stays_on_its_line():
    """pyarrow would run an open quote over the line end; Spark's records are lines."""
    header = ["a", "b", "c"]
    data = b'a,b,c\n1,"2,3\n4,5,6\n7,8"x,9\n'
    parsed = parse_file(data, header, {n: pa.int32() for n in header})
    assert parsed.columns["a"].to_pylist() == [1, 4, 7]
    assert parsed.columns["b"].to_pylist() == [None, 5, None]
    assert parsed.malformed == {0: "broken quoting", 2: "broken quoting"}
