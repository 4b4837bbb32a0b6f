"""detection-metrics' single-machine path (``fastpath``: the Python workers read, check and
match local CSV / COCO JSON files) against Spark's path on the same inputs: identical
tables and summaries where it runs, and Spark's path (with its quarantine) wherever the
input is not provably clean."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mljobs import coco
from mljobs.datasets.cocoboxes import generate as generate_coco, generate_dicts
from mljobs.datasets.helmets import generate
from mljobs.detection_metrics import fastpath
from mljobs.detection_metrics.job import DetectionConfig, run_detection_metrics
from mljobs.errors import MljobsError

from test_detection_coco import cocoeval

TABLE_KEYS = {
    "det_frames": ["video", "frame"],
    "det_videos": ["scope", "video"],
    "det_errors": ["video", "frame", "error", "left", "top", "width", "height", "score"],
    "det_coco": ["scope", "video", "cls"],
    "det_quarantine": ["input", "reason", "raw_line"],
}


@pytest.fixture(scope="module")
def plays(tmp_path_factory):
    out = tmp_path_factory.mktemp("fastplays")
    generate(out, plays=3, frames=40, seed=5)
    return out


def run(spark, gt, pred, db, reader="auto", **kw) -> dict:
    cfg = DetectionConfig(gt=str(gt), pred=str(pred), out_db=db, max_plots=0, reader=reader,
                          max_bad_fraction=1.0, **kw)
    return run_detection_metrics(spark, cfg, progress=lambda m: None)


def table(spark, db, name) -> pd.DataFrame:
    keys = TABLE_KEYS[name]
    df = spark.table(f"{db}.{name}").toPandas()
    return df.sort_values(keys, na_position="first", kind="stable").reset_index(drop=True)


def assert_same_results(spark, a: tuple[str, dict], b: tuple[str, dict]) -> None:
    """The two runs' five tables and summaries are identical (timing and run ids aside)."""
    (db_a, sum_a), (db_b, sum_b) = a, b
    for name in TABLE_KEYS:
        pd.testing.assert_frame_equal(table(spark, db_a, name), table(spark, db_b, name), check_exact=True,
                                      obj=name)
    drop = ("seconds", "run_id", "tables", "reader")
    assert {k: v for k, v in sum_a.items() if k not in drop} == {k: v for k, v in sum_b.items() if k not in drop}


def test_clean_csv_plays_take_the_workers_path_with_identical_results(spark, plays):
    kw = dict(snap=str(plays / "snaps.csv"), nfl_impact=True)
    fast = run(spark, plays / "train_labels.csv", plays / "detections.csv", "fp_auto", **kw)
    slow = run(spark, plays / "train_labels.csv", plays / "detections.csv", "fp_spark", reader="spark", **kw)
    assert (fast["reader"], slow["reader"]) == ("arrow", "spark")
    assert fast["rows_quarantined"] == 0 and fast["frames"] == 120
    assert_same_results(spark, ("fp_auto", fast), ("fp_spark", slow))
    impact = [spark.table(f"{db}.det_impact").toPandas().sort_values("video").reset_index(drop=True)
              for db in ("fp_auto", "fp_spark")]
    pd.testing.assert_frame_equal(*impact)


def test_xyxy_detections_with_conf_and_labels_and_merged_classes(spark, plays, tmp_path):
    det = pd.read_csv(plays / "detections.csv")
    det = det.assign(x1=det["left"], y1=det["top"], x2=det["left"] + det["width"], y2=det["top"] + det["height"],
                     conf=det["score"], label=np.where(np.arange(len(det)) % 3 == 0, "Helmet", "Helmet-Partial"))
    path = tmp_path / "xyxy.csv"
    det[["video", "frame", "label", "x1", "y1", "x2", "y2", "conf"]].to_csv(path, index=False)
    fast = run(spark, plays / "train_labels.csv", path, "fp_xy_auto", iou_thr=0.4, conf_thr=0.5, match="optimal")
    slow = run(spark, plays / "train_labels.csv", path, "fp_xy_spark", reader="spark", iou_thr=0.4, conf_thr=0.5,
               match="optimal")
    assert fast["reader"] == "arrow"
    assert_same_results(spark, ("fp_xy_auto", fast), ("fp_xy_spark", slow))


def test_clean_coco_json_takes_the_workers_path_and_equals_pycocotools(spark, tmp_path):
    files = generate_coco(tmp_path / "coco", 60, seed=3)
    fast = run(spark, files["instances"], files["results"], "fp_coco_auto")
    slow = run(spark, files["instances"], files["results"], "fp_coco_spark", reader="spark")
    assert (fast["reader"], slow["reader"]) == ("arrow", "spark")
    assert_same_results(spark, ("fp_coco_auto", fast), ("fp_coco_spark", slow))
    with open(files["instances"]) as f:
        inst = json.load(f)
    with open(files["results"]) as f:
        dets = json.load(f)
    got = np.array([fast["coco"]["overall"][k] for k in coco.STATS])
    assert np.abs(got - cocoeval(inst, dets)).max() <= 1e-6


@pytest.fixture(scope="module")
def full_run(spark, plays):
    return run(spark, plays / "train_labels.csv", plays / "detections.csv", "fp_full")


@pytest.mark.parametrize("reader", ["auto", "spark"])
def test_coco_only_gives_the_full_runs_coco_figures_and_nothing_per_frame(spark, plays, full_run, tmp_path, reader):
    """--coco-only over three videos: det_coco and the summary's COCO figures (overall, per
    video, per class) equal the full run's; det_quarantine is written, no per-frame table,
    figure or plot."""
    db = f"fp_coco_only_{reader}"
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {db}")
    spark.sql(f"DROP TABLE IF EXISTS {db}.det_frames")
    cfg = DetectionConfig(gt=str(plays / "train_labels.csv"), pred=str(plays / "detections.csv"), out_db=db,
                          reader=reader, coco_only=True, plots_dir=str(tmp_path / "plots"), max_plots=2)
    only = run_detection_metrics(spark, cfg, progress=lambda m: None)
    assert only["reader"] == ("arrow" if reader == "auto" else "spark")
    assert only["tables"] == [f"{db}.det_quarantine", f"{db}.det_coco"]
    assert only["coco_only"] and only["overall"] is None and only["videos"] == {} and only["frames"] is None
    assert len(only["coco"]["videos"]) == 3 and only["coco"] == full_run["coco"]
    pd.testing.assert_frame_equal(table(spark, db, "det_coco"), table(spark, "fp_full", "det_coco"), check_exact=True)
    assert spark.table(f"{db}.det_quarantine").count() == 0
    assert not spark.catalog.tableExists(f"{db}.det_frames")
    assert only["plots"] and all(p.endswith("_coco_pr.png") for p in only["plots"])


def test_coco_only_refuses_the_per_frame_options():
    with pytest.raises(MljobsError, match="--coco-only computes COCO's figures alone; --nfl-impact, --snap"):
        DetectionConfig(gt="a.csv", pred="b.csv", coco_only=True, nfl_impact=True, snap="10")


def _edit_line(path, out, n, edit):
    lines = path.read_text().splitlines(keepends=True)
    lines[n] = edit(lines[n])
    out.write_text("".join(lines))
    return out


def _field(i, value):
    """An edit of a detections.csv line (video,frame,label,score,left,top,width,height): field i set."""
    def edit(line):
        fields = line.rstrip("\n").split(",")
        fields[i] = value(fields[i])
        return ",".join(fields) + "\n"
    return edit


@pytest.mark.parametrize("name, edit, reason", [
    ("score", _field(3, lambda v: "1.5"), "pred: score outside [0, 1]"),
    ("width", _field(6, lambda v: "0"), "pred: width or height <= 0"),
    ("frame", _field(1, lambda v: v + ".5"), "pred: non-integer frame"),
    ("nan", _field(4, lambda v: "NaN"), "pred: NaN or infinite left"),
    ("duplicate", lambda line: line + line, "pred: duplicate row"),
    ("quoted", _field(0, lambda v: f'"{v}"'), None),
    ("spaced", _field(1, lambda v: " " + v), None),
    ("short", lambda line: line.rsplit(",", 2)[0] + "\n", "pred: wrong token count"),
])
def test_anything_not_clean_goes_to_the_spark_path(spark, plays, tmp_path, name, edit, reason):
    pred = _edit_line(plays / "detections.csv", tmp_path / f"{name}.csv", 7, edit)
    fast = run(spark, plays / "train_labels.csv", pred, f"fp_bad_{name}")
    assert fast["reader"] == "spark"
    if reason is None:  # Spark's reader takes the quotes off, its cast the space: nothing is rejected
        assert fast["rows_quarantined"] == 0
    else:
        assert fast["rows_quarantined"] == 1 and next(iter(fast["quarantine_reasons"])).startswith(reason)


def test_coco_elements_the_workers_cannot_vouch_for_go_to_the_spark_path(spark, tmp_path):
    files = generate_coco(tmp_path / "coco", 20, seed=4)
    with open(files["results"]) as f:
        dets = json.load(f)
    dets[3]["image_id"] = 999_999
    with open(files["results"], "w") as f:
        json.dump(dets, f)
    summary = run(spark, files["instances"], files["results"], "fp_coco_bad")
    assert summary["reader"] == "spark" and summary["rows_quarantined"] == 1


def _json_edit(text: str, find: str, put: str) -> str:
    assert find in text
    return text.replace(find, put, 1)


@pytest.mark.parametrize("name, role, find, put, reader", [
    ("area null", "instances", '"area": ', '"area": null, "was": ', "arrow"),  # NULL area = width x height
    ("iscrowd null", "instances", '"iscrowd": ', '"iscrowd": null, "was": ', "arrow"),  # NULL = 0
    ("true elsewhere", "instances", '"iscrowd": ', '"extra": true, "iscrowd": ', "arrow"),  # a field not read
    ("area NaN", "instances", '"area": ', '"area": NaN, "was": ', "spark"),
    ("iscrowd true", "instances", '"iscrowd": 0', '"iscrowd": true', "spark"),
    ("score null", "results", '"score": ', '"score": null, "was": ', "spark"),
    ("score Infinity", "results", '"score": ', '"score": Infinity, "was": ', "spark"),
    ("bbox null", "results", '"bbox": [', '"bbox": [null, ', "spark"),
    ("null in images", "instances", '"width": ', '"width": null, "was": ', "spark"),
])
def test_coco_nulls_nans_and_booleans_give_spark_paths_results(spark, tmp_path, name, role, find, put, reader):
    """pyarrow reads null, NaN, Infinity and (in a field it skips) true where ``json`` would
    too: the workers keep a NULL that Spark's path reads the same way (area, iscrowd) and
    leave anything else to Spark's path, whose results they equal either way."""
    files = generate_coco(tmp_path / "coco", 20, seed=6)
    path = files[role]
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(_json_edit(text, find, put))
    db = "fp_json_" + "".join(c if c.isalnum() else "_" for c in name)
    fast = run(spark, files["instances"], files["results"], db)
    slow = run(spark, files["instances"], files["results"], db + "_spark", reader="spark")
    assert fast["reader"] == reader
    assert_same_results(spark, (db, fast), (db + "_spark", slow))


def test_plain_csv_bytes():
    assert fastpath.plain(b"video,frame\na,1\n")
    assert fastpath.plain(b"video,frame\nmy video,1\n")  # a space inside a field is fine
    for bad in (b'video,frame\n"a",1\n', b"video,frame\na ,1\n", b"video,frame\na, 1\n", b"video,frame\na,1 \n",
                b"video,frame\n a,1\n", b"\nvideo,frame\na,1\n", b"video,frame\na\\,1\n", b"video,frame\na\t,1\n",
                b"video,frame\na,1 "):
        assert not fastpath.plain(bad), bad


def test_reader_option_is_checked():
    with pytest.raises(MljobsError, match="--reader"):
        DetectionConfig(gt="a.csv", pred="b.csv", reader="arrow")


def test_ground_truth_without_rows_gives_the_same_results(spark, plays, tmp_path):
    """A header-only file (pyarrow finds it empty: the workers decline) gives Spark's results."""
    gt = tmp_path / "empty_gt.csv"
    gt.write_text((plays / "train_labels.csv").read_text().splitlines()[0])  # header only, no newline
    fast = run(spark, gt, plays / "detections.csv", "fp_empty_auto")
    slow = run(spark, gt, plays / "detections.csv", "fp_empty_spark", reader="spark")
    assert fast["overall"]["tp"] == 0 and fast["overall"]["fp"] > 0
    assert_same_results(spark, ("fp_empty_auto", fast), ("fp_empty_spark", slow))


def _layouts():
    """The same COCO files written as json.dumps writes them in several ways (pyarrow's reader
    takes them: fast (True, True) for the instances and the results), and with objects it must not be trusted with (``json`` reads them)."""
    inst, dets = generate_dicts(30, seed=5)
    inst["info"] = {"description": 'text with "}, {" and }] inside', "annotations": "not the list"}
    inst["annotations"][2]["segmentation"] = [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0]]
    yield "default", json.dumps(inst), json.dumps(dets), (True, True)
    yield "compact", json.dumps(inst, separators=(",", ":")), json.dumps(dets, separators=(",", ":")), (True, True)
    rest = json.dumps({k: v for k, v in inst.items() if k != "annotations"})[:-1]
    one_per_line = f'{rest}, "annotations": [\n' + ",\n".join(map(json.dumps, inst["annotations"])) + "\n]}"
    yield "one per line", one_per_line, "[\n" + ",\n".join(map(json.dumps, dets)) + "\n]", (True, True)
    mixed = json.dumps(dets)
    at = mixed.rindex("}, {")
    yield "mixed separators", json.dumps(inst), mixed[:at] + "},{" + mixed[at + 4:], (True, False)
    yield "indented", json.dumps(inst, indent=2), json.dumps(dets, indent=1), (False, False)
    rle = [dict(a, segmentation={"size": [9, 9], "counts": "a}, {b"}) for a in inst["annotations"]]
    yield "separators in strings", json.dumps({**inst, "annotations": rle}), json.dumps(
        [dict(d, note="}, {") for d in dets]), (False, False)
    yield "annotations first, no results", json.dumps({"annotations": inst["annotations"], **inst}), "[]", (True, False)
    nested = [{"a": [{"b": 1}, {"c": 2}]}, {"image_id": 1}]  # a nested list of objects, then no bbox
    yield "no annotations", json.dumps({**inst, "annotations": []}), json.dumps(nested), (False, False)


@pytest.mark.parametrize("name, inst_text, dets_text, fast", list(_layouts()), ids=[x[0] for x in _layouts()])
def test_pyarrow_json_reading_equals_json_module(tmp_path, name, inst_text, dets_text, fast):
    """Both COCO files give the same columns, or the same refusal, whether pyarrow's reader
    takes them or ``json`` does (``_json_rows`` returns None where it must not read them)."""
    (tmp_path / "inst.json").write_text(inst_text)
    (tmp_path / "dets.json").write_text(dets_text)
    inst, dets = json.loads(inst_text), json.loads(dets_text)
    assert (fastpath._instances_split(inst_text.encode(), "instances.json")[1] is not None) == fast[0]
    assert (fastpath._json_rows(dets_text.strip()[1:-1].encode(), False) is not None) == fast[1]
    table, images, names = fastpath.coco_ground_truth(str(tmp_path / "inst.json"), False)
    expected = fastpath.coco_table(fastpath._coco_fields(inst["annotations"], True), images, names, False, True)
    assert table.equals(expected)
    try:
        want = fastpath._coco_fields(dets, False)
    except fastpath.Declined as exc:
        with pytest.raises(fastpath.Declined, match=str(exc).split("'")[0]):
            fastpath.coco_result_fields(str(tmp_path / "dets.json"))
        return
    got = fastpath.coco_result_fields(str(tmp_path / "dets.json"))
    assert sorted(got) == sorted(want) and all(np.array_equal(got[k], want[k]) for k in want)


def test_json_rows_reads_only_what_it_can_vouch_for():
    read = fastpath._json_rows
    assert read(b'{"image_id": 1, "category_id": 2, "bbox": [1, 2, 3, 4], "score": 0.5}', False).num_rows == 1
    assert read(b'{"image_id": 1}, {"image_id": 2}, {"image_id": 3}', False).num_rows == 3
    assert read(b'{"image_id": 1},\n{"image_id": 2},\n{"image_id": 3}', False).num_rows == 3
    assert read(b'{"image_id": 1}, {"image_id": 2},{"image_id": 3}', False) is None  # mixed: json reads it
    for body in (b'{"image_id": 1} {"image_id": 2}',      # no comma: not a JSON list
                 b'{"image_id": 1},  {"image_id": 2}',     # a separator it does not split at
                 b'{"image_id": "1"}', b'{"bbox": [1, "a"]}', b'1, 2', b'',
                 b'{"s": "x}, {y"}', b'{"a": [{"b": 1}, {"c": 2}]}'):
        assert read(body, False) is None or read(body, False).num_rows == 1 + body.count(b"}, {"), body
    assert read(b'{"s": "x}, {y"}', False) is None and read(b'{"a": [{"b": 1}, {"c": 2}]}', False) is None


@pytest.mark.parametrize("data", ["plays", "coco"])
def test_accumulation_from_local_files_equals_spark_shuffle(spark, plays, tmp_path, monkeypatch, data):
    """COCO's accumulation by tasks reading the staged files (``local_curves``: every local
    run) gives what the Spark shuffle gives (``spark_curves``: staging elsewhere), per class
    and per video."""
    from mljobs.detection_metrics import job

    if data == "plays":
        gt, pred = plays / "train_labels.csv", plays / "detections.csv"
    else:
        files = generate_coco(tmp_path / "coco", 40, seed=6)
        gt, pred = files["instances"], files["results"]
    calls = []
    real = job.local_curves
    monkeypatch.setattr(job, "local_curves", lambda *a: calls.append(real(*a)) or calls[-1])
    local = run(spark, gt, pred, f"fp_acc_local_{data}")
    assert calls and calls[0] is not None
    monkeypatch.setattr(job, "local_curves", lambda *a: None)
    shuffled = run(spark, gt, pred, f"fp_acc_spark_{data}")
    assert_same_results(spark, (f"fp_acc_local_{data}", local), (f"fp_acc_spark_{data}", shuffled))
