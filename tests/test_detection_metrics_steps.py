"""The detection-metrics job's DataFrame -> DataFrame steps, one by one, on small hand-built
frames against hand-computed results; and its config merge (no Spark)."""
from __future__ import annotations

import pytest
from chispa import assert_approx_df_equality, assert_df_equality

from mljobs.config import load_config
from mljobs.detection_metrics.boxes import detect_layout, mark_duplicates, normalize
from mljobs.detection_metrics.config import DetectionConfig
from mljobs.detection_metrics.job import (class_shares, error_boxes, error_rows, frame_metrics, ground_truth_counts,
                                          quarantine_rows, with_rates)
from mljobs.errors import MljobsError

BOX = "video string, frame int, kind tinyint, cls string, label string, left double, top double, " \
      "width double, height double, score double"


def test_with_rates_is_null_where_the_denominator_is_zero(spark):
    df = spark.createDataFrame([(3, 1, 2), (0, 0, 0), (0, 2, 0), (4, 0, 0)], "tp int, fp int, fn int")
    expected = spark.createDataFrame(
        [(3, 1, 2, 0.75, 0.6, 6 / 9), (0, 0, 0, None, None, None), (0, 2, 0, 0.0, None, 0.0),
         (4, 0, 0, 1.0, 1.0, 1.0)],
        "tp int, fp int, fn int, precision double, recall double, f1 double")
    assert_approx_df_equality(with_rates(df), expected, 1e-12, ignore_nullable=True)


def test_frame_metrics_counts_only_detections_above_the_threshold(spark):
    matched = spark.createDataFrame([
        ("a", 1, 0, True, True),    # ground truth, found
        ("a", 1, 0, True, False),   # ground truth, missed
        ("a", 1, 1, True, True),    # detection, TP
        ("a", 1, 1, True, False),   # detection, FP
        ("a", 1, 1, False, False),  # below --conf-thr: not counted
        ("a", 2, 1, True, False),   # a frame with only a false detection
        ("b", 7, 0, True, False),   # a frame with only a missed box
    ], "video string, frame int, kind tinyint, above_conf boolean, matched boolean")
    expected = spark.createDataFrame([
        ("a", 1, 2, 2, 1, 1, 1, 0.5, 0.5, 0.5),
        ("a", 2, 0, 1, 0, 1, 0, 0.0, None, 0.0),
        ("b", 7, 1, 0, 0, 0, 1, None, 0.0, 0.0),
    ], "video string, frame int, num_gt int, num_det int, tp int, fp int, fn int, "
       "precision double, recall double, f1 double")
    assert_approx_df_equality(frame_metrics(matched), expected, 1e-12, ignore_nullable=True, ignore_row_order=True)


def test_error_boxes_lists_misses_and_false_detections_with_the_frame_rank(spark):
    m = "video string, frame int, kind tinyint, above_conf boolean, matched boolean, cls string, label string, " \
        "left double, top double, width double, height double, score double, best_iou double"
    matched = spark.createDataFrame([
        ("a", 1, 0, True, False, "helmet", "H1", 0.0, 0.0, 10.0, 10.0, None, 0.2),
        ("a", 1, 0, True, False, "helmet", "H2", 20.0, 0.0, 10.0, 10.0, None, 0.0),
        ("a", 1, 0, True, True, "helmet", "H3", 40.0, 0.0, 10.0, 10.0, None, 0.9),   # found: no error
        ("a", 2, 1, True, False, "helmet", None, 5.0, 5.0, 8.0, 8.0, 0.95, 0.1),
        ("a", 2, 1, False, False, "helmet", None, 50.0, 5.0, 8.0, 8.0, 0.3, 0.0),   # below --conf-thr
        ("a", 2, 0, True, False, "helmet", "V9", 60.0, 0.0, 10.0, 10.0, None, 0.0),
        ("b", 1, 1, True, False, "helmet", None, 1.0, 1.0, 9.0, 9.0, 0.99, 0.0),
    ], m)
    frames = spark.createDataFrame(
        [("a", 1, 3, 2, 0), ("a", 2, 1, 1, 1), ("a", 3, 4, 0, 0), ("b", 1, 0, 0, 1)],
        "video string, frame int, num_gt int, fn int, fp int")
    expected = spark.createDataFrame([
        ("a", 1, "FN", "helmet", "H1", 0.0, 0.0, 10.0, 10.0, None, 0.2, 3, 2, 0, 1),
        ("a", 1, "FN", "helmet", "H2", 20.0, 0.0, 10.0, 10.0, None, 0.0, 3, 2, 0, 1),
        ("a", 2, "FP", "helmet", None, 5.0, 5.0, 8.0, 8.0, 0.95, 0.1, 1, 1, 1, 2),
        ("a", 2, "FN", "helmet", "V9", 60.0, 0.0, 10.0, 10.0, None, 0.0, 1, 1, 1, 2),
        ("b", 1, "FP", "helmet", None, 1.0, 1.0, 9.0, 9.0, 0.99, 0.0, 0, 0, 1, 1),
    ], "video string, frame int, error string, cls string, label string, left double, top double, width double, "
       "height double, score double, best_iou double, frame_num_gt int, frame_fn int, frame_fp int, miss_rank int")
    assert_df_equality(error_boxes(error_rows(matched), frames), expected, ignore_nullable=True, ignore_row_order=True)


def test_quarantine_rows_keeps_only_rejected_rows_and_names_their_input(spark):
    staged = spark.createDataFrame([
        (0, "a", 1, None, None),
        (0, "a", 2, "width or height <= 0", "a,2,H1,0,0,10"),
        (1, None, None, "missing video", ",3,0.5"),
        (1, "b", 4, None, None),
    ], "kind tinyint, video string, frame int, _reason string, _raw string")
    expected = spark.createDataFrame([
        ("gt", "a", 2, "width or height <= 0", "a,2,H1,0,0,10"),
        ("pred", None, None, "missing video", ",3,0.5"),
    ], "input string, video string, frame int, reason string, raw_line string")
    assert_df_equality(quarantine_rows(staged), expected, ignore_nullable=True, ignore_row_order=True)


def test_mark_duplicates_keeps_the_first_row_in_input_order(spark):
    schema = BOX + ", _rid long, _reason string, _raw string"
    box = ("v", 1, 1, "helmet", "H1", 0.0, 0.0, 10.0, 10.0, 0.9)
    rows = spark.createDataFrame([
        (*box, 5, None, None),
        (*box, 2, None, None),                             # first in input order: stays
        (*box[:9], 0.8, 3, None, None),                    # another score: not a duplicate
        (*box, 1, "score outside [0, 1]", "raw line"),     # already rejected: keeps its reason
        (box[0], 2, *box[2:], 4, None, None),              # another frame
    ], schema)
    dup_json = '{"video":"v","frame":1,"label":"H1","left":0.0,"top":0.0,"width":10.0,"height":10.0,"score":0.9}'
    expected = spark.createDataFrame([
        (*box, 5, "duplicate row", dup_json),
        (*box, 2, None, None),
        (*box[:9], 0.8, 3, None, None),
        (*box, 1, "score outside [0, 1]", "raw line"),
        (box[0], 2, *box[2:], 4, None, None),
    ], schema)
    assert_df_equality(mark_duplicates(rows), expected, ignore_nullable=True, ignore_row_order=True)


NORMALIZED_SCHEMA = (
    "video string, frame int, cls string, kind tinyint, label string, left double, top double, width double, "
    "height double, score double, impact double, confidence double, visibility double, area double, iscrowd tinyint, "
    "_reason string, _raw string"
)


def test_normalize_detections_xyxy_boxes_and_reasons(spark):
    cols = ["video", "frame", "score", "x1", "y1", "x2", "y2", "_malformed", "_raw"]
    raw = spark.createDataFrame([
        ("a.mp4", "3", "0.5", "10", "20", "30", "60", None, None),
        ("a.mp4", "3.5", "0.5", "10", "20", "30", "60", None, "a.mp4,3.5"),
        ("a.mp4", "4", "1.5", "10", "20", "30", "60", None, "a.mp4,4,1.5"),
        ("a.mp4", "4", "0.7", "10", "20", "5", "60", None, "a.mp4,4,0.7"),
        (" ", "4", "0.7", "10", "20", "30", "60", None, " ,4"),
        ("a.mp4", "5", "0.7", "x", "20", "30", "60", None, "a.mp4,5,0.7,x"),
        (None, None, None, None, None, None, None, "wrong token count: 3 (expected 7)", "x,y,z"),
    ], ", ".join(f"`{c}` string" for c in cols))
    layout = detect_layout(raw.columns, "pred", "detections")
    assert (layout.kind, layout.box_style) == ("detections", "xyxy")
    n = (None, None, None)
    expected = spark.createDataFrame([
        ("a.mp4", 3, "helmet", 1, None, 10.0, 20.0, 20.0, 40.0, 0.5, *n, None, 0, None, None),
        ("a.mp4", 3, "helmet", 1, None, 10.0, 20.0, 20.0, 40.0, 0.5, *n, None, 0, "non-integer frame", "a.mp4,3.5"),
        ("a.mp4", 4, "helmet", 1, None, 10.0, 20.0, 20.0, 40.0, 1.5, *n, None, 0, "score outside [0, 1]", "a.mp4,4,1.5"),
        ("a.mp4", 4, "helmet", 1, None, 10.0, 20.0, -5.0, 40.0, 0.7, *n, None, 0, "width or height <= 0", "a.mp4,4,0.7"),
        ("", 4, "helmet", 1, None, 10.0, 20.0, 20.0, 40.0, 0.7, *n, None, 0, "missing video", " ,4"),
        ("a.mp4", 5, "helmet", 1, None, None, 20.0, None, 40.0, 0.7, *n, None, 0, "missing or non-numeric x1", "a.mp4,5,0.7,x"),
        (None, None, "helmet", 1, None, None, None, None, None, None, *n, None, 0, "wrong token count: 3 (expected 7)", "x,y,z"),
    ], NORMALIZED_SCHEMA)
    out = normalize(spark, raw, layout)
    assert_df_equality(out, expected, ignore_nullable=True, ignore_row_order=True, ignore_columns=["_rid"])


def test_normalize_image_labels_per_class_video_and_frame_from_the_image_name(spark):
    raw = spark.createDataFrame([
        ("57502_000480_Endzone_frame0443.jpg", "Helmet", "0", "10", "5", "12"),
        ("plain.jpg", " Helmet-Blurred ", "1", "2", "3", "4"),
        ("clip_frame7.png", "", "1", "2", "3", "4"),
    ], "image string, label string, left string, width string, top string, height string")
    raw = raw.selectExpr("*", "CAST(NULL AS string) AS _malformed", "CAST(NULL AS string) AS _raw")
    layout = detect_layout(raw.columns, "gt", "ground truth")
    assert (layout.kind, layout.box_style, layout.single_class) == ("image_labels", "xywh", False)
    n = (None, None, None, None)
    missing_label_json = '{"image":"clip_frame7.png","label":"","left":"1","width":"2","top":"3","height":"4"}'
    expected = spark.createDataFrame([
        ("57502_000480_Endzone", 443, "Helmet", 0, "Helmet", 0.0, 5.0, 10.0, 12.0, *n, None, 0, None, None),
        ("plain.jpg", 0, "Helmet-Blurred", 0, " Helmet-Blurred ", 1.0, 3.0, 2.0, 4.0, *n, None, 0, None, None),
        ("clip", 7, "", 0, "", 1.0, 3.0, 2.0, 4.0, *n, None, 0, "missing label", missing_label_json),
    ], NORMALIZED_SCHEMA)
    assert_df_equality(normalize(spark, raw, layout), expected, ignore_nullable=True, ignore_row_order=True,
                       ignore_columns=["_rid"])
    merged = normalize(spark, raw, layout, merge_labels=True).select("cls", "_reason").distinct()
    assert_df_equality(merged, spark.createDataFrame([("helmet", None)], "cls string, _reason string"),
                       ignore_nullable=True)


def test_load_config_rejects_an_unknown_yaml_key_and_flags_win(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("iou_thr: 0.6\niou_threshold: 0.7\n")
    with pytest.raises(MljobsError, match=r"unknown keys \['iou_threshold'\]"):
        load_config(DetectionConfig, {"gt": "a.csv", "pred": "b.csv"}, "detection-metrics", bad)
    good = tmp_path / "good.yaml"
    good.write_text("iou_thr: 0.6\nmax_plots: 3\nsnap: 40\n")
    cfg = load_config(DetectionConfig, {"gt": "a.csv", "pred": "b.csv", "iou_thr": 0.75, "max_plots": None},
                      "detection-metrics", good)
    assert (cfg.iou_thr, cfg.max_plots, cfg.snap_frame, cfg.conf_thr) == (0.75, 3, 40, 0.9)
    with pytest.raises(MljobsError, match="iou-thr must be within"):
        load_config(DetectionConfig, {"gt": "a.csv", "pred": "b.csv", "iou_thr": 1.5}, "detection-metrics", good)


def test_class_shares_balance_the_curve_tasks_by_ground_truth():
    """The classes with most ground truth first, each to the least loaded share; a class
    seen only per video counts by its total, the same in every task."""
    npig = ground_truth_counts([("a", "v1", [6, 1, 2, 3]), ("a", "v2", [4, 0, 0, 4]), ("b", "v1", [9, 2, 3, 4]),
                                ("c", "v1", [8, 1, 1, 6]), ("d", "v2", [1, 0, 1, 0])])
    owner = class_shares(npig, 2)
    assert owner == {"a": 0, "b": 1, "c": 1, "d": 0}  # totals a 20, b 18, c 16, d 2
    assert set(class_shares(npig, 1).values()) == {0}
