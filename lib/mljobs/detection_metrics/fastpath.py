"""The single-machine path: where both inputs are one local file each (CSV, or COCO JSON), the
Python workers read, check and match them and write the staged boxes themselves.

Spark's path (``job.load_inputs`` → ``match_frames``) parses both files in the JVM, casts and
checks every field in SQL, shuffles the rows by frame and sends them to Python for the
matching; on one machine most of its time is that traffic. Here, in two passes of plain
Python tasks: one task per input parses it (pyarrow's CSV reader, or ``json``), checks it and
saves it as an Arrow file; then each of the P tasks (one per core) memory-maps both, keeps the
frames that hash to it and matches them with the same engine (``matching.match_table``,
``coco.match_table``), writing ``part-<task>.parquet`` with the staged columns. No row passes
through the JVM and there is no shuffle; the job goes on from the staged Parquet exactly as
after Spark's path.

It only takes inputs it can prove clean: every row parses, every check of ``boxes`` passes,
no row repeats another. Anything else (a malformed or rejected row, a duplicate, quotes in a
CSV file, a layout it does not read) makes a task *decline*: the staging is removed and
Spark's path runs, which quarantines exactly as documented. Clean inputs get identical rows
either way (tests compare the two). A task holds a whole input's parsed columns, so inputs
over ``MAX_BYTES`` together take Spark's path.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
from pyspark.sql import SparkSession

from mljobs import coco, uris
from mljobs.detection_metrics import matching
from mljobs.detection_metrics.boxes import HELMET, Layout, _CLASS_NAMES, _SCORE_NAMES, _Columns, \
    detect_layout
from mljobs.detection_metrics.cocojson import GT_LAYOUT, PRED_LAYOUT, VIDEO, category_names, is_coco_json
from mljobs.detection_metrics.matching import MatchParams
from mljobs.io import list_input_files
from mljobs.readers import parse_header
from mljobs.fs import read_first_line
from mljobs.session import env_of

MAX_BYTES = 2 << 30  # both inputs together
_FRAME_LIMIT = 2_000_000_000
_TEXT = pa.dictionary(pa.int32(), pa.string())  # video and label: few distinct values, read 4x faster


class Declined(Exception):
    """The input is not provably clean: the Spark path takes it."""


@dataclass(frozen=True)
class Source:
    path: str            # local path
    layout: Layout
    header: tuple = ()   # CSV: the header's column names (empty for COCO JSON)


CURVES = "_curves"  # under the staged boxes: Spark's Parquet reader skips names starting with _


@dataclass(frozen=True)
class Plan:
    gt: Source
    pred: Source
    one_class: bool      # every box is class "helmet"
    params: MatchParams
    staged_types: tuple  # (name, Spark type) of the staged columns
    coco_only: bool = False  # COCO's matching alone: the per-frame columns stay NULL, no frame rows

    def run(self, spark: SparkSession, staged_dir: str, frames_dir: str, errors_dir: str
            ) -> tuple[str | None, list, dict]:
        """Write the staged boxes under ``staged_dir``, their frames' ``det_frames`` rows under
        ``frames_dir`` and their errors (``error_rows``) under ``errors_dir`` (all local);
        returns (None, the rows read per kind, as ``job.check_counts`` takes them, {"npig":
        the ground-truth rows per (class, video) for ``job.ground_truth_counts``, "videos":
        every video}), or (why it declined, [], {}). Two passes: each input parsed and checked
        once (one task per input, saved as Arrow under ``_inputs``, which Spark's Parquet reader
        skips), then one task per core matches the frames that hash to it."""
        root, frames_root, errors_root = (uris.local_path(d) for d in (staged_dir, frames_dir, errors_dir))
        if root is None or frames_root is None or errors_root is None:
            return "the staging directory is not local", [], {}
        work = os.path.join(root, "_inputs")
        for d in (work, frames_root, errors_root):
            os.makedirs(d, exist_ok=True)
        sc, plan = spark.sparkContext, self
        try:
            out = sc.parallelize(["gt", "pred"], 2).map(lambda role: plan.read(role, work)).collect()
            if not any(out):
                tasks = max(1, sc.defaultParallelism)
                out = sc.parallelize(range(tasks), tasks).map(
                    lambda i: plan.task(i, tasks, root, work, (frames_root, errors_root))).collect()
        finally:
            shutil.rmtree(work, ignore_errors=True)
        declined = next((w for w in out if isinstance(w, str)), None)
        if declined:
            return declined, [], {}
        return None, [{"kind": k, "_reason": None, "count": sum(n[k] for n in out)} for k in (0, 1)], {
            "npig": [row for n in out for row in n["npig"]], "videos": sorted({v for n in out for v in n["videos"]})}

    def read(self, role: str, work: str) -> str | None:
        """Pass 1: one input parsed, checked and saved (``<role>.arrow``); None, or why it declined."""
        try:
            if self.gt.layout.kind != "coco":
                _save(work, role, csv_boxes(self.gt if role == "gt" else self.pred, self.one_class))
            elif role == "gt":
                table, images, names = coco_ground_truth(self.gt.path, self.one_class)
                _save(work, "gt", table)
                _save(work, "images", pa.table({"id": images}))
                _save(work, "categories", pa.table({"id": list(names), "name": list(names.values())}))
            else:
                _save(work, "pred", pa.table(coco_result_fields(self.pred.path)))
        except Declined as why:
            return str(why) or "declined"
        return None

    def task(self, i: int, tasks: int, root: str, work: str, per_frame: tuple[str, str]) -> dict | str:
        """Pass 2: match the frames that hash to task i; write ``part-<i>.parquet`` of the
        boxes (without rows with ``coco_only``), ``curve_boxes`` and (under the two
        ``per_frame`` directories) their frames (whole here) and errors; the rows per kind,
        ``ground_truth_rows`` and the videos, or why it declined."""
        try:
            table = self.boxes(i, tasks, work)
        except Declined as why:
            return str(why) or "declined"
        matched = coco.match_table(table if self.coco_only else matching.match_table(table, self.params))
        # with coco_only the staged boxes feed only det_quarantine (empty: these inputs are
        # clean), and COCO's accumulation reads the Arrow files: no rows, just the schema
        boxes = matched.slice(0, 0) if self.coco_only else matched
        pq.write_table(staged(boxes, self.staged_types), os.path.join(root, f"part-{i:05d}.parquet"))
        os.makedirs(os.path.join(root, CURVES), exist_ok=True)
        _save(os.path.join(root, CURVES), f"part-{i:05d}", curve_boxes(matched))
        if not self.coco_only:
            for rows, folder in zip((frame_rows(matched), error_rows(matched)), per_frame):
                pq.write_table(rows, os.path.join(folder, f"part-{i:05d}.parquet"))
        kind = matched.column("kind").to_numpy()
        return {0: int((kind == 0).sum()), 1: int((kind == 1).sum()), "npig": ground_truth_rows(matched),
                "videos": pc.unique(matched.column("video")).cast(pa.string()).to_pylist()}

    def boxes(self, i: int, tasks: int, work: str) -> pa.Table:
        """This task's share of both inputs: normalised boxes of the frames that hash to it."""
        gt, pred = _load(work, "gt"), _load(work, "pred")
        if self.gt.layout.kind == "coco":
            cats = _load(work, "categories")
            names = dict(zip(cats.column("id").to_pylist(), cats.column("name").to_pylist()))
            fields = {c: pred.column(c).to_numpy() for c in pred.column_names}
            pred = coco_table(fields, _load(work, "images").column("id").to_numpy(), names, self.one_class, False)
        chunks = gt.column("video").chunks + pred.column("video").chunks
        videos = pa.array(sorted({v for c in chunks for v in c.dictionary.to_pylist()}), pa.string())

        def share(t):  # the frames that hash to task i (the same in every task)
            code = np.concatenate([pc.index_in(c.dictionary, value_set=videos).to_numpy(zero_copy_only=False)[
                c.indices.to_numpy(zero_copy_only=False)] for c in t.column("video").chunks] or [np.zeros(0)])
            return t.filter(pa.array((code.astype(np.int64) * 1_000_003 + t.column("frame").to_numpy()) % tasks == i))

        mine = pa.concat_tables([share(gt), share(pred).select(gt.column_names)]).unify_dictionaries()
        refuse_duplicates(mine)
        return mine


def curve_boxes(matched: pa.Table) -> pa.Table:
    """The detections COCO's accumulation reads (``coco.CURVE_BOXES``, c_rank >= 0), saved as
    Arrow under ``<staged>/_curves`` for ``job.local_curves`` (no Parquet decoding there)."""
    dets = matched.filter(pc.greater_equal(matched.column("c_rank"), 0))
    return pa.table({c: dets.column(c).cast(pa.string()) if c in ("video", "cls") else dets.column(c)
                     for c in coco.CURVE_BOXES})


def _save(work: str, name: str, table: pa.Table) -> None:
    table = table.unify_dictionaries()  # an Arrow file holds one dictionary per column
    with pa.OSFile(os.path.join(work, f"{name}.arrow"), "wb") as f, pa.ipc.new_file(f, table.schema) as out:
        out.write_table(table)


def _load(work: str, name: str) -> pa.Table:
    return load_arrow(os.path.join(work, f"{name}.arrow"))


def load_arrow(path: str) -> pa.Table:
    return pa.ipc.open_file(pa.memory_map(path)).read_all()


# ----------------------------------------------------------------------------- the plan


def plan(spark: SparkSession, cfg) -> Plan | None:
    """A Plan when both inputs are single local files this path reads (else None: the
    Spark path). Layout errors are raised here as the Spark path would raise them."""
    from mljobs.detection_metrics.job import STAGED_SCHEMA  # the staged columns: one definition

    if cfg.reader == "spark" or env_of(spark) != "local" or is_coco_json(cfg.gt) != is_coco_json(cfg.pred):
        return None
    gt = _source(spark, cfg.gt, "gt")
    pred = _source(spark, cfg.pred, "pred") if gt is not None else None  # errors in Spark's order
    if gt is None or pred is None or os.path.getsize(gt.path) + os.path.getsize(pred.path) > MAX_BYTES:
        return None
    lower = {c.lower() for c in gt.header}
    if gt.layout.kind == "image_labels" or lower & {"area", "iscrowd"} or (
            cfg.nfl_impact and not {"impact", "confidence", "visibility"} <= lower):
        return None  # Spark's path reads these (or says what is missing)
    one_class = cfg.merge_labels or gt.layout.single_class
    types = tuple(tuple(f.strip().split(" ")[:2]) for f in STAGED_SCHEMA.split(","))
    params = replace(cfg.params, coco=False)  # the figures come from COCO's own matching (coco.match_table)
    return Plan(gt, pred, one_class, params, types, cfg.coco_only)


def _source(spark: SparkSession, given: str, role: str) -> Source | None:
    path = uris.local_path(given)
    if path is None or not os.path.isfile(path):
        return None
    if is_coco_json(given):
        return Source(path, GT_LAYOUT if role == "gt" else PRED_LAYOUT)
    files = list_input_files(spark, [given], "auto", "local")
    if len(files) != 1 or files[0].format != "csv" or not path.lower().endswith(".csv"):
        return None
    first = read_first_line(spark, files[0].path)
    if not first or not first.strip():
        return None
    header = tuple(parse_header(first, ","))
    what = f"{'ground truth' if role == 'gt' else 'detections'} {given}"
    return Source(path, detect_layout(list(header), role, what), header)


# ----------------------------------------------------------------------------- CSV


def csv_boxes(src: Source, one_class: bool) -> pa.Table:
    """A CSV file's rows, normalised as ``boxes.normalize`` would; Declined unless every
    row is clean."""
    with open(src.path, "rb") as f:
        data = f.read()
    if not plain(data):
        raise Declined(f"{src.path}: quotes, escapes, tabs or spaces around fields, or leading blank lines")
    cols = _Columns(list(src.header))
    layout = src.layout
    label_name = next((n for n in _CLASS_NAMES if cols.find(n)), None)
    numeric = [cols.get(c) for c in layout.box] + [cols.get("frame")]
    score_name = next((cols.get(n) for n in _SCORE_NAMES if cols.find(n)), None) if layout.role == "pred" else None
    impact = [cols.find(n) for n in ("impact", "confidence", "visibility")] if layout.role == "gt" else []
    numeric += [c for c in [score_name, *impact] if c]
    wanted = [cols.get("video"), *numeric] + ([cols.get(label_name)] if label_name else [])
    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(column_names=list(src.header), skip_rows=1, use_threads=False),
            parse_options=pacsv.ParseOptions(quote_char=False, double_quote=False, newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                include_columns=wanted, null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=True,
                column_types={**{c: pa.float64() for c in numeric}, **{c: _TEXT for c in wanted if c not in numeric}}),
        )
    except (pa.ArrowInvalid, ValueError) as exc:
        raise Declined(f"{src.path}: {str(exc)[:200]}") from None
    del data
    n = table.num_rows
    b = [_finite(table, cols.get(c)) for c in layout.box]
    if layout.box_style == "xyxy":
        b = [b[0], b[1], b[2] - b[0], b[3] - b[1]]
    label = table.column(cols.get(label_name)) if label_name else pa.nulls(n, pa.string())
    cls = pa.repeat(HELMET, n) if one_class or label_name is None else label  # plain(): trimmed already
    score = _finite(table, score_name) if score_name else np.full(n, np.nan)
    extra = {name: _optional(table, c) for name, c in zip(("impact", "confidence", "visibility"), impact) if c}
    return normalised(table.column(cols.get("video")),
                      _finite(table, cols.get("frame")), cls, label, b, score, extra, layout.role, src.path)


def plain(data: bytes) -> bool:
    """No quotes or escapes (Spark's tokenizer rules), no tabs and no space next to a comma or
    a line break (pyarrow and Spark's casts may treat whitespace differently), no leading blank
    line: what pyarrow and Spark read alike."""
    if data[:1] in (b"\r", b"\n", b" ") or b'"' in data or b"\\" in data or b"\t" in data:
        return False
    if b" " not in data:
        return True
    raw = np.frombuffer(data, np.uint8)
    at = np.flatnonzero(raw == 32)
    near = np.concatenate([raw[at[at > 0] - 1], raw[at[at < len(raw) - 1] + 1]])
    return not np.isin(near, list(b",\r\n")).any() and raw[-1] != 32


def _optional(table: pa.Table, name: str) -> np.ndarray:
    """An optional number column with NULL as NaN; Declined on a NaN or infinite value."""
    col = table.column(name)
    values = col.to_numpy(zero_copy_only=False)
    if (~np.isfinite(values) & ~col.is_null().to_numpy(zero_copy_only=False)).any():
        raise Declined(f"a NaN or infinite {name}")
    return values


def _finite(table: pa.Table, name: str) -> np.ndarray:
    col = table.column(name)
    values = col.to_numpy(zero_copy_only=False)
    if col.null_count or not np.isfinite(values).all():
        raise Declined(f"a missing, NaN or infinite {name}")
    return values


# ----------------------------------------------------------------------------- COCO JSON


def coco_ground_truth(path: str, one_class: bool) -> tuple[pa.Table, np.ndarray, dict]:
    """A COCO instances file's annotations, normalised (``cocojson`` read in Spark gives the
    same rows), its image ids and its class names by category id; Declined unless every
    element is clean."""
    data = _json_bytes(path)
    inst, annotations = _instances_split(data, path)
    if inst is None:
        inst = _json(_clean(data, path), path)
        annotations = inst.pop("annotations", None) if isinstance(inst, dict) else None
    if not isinstance(inst, dict) or not all(isinstance(inst.get(k), list) for k in ("images", "categories")) or \
            not isinstance(annotations, list | pa.Table):
        raise Declined("the instances file is not an object with images, annotations and categories lists")
    cats = inst["categories"]
    if not all(isinstance(c, dict) and _is_int(c.get("id")) and isinstance(c.get("name"), (str, type(None)))
               for c in cats):
        raise Declined("a category without an integer id or a text name")
    names = {int(k): v for k, v in category_names([(c["id"], c.get("name")) for c in cats]).items()}
    try:
        images = _numbers([im["id"] for im in inst["images"]], "image id")
    except (KeyError, TypeError):
        raise Declined("an image without an id") from None
    if (images != np.floor(images)).any():
        raise Declined("an image id that is not an integer")
    fields = _arrow_fields(annotations, True) if isinstance(annotations, pa.Table) else _coco_fields(annotations, True)
    return coco_table(fields, images, names, one_class, True), images, names


def coco_result_fields(path: str) -> dict[str, np.ndarray]:
    """A COCO results file's elements as number columns (checked against the instances file
    later, by ``coco_table``)."""
    data = _json_bytes(path)
    body = data.strip()
    rows = _json_rows(body[1:-1], False) if body[:1] == b"[" and body[-1:] == b"]" else None
    if rows is not None:
        return _arrow_fields(rows, False)
    results = _json(_clean(data, path), path)
    if not isinstance(results, list):
        raise Declined("the results file is not a list")
    return _coco_fields(results, False)


def _json_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _clean(data: bytes, path: str) -> bytes:
    """``data``, which ``json`` is to read; Declined when it holds true, false, null, NaN or
    Infinity anywhere (numpy would read true as 1, a missing area is NaN here: Spark's path
    reads those files). Rows that ``_json_rows`` reads need no such scan: pyarrow refuses
    true and false in a number field, and ``_arrow_fields`` declines a NULL where Spark's
    path would quarantine one and any NaN or infinity."""
    if any(word in data for word in (b"true", b"false", b"null", b"NaN", b"Infinity")):
        raise Declined(f"{path}: true, false, null, NaN or Infinity in the file")
    return data


def _json(data: bytes, path: str):
    try:
        return json.loads(data)
    except ValueError as exc:
        raise Declined(f"{path}: {exc}") from None


# How COCO files separate the objects of a list: json.dumps' default and compact forms, one per line.
_SEPARATORS = (b"}, {", b"},{", b"},\n{", b"},\r\n{")
_ANNOTATIONS = re.compile(rb'"annotations"\s*:\s*\[')
_LIST_END = re.compile(rb"\}(?:\r?\n)?\]")  # }] or } and ] on two lines
_MARK = b'"mljobs: the annotations"'
_FIELDS = {"image_id": pa.float64(), "category_id": pa.float64(), "bbox": pa.list_(pa.float64())}
_GT_FIELDS = pa.schema({**_FIELDS, "area": pa.float64(), "iscrowd": pa.float64()})
_PRED_FIELDS = pa.schema({**_FIELDS, "score": pa.float64()})


def _json_rows(body: bytes, is_gt: bool) -> pa.Table | None:
    """The objects of a JSON list's body (what lies between its brackets), read by pyarrow's
    JSON reader (3x faster than ``json``) once each separator between two objects is a line
    break (the separator of the first two: a file writes one; where it mixes them, a line
    holds two objects and does not parse); None when they cannot be read so (another
    separator, line breaks inside an object, a value of another type, not objects at all):
    ``json`` then reads the file. Sound because a line cut inside a string or a nested value
    does not parse (that string or value is left open), and the rows must number the
    separators + 1."""
    first = [(at, s) for s in _SEPARATORS for at in [body.find(s, 0, 1 << 16)] if at >= 0]
    used = [min(first)[1]] if first else _SEPARATORS  # the first one's (a line with two objects does not parse)
    counts = [body.count(s) for s in used]
    for s in (s for s, n in zip(used, counts) if n):
        body = body.replace(s, b"}\n{")
    options = pajson.ParseOptions(explicit_schema=_GT_FIELDS if is_gt else _PRED_FIELDS,
                                  unexpected_field_behavior="ignore", newlines_in_values=False)
    try:
        rows = pajson.read_json(pa.py_buffer(body), pajson.ReadOptions(use_threads=False), options)
    except (pa.ArrowInvalid, ValueError):
        return None
    return rows if rows.num_rows == 1 + sum(counts) else None


def _instances_split(data: bytes, path: str) -> tuple[dict | None, pa.Table | None]:
    """(the instances object without its annotations, the annotations read by ``_json_rows``),
    or (None, None) when the file is not laid out so: ``json`` then reads it all. The list is
    taken to end at the first ``}]`` after it (or ``}`` and ``]`` on two lines); where that is wrong, its last line does not
    parse, or what is left is not the instances object with a marker in the list's place."""
    found = list(_ANNOTATIONS.finditer(data))
    last = _LIST_END.search(data, found[0].end()) if len(found) == 1 else None
    end = last.span() if last else None
    rows = _json_rows(data[found[0].end():end[0] + 1], True) if end else None
    if rows is None:
        return None, None
    try:
        inst = json.loads(_clean(data[:found[0].start()], path) + b'"annotations": ' + _MARK +
                          _clean(data[end[1]:], path))
    except ValueError:
        return None, None
    if not isinstance(inst, dict) or inst.get("annotations") != json.loads(_MARK):
        return None, None
    del inst["annotations"]
    return inst, rows


def _numbers(values: list, what: str, shape: tuple = ()) -> np.ndarray:
    """A list of JSON numbers as float64; Declined on anything else (text, lists of the wrong
    length, NaN or infinity)."""
    if not values:
        return np.zeros((0, *shape))
    try:
        arr = np.array(values)
    except ValueError:
        raise Declined(f"a malformed {what}") from None
    if arr.dtype.kind not in "iuf" or arr.shape[1:] != shape or not np.isfinite(arr).all():
        raise Declined(f"a {what} that is not {'a number' if not shape else f'{shape[0]} numbers'}")
    return arr.astype(np.float64)


def _coco_fields(items: list, is_gt: bool) -> dict[str, np.ndarray]:
    """image, category, bbox (left, top, width, height) and area + iscrowd (annotations) or
    score (results) of COCO elements, as float64 columns; Declined on a missing key or a
    value that is not a number."""
    try:
        box = _numbers([a["bbox"] for a in items], "bbox", (4,))
        out = {"image": _numbers([a["image_id"] for a in items], "image_id"),
               "category": _numbers([a["category_id"] for a in items], "category_id"),
               **{k: box[:, j] for j, k in enumerate(("left", "top", "width", "height"))}}
        if is_gt:
            out["area"] = np.array([a.get("area", np.nan) for a in items], np.float64)
            if out["area"].ndim != 1:
                raise Declined("an area that is not a number")
            out["iscrowd"] = _numbers([a.get("iscrowd", 0) for a in items], "iscrowd")
        else:
            out["score"] = _numbers([a["score"] for a in items], "score")
    except (KeyError, TypeError, ValueError) as exc:
        raise Declined(f"an element without {exc}") from None
    return out


def _arrow_fields(rows: pa.Table, is_gt: bool) -> dict[str, np.ndarray]:
    """``_coco_fields`` of the objects ``_json_rows`` read."""
    names = ["image_id", "category_id", "bbox"] + ([] if is_gt else ["score"])
    missing = next((n for n in names if rows.column(n).null_count), None)
    if missing:
        raise Declined(f"an element without '{missing}'")
    bbox = rows.column("bbox")
    if rows.num_rows and not pc.all(pc.equal(pc.list_value_length(bbox), 4)).as_py():
        raise Declined("a bbox that is not 4 numbers")
    flat = pc.list_flatten(bbox)
    if flat.null_count:
        raise Declined("a bbox that is not 4 numbers")
    box = flat.to_numpy().reshape(-1, 4)
    if not np.isfinite(box).all():
        raise Declined("a bbox that is not 4 numbers")
    out = {"image": _finite(rows, "image_id"), "category": _finite(rows, "category_id"),
           **{k: box[:, j] for j, k in enumerate(("left", "top", "width", "height"))}}
    if is_gt:
        out["area"] = _optional(rows, "area")  # NULL (or no area) = width x height, as in Spark's path
        out["iscrowd"] = rows.column("iscrowd").fill_null(0).to_numpy()
    else:
        out["score"] = _finite(rows, "score")
    return out


def coco_table(fields: dict, images: np.ndarray, names: dict, one_class: bool, is_gt: bool) -> pa.Table:
    """``_coco_fields`` as normalised rows; Declined on an unknown image or category, a
    negative area or an iscrowd other than 0 or 1."""
    n = len(fields["image"])
    cats, code = np.unique(fields["category"], return_inverse=True)
    labels = [names.get(c) for c in cats.tolist()]
    image = fields["image"]
    if None in labels or not np.isin(image, images).all() or np.abs(image).max(initial=0) > _FRAME_LIMIT:
        raise Declined("an unknown image_id or category_id")
    more = {k: fields[k] for k in ("area", "iscrowd") if is_gt}
    if is_gt and (not (np.isnan(more["area"]) | (np.isfinite(more["area"]) & (more["area"] >= 0))).all()
                  or not np.isin(more["iscrowd"], (0.0, 1.0)).all()):
        raise Declined("a negative or non-numeric area, or an iscrowd other than 0 or 1")
    label = pa.DictionaryArray.from_arrays(pa.array(code.astype(np.int32)), pa.array(labels, pa.string()))
    cls = pa.repeat(HELMET, n) if one_class else pc.take(pc.utf8_trim(label.dictionary, characters=" "), label.indices)
    video = pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), pa.array([VIDEO]))
    box = [fields[k] for k in ("left", "top", "width", "height")]
    return normalised(video, image, cls, label, box, fields["score"] if not is_gt else np.full(n, np.nan), more,
                      "gt" if is_gt else "pred", "COCO")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) or isinstance(x, float) and x.is_integer()


# ----------------------------------------------------------------------------- normalised rows


def normalised(video, frame: np.ndarray, cls, label, box: list, score: np.ndarray, extra: dict, role: str,
               what: str) -> pa.Table:
    """The matcher's input columns (``job.MATCH_INPUT``) for clean rows; Declined where
    ``boxes._reason`` would give any row a reason."""
    n = len(frame)
    left, top, width, height = box
    if _blank(video) or _blank(cls):
        raise Declined(f"{what}: a missing video or label")
    bad = (frame != np.floor(frame)) | (np.abs(frame) > _FRAME_LIMIT) | (width <= 0) | (height <= 0)
    if role == "pred":
        bad |= ~np.isfinite(score) | (score < 0) | (score > 1)
    if bad.any():
        raise Declined(f"{what}: {int(bad.sum())} row(s) the checks reject")
    nan = np.full(n, np.nan)
    return pa.table({
        "video": video, "frame": pa.array(frame.astype(np.int32)), "cls": cls,
        "kind": pa.array(np.full(n, 0 if role == "gt" else 1, np.int8)), "label": label,
        "left": left, "top": top, "width": width, "height": height,
        "score": pa.array(score if role == "pred" else nan, mask=None if role == "pred" else np.ones(n, bool)),
        **{k: pa.array(extra.get(k, nan), mask=np.isnan(extra.get(k, nan))) for k in ("impact", "confidence",
                                                                                      "visibility")},
        "_reason": pa.nulls(n, pa.string()), "_raw": pa.nulls(n, pa.string()),
        "area": pa.array(extra.get("area", nan), mask=np.isnan(extra.get("area", nan))),
        "iscrowd": pa.array(extra.get("iscrowd", np.zeros(n)).astype(np.int8)),
        "_rid": pa.array(np.arange(n, dtype=np.int64)),
    })


def _blank(col) -> bool:
    """Any NULL or empty text in a (dictionary) string column."""
    if col.null_count:
        return True
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    return any(pc.any(pc.equal(c.dictionary if pa.types.is_dictionary(c.type) else c, "")).as_py() for c in chunks)


_DUPLICATE_KEYS = ["video", "frame", "kind", "cls", "label", "left", "top", "width", "height", "score"]


def refuse_duplicates(table: pa.Table) -> None:
    """Declined when a row repeats another's video, frame, class, label, box and score
    (``boxes.mark_duplicates`` would quarantine it). Rows whose key hashes differ are
    distinct, so the exact group-by runs only when two hashes agree (a duplicate, or rarely
    a collision)."""
    for name in ("left", "top", "score"):  # -0.0 groups with 0.0, as in Spark
        table = table.set_column(table.schema.get_field_index(name), name, pc.add(table.column(name), 0.0))
    if len(np.unique(_key_hashes(table, _DUPLICATE_KEYS))) == table.num_rows:
        return
    counted = table.select(_DUPLICATE_KEYS).group_by(_DUPLICATE_KEYS, use_threads=False).aggregate(
        [([], "count_all")])
    if counted.num_rows != table.num_rows:
        raise Declined(f"{table.num_rows - counted.num_rows} duplicate row(s)")


def _key_hashes(table: pa.Table, keys: list[str]) -> np.ndarray:
    """A 64-bit hash per row of the ``keys`` columns (equal rows, equal hashes): numbers by
    their bits (NULL as NaN), text by its code in the column's dictionary."""
    h = np.zeros(table.num_rows, np.uint64)
    for name in keys:
        col = table.column(name)
        if pa.types.is_dictionary(col.type) and all(c.dictionary.equals(col.chunk(0).dictionary) for c in col.chunks):
            x = np.concatenate([c.indices.fill_null(-1).to_numpy() for c in col.chunks] or [np.zeros(0, np.int64)])
            x = x.astype(np.int64).view(np.uint64)  # one dictionary: its codes
        elif pa.types.is_string(col.type) or pa.types.is_dictionary(col.type):
            x = col.cast(pa.string()).combine_chunks().dictionary_encode().indices.fill_null(-1).to_numpy()
            x = x.astype(np.int64).view(np.uint64)
        else:
            x = np.ascontiguousarray(col.to_numpy(zero_copy_only=False), np.float64).view(np.uint64)
        h = (h ^ (x ^ (x >> np.uint64(31)))) * np.uint64(0x9E3779B97F4A7C15)
    return h


def frame_rows(matched: pa.Table) -> pa.Table:
    """``job.frame_metrics`` of whole frames' matched boxes: the same columns, types and
    figures (rates NULL where 0/0)."""
    kind = matched.column("kind").to_numpy()
    hit = matched.column("matched").to_numpy(zero_copy_only=False)
    gt, det = kind == 0, (kind == 1) & matched.column("above_conf").to_numpy(zero_copy_only=False)
    counts = pa.table({"video": matched.column("video"), "frame": matched.column("frame"),
                       "g": gt.astype(np.int64), "d": det.astype(np.int64), "tp": (det & hit).astype(np.int64),
                       "gm": (gt & hit).astype(np.int64)})
    sums = counts.group_by(["video", "frame"], use_threads=False).aggregate([(c, "sum") for c in ("g", "d", "tp", "gm")])
    g, d, tp, gm = (sums.column(f"{c}_sum").to_numpy() for c in ("g", "d", "tp", "gm"))
    fp, fn = d - tp, g - gm

    def ratio(num, den):
        with np.errstate(invalid="ignore", divide="ignore"):
            return pa.array(num / den, mask=den == 0)

    return pa.table({"video": sums.column("video"), "frame": sums.column("frame"),
                     **{k: pa.array(v.astype(np.int32)) for k, v in (("num_gt", g), ("num_det", d), ("tp", tp),
                                                                     ("fp", fp), ("fn", fn))},
                     "precision": ratio(tp.astype(np.float64), tp + fp), "recall": ratio(tp.astype(np.float64), tp + fn),
                     "f1": ratio(2.0 * tp, 2 * tp + fp + fn)})


def error_rows(matched: pa.Table) -> pa.Table:
    """``job.error_rows`` of the matched boxes: the same columns and types."""
    kind = matched.column("kind").to_numpy()
    above = pc.fill_null(matched.column("above_conf"), False).to_numpy(zero_copy_only=False)
    hit = pc.fill_null(matched.column("matched"), True).to_numpy(zero_copy_only=False)
    keep = ((kind == 0) | above) & ~hit
    err = matched.filter(pa.array(keep))
    text = {"video": err.column("video"), "frame": err.column("frame"),
            "error": pa.array(np.where(kind[keep] == 0, "FN", "FP"), pa.string()),
            **{c: err.column(c) for c in ("cls", "label")}}
    return pa.table({**{k: v.cast(pa.int32() if k == "frame" else pa.string()) for k, v in text.items()},
                     **{c: err.column(c).cast(pa.float64()) for c in ("left", "top", "width", "height", "score",
                                                                          "best_iou")}})


def ground_truth_rows(matched: pa.Table) -> list[tuple]:
    """(class, video, ground-truth boxes not ignored per area range) of the matched boxes,
    as the rows ``job.ground_truth_counts`` sums."""
    gt = matched.filter(pc.equal(matched.column("kind"), 0))
    ig = gt.column("c_ig").to_numpy()
    t = pa.table({"cls": gt.column("cls").cast(pa.string()), "video": gt.column("video").cast(pa.string()),
                  **{f"n{a}": ((ig >> a) & 1 == 0).astype(np.int64) for a in range(coco.N_A)}})
    sums = t.group_by(["cls", "video"], use_threads=False).aggregate([(f"n{a}", "sum") for a in range(coco.N_A)])
    counts = np.column_stack([sums.column(f"n{a}_sum").to_numpy() for a in range(coco.N_A)]) if sums.num_rows else []
    return [(c, v, [int(x) for x in n]) for c, v, n in zip(sums.column("cls").to_pylist(),
                                                            sums.column("video").to_pylist(), counts)]


_SPARK_TO_ARROW = {"string": pa.string(), "int": pa.int32(), "tinyint": pa.int8(), "double": pa.float64(),
                   "boolean": pa.bool_(), "bigint": pa.int64()}


def staged(table: pa.Table, types: tuple) -> pa.Table:
    """The staged columns in Spark's types (NULL where ``table`` lacks one: the per-frame
    analysis's, with ``coco_only``)."""
    return pa.table({n: table.column(n).cast(_SPARK_TO_ARROW[t]) if n in table.column_names
                     else pa.nulls(table.num_rows, _SPARK_TO_ARROW[t]) for n, t in types})


__all__ = ["Declined", "MAX_BYTES", "Plan", "plan"]
