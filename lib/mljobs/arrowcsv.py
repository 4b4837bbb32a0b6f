"""CSV parsed with pyarrow in the Python workers, the way Spark's CSV reader parses it.

Spark's reader (line records, PERMISSIVE mode, explicit types) is what the jobs' tables and
quarantine rows are defined by; this module reproduces it at pyarrow's speed, so a job can
parse in its Python workers and get the same rows, the same NULLs and the same malformed rows:

* a record is a line (``\\n``, ``\\r\\n`` or ``\\r``); the first non-blank line of a file is its
  header; lines that are blank after Java's ``trim`` are skipped; a quote opens a field only at
  its start, a backslash escapes a quote inside it, and a field with any other quote inside is
  kept as typed (see :func:`tokenize`);
* an empty field is NULL; integers parse as Java's ``Integer.parseInt``, doubles as
  ``Double.parseDouble`` (surrounding control characters and spaces, ``1d``, ``0x1p3``,
  ``Infinity``) plus Spark's own spellings ``NaN``, ``Inf`` and ``-Inf``;
* a row is malformed when its field count differs from the header's or a typed value does not
  parse; its line is kept (:func:`malformed_reason` says why, as mljobs.readers does in SQL).

The common spellings are converted vectorised with Arrow compute; only values outside them
(rare: whitespace, ``+7``, ``Infinity``, garbage) take the per-value Java-rule path.
"""
from __future__ import annotations

import bz2
import gzip
import math
import re
from dataclasses import dataclass
from functools import cached_property
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

JAVA_SPACE = "".join(map(chr, range(33)))  # what Java's String.trim() strips
INT32 = (-(2**31), 2**31 - 1)
_INT_FAST = r"^-?[0-9]{1,9}$"
_DOUBLE_FAST = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_JAVA_INT = re.compile(r"[+-]?\d+")  # Character.digit takes any Unicode decimal digit, as \d does
_JAVA_DECIMAL = re.compile(r"[+-]?(NaN|Infinity|(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[fFdD]?)", re.ASCII)
_JAVA_HEX = re.compile(r"([+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?\d+)[fFdD]?", re.ASCII)
_SPARK_DOUBLE = {"NaN": math.nan, "Inf": math.inf, "-Inf": -math.inf}  # CSV options nanValue etc.


def java_int(text: str) -> int | None:
    """Integer.parseInt, or None where it throws."""
    if not _JAVA_INT.fullmatch(text):
        return None
    value = int(text)
    return value if INT32[0] <= value <= INT32[1] else None


def java_double(text: str) -> float | None:
    """Spark's CSV double: its NaN/Inf spellings, else Double.parseDouble; None where it throws."""
    if text in _SPARK_DOUBLE:
        return _SPARK_DOUBLE[text]
    t = text.strip(JAVA_SPACE)
    m = _JAVA_DECIMAL.fullmatch(t)
    if m:
        body = t.rstrip("fFdD") if m.group(2) else t
        return float(body.replace("Infinity", "inf"))
    m = _JAVA_HEX.fullmatch(t)
    return float.fromhex(m.group(1)) if m else None


def java_double_text(x: float) -> str:
    """Double.toString (what Spark's cast to string writes)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "-0.0" if math.copysign(1, x) < 0 else "0.0"
    if 1e-3 <= abs(x) < 1e7:
        s = repr(x)
        return s if "." in s or "e" in s else s + ".0"
    _, digits, exponent = Decimal(repr(abs(x))).normalize().as_tuple()
    text = "".join(map(str, digits))
    sign = "-" if x < 0 else ""
    return f"{sign}{text[0]}.{text[1:] or '0'}E{len(text) - 1 + exponent}"


def _convert(col: pa.Array, fast: str, fast_type: pa.DataType, slow, out_type: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """Strings -> out_type by Java's rules; also which non-NULL strings did not parse."""
    matched = pc.fill_null(pc.match_substring_regex(col, fast), False)
    values = pc.cast(pc.if_else(matched, col, pa.scalar(None, pa.string())), fast_type)
    given = col.is_valid().to_numpy(zero_copy_only=False)
    ok = matched.to_numpy(zero_copy_only=False).copy()
    slow_rows = np.flatnonzero(given & ~ok)
    if not slow_rows.size:
        return values.cast(out_type), given & ~ok
    arr = values.fill_null(0).to_numpy(zero_copy_only=False).astype(fast_type.to_pandas_dtype(), copy=True)
    for i, text in zip(slow_rows, col.take(pa.array(slow_rows)).to_pylist()):
        parsed = slow(text)
        if parsed is not None:
            arr[i], ok[i] = parsed, True
    return pa.array(arr, mask=~ok, type=out_type), given & ~ok


def parse_typed(col: pa.Array, kind: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """A string column as int32 / double / string, and the rows whose value did not parse. Any
    other kind (a date) is only a hint for pyarrow's typed read: where that fails, the column
    stays text for the caller to convert, and its values never make a row malformed."""
    if kind == pa.int32():
        return _convert(col, _INT_FAST, pa.int64(), java_int, pa.int32())
    if kind == pa.float64():
        return _convert(col, _DOUBLE_FAST, pa.float64(), java_double, pa.float64())
    return col, np.zeros(len(col), dtype=bool)


# ---------------------------------------------------------------------------- lines


class Lines:
    """A file's lines (Hadoop's LineReader: ``\\n``, ``\\r\\n`` or ``\\r`` ends one), as byte
    spans, found when first asked for (most files never need them: see parse_file)."""

    def __init__(self, data: bytes):
        self.data = data

    @cached_property
    def _spans(self) -> tuple[np.ndarray, np.ndarray]:
        data = self.data
        a = np.frombuffer(data, dtype=np.uint8)
        nl = np.flatnonzero(a == 10)
        if b"\r" in data:
            cr = np.flatnonzero(a == 13)
            lone = cr[(cr + 1 >= a.size) | (a[np.minimum(cr + 1, a.size - 1)] != 10)]
            term = np.sort(np.concatenate([nl, lone]))
            ends = term - ((a[np.maximum(term - 1, 0)] == 13) & (a[term] == 10) & (term > 0))
        else:
            term = ends = nl
        starts = np.concatenate([[0], term + 1])
        ends = np.concatenate([ends, [a.size]])
        if starts[-1] >= a.size:  # nothing after the last terminator
            starts, ends = starts[:-1], ends[:-1]
        return starts.astype(np.int64), ends.astype(np.int64)

    @property
    def starts(self) -> np.ndarray:
        return self._spans[0]

    @property
    def ends(self) -> np.ndarray:  # exclusive, terminator left out
        return self._spans[1]

    def __len__(self) -> int:
        return len(self.starts)

    def text(self, i: int) -> str:
        return self.data[self.starts[i]:self.ends[i]].decode("utf-8", "replace")

    def blank(self, i: int) -> bool:
        return not self.text(i).strip(JAVA_SPACE)


def decompress(data: bytes, path: str) -> bytes:
    """The file's bytes, decompressed as Spark would by its extension."""
    low = path.lower()
    try:
        if low.endswith(".gz"):
            return gzip.decompress(data)
        if low.endswith(".bz2"):
            return bz2.decompress(data)
    except (OSError, EOFError, ValueError) as exc:  # truncated or not compressed at all: name the file
        raise ValueError(f"cannot decompress {path}: {type(exc).__name__}: {exc}") from None
    return data


# ---------------------------------------------------------------------------- records


def tokenize(line: str, delimiter: str) -> list[str | None]:
    """One line's fields as Spark's parser reads them (empty -> None). A quote opens a field
    only at its start; inside, a backslash escapes a quote; the field ends at a quote followed
    by the delimiter or the line end. Any other quote inside makes the field its text as typed,
    up to the next delimiter (univocity's STOP_AT_DELIMITER), and a quote left open runs to the
    end of the line."""
    out: list[str | None] = []
    i, n = 0, len(line)
    while True:
        end = line.find(delimiter, i)
        end = n if end < 0 else end
        if i < n and line[i] == '"':
            value, close = _quoted(line, i + 1, delimiter)
            if close is None:
                end = n
            elif close < n and line[close] != delimiter:
                end = line.find(delimiter, close)
                end = n if end < 0 else end
                value = line[i:end]
            else:
                end = close
        else:
            value = line[i:end]
        out.append(value if value != "" else None)
        if end >= n:
            return out
        i = end + 1
        if i == n:
            out.append(None)
            return out


def _quoted(line: str, i: int, delimiter: str) -> tuple[str, int | None]:
    """A quoted field's value from just after its opening quote, and where its closing quote
    ends (None: never closed)."""
    parts = []
    while True:
        k = line.find('"', i)
        if k < 0:
            parts.append(line[i:])
            return "".join(parts).replace('\\"', '"'), None
        if k > i and line[k - 1] == "\\":
            parts.append(line[i:k - 1] + '"')
            i = k + 1
            continue
        parts.append(line[i:k])
        return "".join(parts), k + 1


def arrow_reads_like_spark(data: bytes, delimiter: str) -> bool:
    """Whether pyarrow (no escape character, no doubled quotes) reads these bytes as Spark's
    parser would: no backslash, and every quote at the start or the end of a field (a quote
    with text on both sides is read by rules pyarrow does not have: see tokenize)."""
    if b"\\" in data:
        return False
    if b'"' not in data:
        return True
    a = np.frombuffer(data, dtype=np.uint8)
    q = np.flatnonzero(a == ord('"'))
    edge = np.zeros(256, dtype=bool)
    edge[[10, 13, *delimiter.encode()]] = True
    before = edge[a[np.maximum(q - 1, 0)]] | (q == 0)
    after = edge[a[np.minimum(q + 1, a.size - 1)]] | (q == a.size - 1)
    return bool(np.all(before | after))


def malformed_reason(raw: str, header: list[str], typed: set[str], unparsed: set[str], delimiter: str) -> str:
    """mljobs.readers.malformed_reason for one line (the same rules, in Python)."""
    if raw.count('"') % 2:
        return "broken quoting"
    tokens = re.sub('"[^"]*"', "", raw).count(delimiter) + 1
    if tokens != len(header):
        return f"wrong token count: {tokens} (expected {len(header)})"
    parts = raw.split(delimiter)
    which = [name for i, name in enumerate(header)
             if name in typed and name in unparsed and i < len(parts) and parts[i].strip(" ") != ""]
    return "unparseable value in " + ", ".join(which) if which else "malformed row"


@dataclass
class Parsed:
    """A file's data rows: the typed columns, the line of each row, and the malformed rows
    (their line, their reason) in line order."""

    columns: dict[str, pa.Array]
    line_of_row: np.ndarray
    malformed: dict[int, str]  # row -> reason
    lines: Lines
    header: list[str]
    delimiter: str

    def fields(self, r: int) -> list[str | None]:
        """Row r's fields as strings (tokenized again: for the rare row that needs them all)."""
        return tokenize(self.lines.text(self.line_of_row[r]), self.delimiter)

    def __len__(self) -> int:
        return len(self.line_of_row)


def parse_file(data: bytes, header: list[str], types: dict[str, pa.DataType], delimiter: str = ",") -> Parsed:
    """Parse a CSV file's bytes (header included) as Spark would: the columns of ``header``
    named in ``types``, typed so (the other columns are checked for their count only)."""
    lines = Lines(data)
    body, start = _body(lines)
    wanted = {n: t for n, t in types.items() if n in header}
    arrow = arrow_reads_like_spark(data, delimiter)
    read = (arrow and _arrow_read(lines, body, start, header, wanted, delimiter)  # typed by pyarrow: the common case
            or arrow and _arrow_read(lines, body, start, header, {n: pa.string() for n in wanted}, delimiter)  # a value pyarrow refuses
            or _python_read(lines, body, header, wanted, delimiter))  # records that are not lines, escapes
    cols, rows, wrong = read
    typed = {n for n, t in wanted.items() if t in (pa.int32(), pa.float64())}  # dates: see parse_typed
    columns, unparsed = {}, {}
    for name, kind in wanted.items():
        columns[name], bad = _typed(cols[name], kind, lines, rows, header.index(name), delimiter)
        for r in np.flatnonzero(bad):
            unparsed.setdefault(int(r), set()).add(name)
    for r in wrong:  # their values were read loosely: which of them Java refuses
        fields = tokenize(lines.text(rows[r]), delimiter)
        unparsed.setdefault(r, set()).update(
            n for n in typed if header.index(n) < len(fields) and fields[header.index(n)] is not None
            and _loose(fields[header.index(n)], wanted[n]) is None)
    malformed = {}
    for r in sorted(set(unparsed) | set(wrong)):
        raw = lines.text(rows[r])
        malformed[r] = malformed_reason(raw, header, typed, unparsed.get(r, set()), delimiter)
    return Parsed(columns, rows, malformed, lines, header, delimiter)


def _body(lines: Lines) -> tuple[np.ndarray, int]:
    """The indices of the data lines (after the header: the first non-blank line; empty lines
    left out, as pyarrow skips them) and the byte where the first one starts. A file without
    carriage returns or empty lines is counted without finding its lines."""
    data = lines.data
    first_end = data.find(b"\n")
    if b"\r" not in data and b"\n\n" not in data and first_end > 0 and data[:first_end].strip(JAVA_SPACE.encode()):
        count = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
        return np.arange(1, count, dtype=np.int64), first_end + 1
    first = next((i for i in range(len(lines)) if lines.ends[i] > lines.starts[i] and not lines.blank(i)), len(lines))
    body = np.arange(first + 1, len(lines))
    body = body[lines.ends[body] > lines.starts[body]]
    return body, int(lines.starts[body[0]]) if body.size else len(data)


def _typed(col: pa.Array, kind: pa.DataType, lines: Lines, rows: np.ndarray, j: int, delimiter: str):
    """The column as ``kind`` by Java's rules, and the rows whose value did not parse. A column
    pyarrow typed itself is right except where it read a non-finite double: Java spells
    those differently ('Infinity', not 'inf'), so their text is looked at again."""
    if col.type == pa.string():
        return parse_typed(col, kind)
    bad = np.zeros(len(col), dtype=bool)
    if kind != pa.float64():
        return col, bad
    x = col.fill_null(0).to_numpy(zero_copy_only=False)
    odd = np.flatnonzero(~np.isfinite(x))
    if not odd.size:
        return col, bad
    x, valid = x.copy(), col.is_valid().to_numpy(zero_copy_only=False).copy()
    for r in odd:
        value = java_double(tokenize(lines.text(rows[r]), delimiter)[j])
        valid[r], bad[r] = value is not None, value is None
        x[r] = value if value is not None else 0.0
    return pa.array(x, mask=~valid), bad


def _arrow_read(lines: Lines, body: np.ndarray, start: int, header: list[str], types: dict[str, pa.DataType],
                delimiter: str):
    """pyarrow's parse of the body lines: (columns, line of each row, rows of the wrong field
    count), or None when a value does not convert or the records are not the lines (a quote
    left open runs over line ends in pyarrow, never in Spark)."""
    if not body.size:
        return {n: pa.array([], t) for n, t in types.items()}, body, {}
    rejected: list[tuple[int, str]] = []

    def handler(row):
        rejected.append((row.number - 1, row.text))
        return "skip"

    buf = pa.BufferReader(pa.py_buffer(lines.data).slice(start))  # no copy
    try:
        table = pacsv.read_csv(
            buf,
            read_options=pacsv.ReadOptions(column_names=header, use_threads=False, block_size=1 << 26),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, double_quote=False, invalid_row_handler=handler),
            convert_options=pacsv.ConvertOptions(column_types=types, include_columns=list(types), null_values=[""],
                                                 strings_can_be_null=True, quoted_strings_can_be_null=True),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    if table.num_rows + len(rejected) != body.size:
        return None
    keep = np.ones(body.size, dtype=bool)
    keep[[i for i, _ in rejected]] = False
    wrong_lines = [body[i] for i, text in rejected if text.strip(JAVA_SPACE)]
    cols = {n: table.column(n).combine_chunks() for n in types}
    return _with_rejected(cols, body[keep], wrong_lines, lines, header, delimiter)


def _with_rejected(cols: dict, rows: np.ndarray, wrong_lines: list, lines: Lines, header: list[str], delimiter: str):
    """Append the rows of the wrong field count (Spark keeps them, malformed) in line order."""
    if not wrong_lines:
        return cols, rows, {}
    extra = [tokenize(lines.text(i), delimiter) for i in wrong_lines]
    for name in cols:
        j = header.index(name)
        added = [_loose(t[j], cols[name].type) if j < len(t) else None for t in extra]
        cols[name] = pa.concat_arrays([cols[name], pa.array(added, cols[name].type)])
    all_rows = np.concatenate([rows, np.asarray(wrong_lines, dtype=np.int64)])
    order = np.argsort(all_rows, kind="stable")
    cols = {n: c.take(pa.array(order)) for n, c in cols.items()}
    position = np.empty_like(order)
    position[order] = np.arange(order.size)
    wrong = {int(position[rows.size + k]) for k in range(len(wrong_lines))}
    return cols, all_rows[order], wrong


def _loose(text: str | None, kind: pa.DataType):
    """A field of a row of the wrong field count, in its column's type (None where it does
    not parse: the row is malformed anyway)."""
    if text is None or kind == pa.string():
        return text
    if kind not in (pa.int32(), pa.float64()):
        return None
    return java_int(text) if kind == pa.int32() else java_double(text)


def _python_read(lines: Lines, body: np.ndarray, header: list[str], types: dict[str, pa.DataType], delimiter: str):
    """The slow path: every body line tokenized in Python (files pyarrow reads otherwise);
    the columns as strings."""
    rows, tokens, wrong = [], [], set()
    for i in body:
        text = lines.text(i)
        if not text.strip(JAVA_SPACE):
            continue
        t = tokenize(text, delimiter)
        if len(t) != len(header):
            wrong.add(len(rows))
        rows.append(i)
        tokens.append(t)
    index = {name: header.index(name) for name in types}
    cols = {name: pa.array([t[j] if j < len(t) else None for t in tokens], pa.string()) for name, j in index.items()}
    return cols, np.asarray(rows, dtype=np.int64), wrong
