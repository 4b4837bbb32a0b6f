"""The review snippets (vaderSentiment's sdist) and free text through `ingest --mode byod`."""
from __future__ import annotations

import csv

import pytest

from mljobs.datasets import reviews
from mljobs.ingest.job import IngestConfig, run_ingest

NASTY = [
    {"id": "n1", "text": 'commas, "quotes", and ""doubled"" ones', "rating": 1.5, "label": "positive"},
    {"id": "n2", "text": "an embedded\nnewline and a\r\nCRLF one", "rating": -2.0, "label": "negative"},
    {"id": "n3", "text": "non-ASCII: café, naïve, 日本語, emoji 👍, ‘curly’ — dash", "rating": 0.25, "label": "positive"},
    {"id": "n4", "text": 'a backslash \\ and \\"escaped\\" quote, a tab\there', "rating": -0.5, "label": "negative"},
    {"id": "n5", "text": "  leading and trailing spaces  ", "rating": 3.0, "label": "positive"},
    {"id": "n6", "text": '"starts and ends with quotes"', "rating": -1.0, "label": "negative"},
    {"id": "n7", "text": "a line ending in a comma,\n,\n\"\n", "rating": 2.0, "label": "positive"},
    {"id": "n8", "text": "# not a comment; ; semicolons | pipes", "rating": -3.25, "label": "negative"},
]


@pytest.fixture(scope="session")
def amazon():
    reviews.fetch()  # cached by scripts/bootstrap.sh; fetched (pip, sha256-checked) when absent
    return reviews.load("amazon")


def test_amazon_export_is_exact(amazon, tmp_path):
    assert len(amazon) == 3708
    assert amazon[0] == {"id": "1_1", "rating": -0.9, "label": "negative",
                         "text": "troubleshooting ad-2500 and ad-2600 no picture scrolling b/w."}
    assert amazon[-1] == {"id": "309_8", "rating": -2.75, "label": "negative",
                          "text": "it did lock up on me a couple of times, and then it just froze and now i'm out "
                                  "$ 300 for their piece of junk."}
    by_id = {r["id"]: r for r in amazon}
    assert by_id["1_8"]["rating"] == 0.1 and by_id["1_8"]["label"] == "positive"
    summary = reviews.export(tmp_path / "out", "amazon")
    assert summary["counts"]["amazon"] == reviews.COUNTS["amazon"]
    assert reviews.COUNTS["amazon"] == {"rows": 3708, "positive": 2128, "negative": 1482, "unlabelled": 98}
    with open(tmp_path / "out" / "amazon_reviews.csv", newline="", encoding="utf-8") as f:
        back = list(csv.DictReader(f))
    assert [(r["id"], r["text"], float(r["rating"]), r["label"] or None) for r in back] == \
        [(r["id"], r["text"], r["rating"], r["label"]) for r in amazon]


def test_movies_counts():
    rows = reviews.load("movies")
    counts = {k: sum(r["label"] == k for r in rows) for k in ("positive", "negative")}
    assert len(rows) == 10605 and counts == {"positive": 5242, "negative": 5326}
    assert sum(r["label"] is None for r in rows) == 37
    assert rows[0]["id"] == "1" and rows[0]["rating"] == 2.26666666667


def test_nasty_text_round_trips_through_byod_ingest(spark, tmp_path, amazon):
    src = tmp_path / "in"
    src.mkdir()
    rows = NASTY + amazon[:50]
    reviews.write_csv(rows, src / "reviews.csv")
    s = run_ingest(spark, IngestConfig(inputs=[str(src)], table="t_text.reviews", mode="byod", label="label"),
                   progress=lambda m: None)
    assert s["rows_quarantined"] == 0 and s["rows_accepted"] == len(rows)
    got = {r["id"]: (r["text"], r["rating"], r["label"]) for r in spark.table("t_text.reviews").collect()}
    assert got == {r["id"]: (r["text"], r["rating"], r["label"]) for r in rows}
    types = {f.name: f.dataType.simpleString() for f in spark.table("t_text.reviews").schema}
    assert types == {"id": "string", "text": "string", "rating": "double", "label": "string"}
