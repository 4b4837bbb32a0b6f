"""Request bodies to raw feature columns, and probabilities to response bodies.

Every decoder returns one sequence of raw values per feature, in the artifact's feature order;
``mljobs.models.inference.encode_columns`` turns them into the booster's matrix, as for the
batch predict job. A body that cannot be read raises ``HttpError`` naming the problem.
"""
from __future__ import annotations

import csv
import io
import json
import math
from typing import Sequence

from mljobs.serve.http import HttpError

CSV, JSON = "text/csv", "application/json"
PARQUET, ARROW = "application/x-parquet", "application/vnd.apache.arrow.stream"
CONTENT_TYPES = (CSV, JSON, PARQUET, ARROW)
# pyarrow's CSV reader costs ~1 ms to set up; Python's csv module wins below about 100 rows.
ARROW_CSV_FROM_BYTES = 8 * 1024
ACCEPTS = (CSV, JSON)


def decode(media_type: str, body: bytes, features: Sequence[str], strings: Sequence[str] = ()) -> list[Sequence]:
    """The body's rows as raw columns (one per feature, model order); ``strings``: the string features."""
    if media_type == CSV:
        fast = fast_csv_columns(body, features, strings) if len(body) >= ARROW_CSV_FROM_BYTES else None
        return fast or csv_columns(_text(body), features)
    if media_type == JSON:
        return json_columns(_json(body), features)
    check_content_type(media_type)
    return arrow_columns(_arrow_table(media_type, body), features)


def check_content_type(media_type: str) -> None:
    if media_type not in CONTENT_TYPES:
        raise HttpError(415, f"unsupported Content-Type {media_type or '(none)'!r}; use one of {', '.join(CONTENT_TYPES)}")


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HttpError(400, f"the body is not UTF-8 text (byte {exc.start})") from None


def _expected(features: Sequence[str]) -> str:
    shown = ", ".join(features[:20]) + (", ..." if len(features) > 20 else "")
    return f"{len(features)} values ({shown})"


def rows_to_columns(rows: list[Sequence], features: Sequence[str]) -> list[Sequence]:
    """Rows of values in feature order, checked for length, as columns."""
    if not rows:
        raise HttpError(400, "no rows in the body")
    n = len(features)
    for i, row in enumerate(rows):
        if len(row) != n:
            raise HttpError(400, f"row {i + 1}: expected {_expected(features)}, got {len(row)}")
    return [list(c) for c in zip(*rows)]


def csv_columns(text: str, features: Sequence[str]) -> list[Sequence]:
    """Rows of feature values in model order, no header (SageMaker's XGBoost container's CSV)."""
    try:
        rows = [r for r in csv.reader(io.StringIO(text)) if r]
    except csv.Error as exc:
        raise HttpError(400, f"malformed CSV: {exc}") from None
    if rows and len(rows[0]) == len(features) and [v.strip() for v in rows[0]] == list(features):
        raise HttpError(400, "the CSV has a header row; send rows of values only, in the model's feature order")
    return rows_to_columns(rows, features)


def fast_csv_columns(body: bytes, features: Sequence[str], strings: Sequence[str]) -> list[Sequence] | None:
    """Well-formed CSV through pyarrow's parser (numbers as float64, string features as text);
    None for anything else, which the Python reader then reports row by row."""
    import pyarrow as pa
    from pyarrow import csv as pacsv

    types = {f: (pa.string() if f in strings else pa.float64()) for f in features}
    try:
        table = pacsv.read_csv(pa.BufferReader(body), read_options=pacsv.ReadOptions(column_names=list(features), use_threads=False),
                               convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True))
    except (pa.ArrowException, ValueError):
        return None
    return arrow_columns(table, features) if table.num_rows else None


def _json(body: bytes):
    try:
        return json.loads(_text(body))
    except json.JSONDecodeError as exc:
        raise HttpError(400, f"malformed JSON: {exc}") from None


def json_columns(doc, features: Sequence[str]) -> list[Sequence]:
    """``{"instances": [[...], ...]}``, ``{"instances": [{...}, ...]}`` or records ``[{...}, ...]``."""
    rows = doc.get("instances") if isinstance(doc, dict) else doc
    if isinstance(doc, dict) and "instances" not in doc:
        raise HttpError(400, "a JSON object body needs an \"instances\" list")
    if not isinstance(rows, list):
        raise HttpError(400, "JSON body: expected a list of rows (lists or records), or {\"instances\": [...]}")
    if not rows:
        raise HttpError(400, "no rows in the body")
    if all(isinstance(r, dict) for r in rows):
        return records_to_columns(rows, features)
    for i, r in enumerate(rows):
        if not isinstance(r, list) or any(isinstance(v, (list, dict)) for v in r):
            raise HttpError(400, f"row {i + 1}: expected a list of values or a record, got {json.dumps(r)[:60]}")
    return rows_to_columns(rows, features)


def check_names(names: Sequence[str], features: Sequence[str], where: str) -> None:
    unknown = [c for c in names if c not in set(features)]
    missing = [f for f in features if f not in set(names)]
    if unknown:
        raise HttpError(400, f"{where}: unknown features {unknown[:10]}; the model's features are {list(features)}")
    if missing:
        raise HttpError(400, f"{where}: missing features {missing[:10]} (send null for a missing value)")


def records_to_columns(rows: list[dict], features: Sequence[str]) -> list[Sequence]:
    for i, r in enumerate(rows):
        if len(r) != len(features) or not all(f in r for f in features):
            check_names(list(r), features, f"record {i + 1}")
        if any(isinstance(v, (list, dict)) for v in r.values()):
            raise HttpError(400, f"record {i + 1}: values must be numbers, strings or null")
    return [[r[f] for r in rows] for f in features]


def _arrow_table(media_type: str, body: bytes):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if media_type == PARQUET:
            return pq.read_table(pa.BufferReader(body))
        with pa.ipc.open_stream(pa.BufferReader(body)) as reader:
            return reader.read_all()
    except (pa.ArrowException, OSError, ValueError) as exc:
        kind = "Parquet" if media_type == PARQUET else "an Arrow IPC stream"
        raise HttpError(400, f"the body is not {kind}: {str(exc).splitlines()[0][:200]}") from None


def arrow_columns(table, features: Sequence[str]) -> list[Sequence]:
    """A Parquet / Arrow table's columns named by feature (any order)."""
    import pyarrow as pa

    check_names(table.column_names, features, "columns")
    if len(set(table.column_names)) != len(table.column_names):
        raise HttpError(400, "columns: a feature is given twice")
    if table.num_rows == 0:
        raise HttpError(400, "no rows in the body")
    out = []
    for f in features:
        col = table.column(f)
        t = col.type
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
            out.append(col.cast(pa.float64()).to_numpy(zero_copy_only=False))  # null -> NaN
        else:
            out.append(col.to_pylist())
    return out


def render(accept: str, probability, threshold: float | None) -> tuple[str, bytes]:
    """(content type, body): one probability per line (``p,label`` with a threshold) or JSON."""
    probs = [float(p) for p in probability]
    labels = None if threshold is None else [int(p > threshold) for p in probs]
    if accept == CSV:
        lines = [repr(p) for p in probs] if labels is None else [f"{p!r},{k}" for p, k in zip(probs, labels)]
        return CSV, ("\n".join(lines) + "\n").encode()
    preds = [{"probability": p} for p in probs] if labels is None else \
        [{"probability": p, "label": k} for p, k in zip(probs, labels)]
    return JSON, (json.dumps({"predictions": preds}) + "\n").encode()


def parse_threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise HttpError(400, f"threshold must be a number between 0 and 1, got {text[:40]!r}")
    return value
