"""The detection-metrics job on Spark: tables against the engine and pycocotools, bad
input, layouts, idempotence, the NFL metric, plots, and the command line."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from helpers import ROOT, run_cli, last_json

from mljobs.datasets.helmets import generate
from mljobs.detection_metrics.matching import MatchParams, match_boxes
from mljobs.detection_metrics.job import DetectionConfig, run_detection_metrics
from mljobs.errors import BadDataError, InputError, MljobsError

from helpers import coco_reference, frame_counts



@pytest.fixture(scope="module")
def plays(tmp_path_factory):
    out = tmp_path_factory.mktemp("plays")
    generate(out, plays=2, frames=80, seed=11)
    return out


@pytest.fixture(scope="module")
def first_run(spark, plays, tmp_path_factory):
    plots = tmp_path_factory.mktemp("plots")
    cfg = DetectionConfig(gt=str(plays / "train_labels.csv"), pred=str(plays / "detections.csv"),
                          snap=str(plays / "snaps.csv"), out_db="dett", plots_dir=str(plots), nfl_impact=True)
    summary = run_detection_metrics(spark, cfg, progress=lambda m: None)
    return cfg, summary


def engine_boxes(plays) -> pd.DataFrame:
    gt = pd.read_csv(plays / "train_labels.csv")
    det = pd.read_csv(plays / "detections.csv")
    g = gt.assign(cls="helmet", kind=0, score=np.nan)
    d = det.assign(cls="helmet", kind=1)
    cols = ["video", "frame", "cls", "kind", "left", "top", "width", "height", "score"]
    return pd.concat([g[cols], d[cols]], ignore_index=True).astype({"left": float, "top": float,
                                                                     "width": float, "height": float})


def test_tables_equal_the_engine_and_ap_equals_pycocotools(spark, plays, first_run):
    cfg, summary = first_run
    res = match_boxes(engine_boxes(plays), MatchParams(cfg.conf_thr, cfg.iou_thr))
    expected = frame_counts(res).sort_values(["video", "frame"]).reset_index(drop=True)
    frames = spark.table("dett.det_frames").toPandas().sort_values(["video", "frame"]).reset_index(drop=True)
    cols = ["video", "frame", "num_gt", "num_det", "tp", "fp", "fn"]
    pd.testing.assert_frame_equal(frames[cols].astype({c: int for c in cols[1:]}), expected[cols])
    row = frames.iloc[0]
    assert row.precision == pytest.approx(row.tp / (row.tp + row.fp))
    assert row.f1 == pytest.approx(2 * row.tp / (2 * row.tp + row.fp + row.fn))

    videos = spark.table("dett.det_videos").toPandas()
    overall = videos[videos["scope"] == "overall"].iloc[0]
    assert math.isnan(overall.video) if isinstance(overall.video, float) else overall.video is None
    tp, fp, fn = (int(expected[c].sum()) for c in ("tp", "fp", "fn"))
    assert (overall.tp, overall.fp, overall.fn) == (tp, fp, fn)
    assert overall.frames == len(expected) == 160
    assert overall.precision == pytest.approx(tp / (tp + fp)) and overall.recall == pytest.approx(tp / (tp + fn))
    # the simulated detector: good but not perfect, errors where the players pile up
    assert 0.9 < overall.precision < 1.0 and 0.85 < overall.recall < 1.0
    coco = coco_reference(res)
    assert abs(overall.ap - coco[0]) <= 1e-9 and abs(overall.ap50 - coco[1]) <= 1e-9 and abs(overall.ap75 - coco[2]) <= 1e-9
    for r in videos[videos["scope"] == "video"].itertuples():
        exp = coco_reference(res, r.video)
        assert abs(r.ap - exp[0]) <= 1e-9 and abs(r.ap75 - exp[2]) <= 1e-9
    snaps = pd.read_csv(plays / "snaps.csv").set_index("video")["snap_frame"]
    assert dict(zip(videos["video"].dropna(), videos["snap_frame"].dropna().astype(int))) == snaps.to_dict()

    assert summary["overall"]["tp"] == tp and summary["overall"]["ap"] == pytest.approx(coco[0], abs=1e-9)
    assert set(summary["videos"]) == set(snaps.index)
    assert summary["rows_quarantined"] == 0
    assert summary["tables"] == ["dett.det_frames", "dett.det_videos", "dett.det_errors", "dett.det_quarantine",
                                 "dett.det_coco", "dett.det_impact"]


def test_error_boxes_and_miss_ranking(spark, plays, first_run):
    errors = spark.table("dett.det_errors").toPandas()
    frames = spark.table("dett.det_frames").toPandas()
    assert (errors["error"] == "FN").sum() == frames["fn"].sum()
    assert (errors["error"] == "FP").sum() == frames["fp"].sum()
    fp = errors[errors["error"] == "FP"]
    assert fp["score"].between(0.9, 1.0).all() and errors[errors["error"] == "FN"]["score"].isna().all()
    for video, e in errors.groupby("video"):
        top = e[e["miss_rank"] == 1]
        assert (top["frame_fn"] == frames[frames["video"] == video]["fn"].max()).all()
    # the misses cluster in the tackle window (+-8 frames around the tackle: 17 of 80 frames)
    tackle = pd.read_csv(plays / "snaps.csv").set_index("video")["tackle_frame"]
    fn = errors[errors["error"] == "FN"]
    near = (fn["frame"] - fn["video"].map(tackle)).abs() <= 8
    assert near.mean() > 0.5, near.mean()


def test_plots_are_written_per_video(first_run):
    cfg, summary = first_run
    names = sorted(p.split("/")[-1] for p in summary["plots"])
    per_video = [n for n in names if not n.startswith("class_")]
    assert len(per_video) == 4 and all(n.endswith(("_stacked.png", "_pr.png")) for n in per_video)
    assert [n for n in names if n.startswith("class_")] == ["class_helmet_coco_pr.png"]  # COCO's PR curves
    for p in summary["plots"]:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_nfl_impact_metric_on_generated_plays(spark, plays, first_run):
    _, summary = first_run
    gt = pd.read_csv(plays / "train_labels.csv")
    impacts = gt[(gt["impact"] == 1) & (gt["confidence"] > 1) & (gt["visibility"] > 0)]
    nfl = summary["nfl_impact"]
    assert nfl["impacts"] == len(impacts) > 0
    table = spark.table("dett.det_impact").toPandas()
    assert table["tp"].sum() == nfl["tp"] and nfl["tp"] + nfl["fn"] == len(impacts)
    assert nfl["fp"] == nfl["predictions"] - nfl["tp"]


def test_rerun_replaces_the_tables(spark, plays, first_run):
    cfg, _ = first_run
    before = spark.table("dett.det_frames").toPandas().sort_values(["video", "frame"]).reset_index(drop=True)
    cfg2 = DetectionConfig(gt=cfg.gt, pred=cfg.pred, out_db="dett", max_plots=0, iou_thr=0.5)
    run_detection_metrics(spark, cfg2, progress=lambda m: None)
    after = spark.table("dett.det_frames").toPandas().sort_values(["video", "frame"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(before, after)
    names = {t.name for t in spark.catalog.listTables("dett")}
    assert {"det_frames", "det_videos", "det_errors", "det_quarantine"} <= names
    assert not [n for n in names if "__mljobs" in n]


def test_bad_rows_are_quarantined_with_reasons(spark, tmp_path):
    gt = tmp_path / "gt.csv"
    gt.write_text(
        "video,frame,label,left,width,top,height,impact,confidence,visibility\n"
        "a.mp4,1,H1,0,10,0,10,0,0,0\n"
        "a.mp4,1,H2,20,10,0,10,0,0,0\n"
        "a.mp4,1,H2,20,10,0,10,0,0,0\n"      # duplicate row
        "a.mp4,1,H3,40,0,0,10,0,0,0\n"       # width 0
        "a.mp4,x,H4,60,10,0,10,0,0,0\n"      # frame not a number
        "a.mp4,2,H5,NaN,10,0,10,0,0,0\n"     # NaN coordinate
        "a.mp4,2,H6,0,10,0,10,0,0,0\n"
    )
    pred = tmp_path / "pred.csv"
    pred.write_text(
        "video,frame,score,x1,y1,x2,y2\n"
        "a.mp4,1,0.95,0,0,10,10\n"
        "a.mp4,1,1.5,20,0,30,10\n"           # score outside [0, 1]
        "a.mp4,1,0.93,20,0,30,10\n"
        "a.mp4,2,0.97,5,5,5,9\n"             # x2 == x1: width 0
        "a.mp4,2,0.97,50,50,60,60,7\n"       # one field too many
        "a.mp4,2,,0,0,10,10\n"               # missing score
    )
    cfg = DetectionConfig(gt=str(gt), pred=str(pred), out_db="detbad", max_plots=0, max_bad_fraction=1.0)
    summary = run_detection_metrics(spark, cfg, progress=lambda m: None)
    assert summary["rows_read"] == {"gt": 7, "pred": 6}
    assert summary["rows_quarantined"] == 8
    reasons = summary["quarantine_reasons"]
    assert reasons["gt: duplicate row"] == 1
    assert reasons["gt: width or height <= 0"] == 1
    assert reasons["gt: missing or non-numeric frame"] == 1
    assert reasons["gt: NaN or infinite left"] == 1
    assert reasons["pred: score outside [0, 1]"] == 1
    assert reasons["pred: width or height <= 0"] == 1
    assert reasons["pred: missing or NaN score"] == 1
    assert any(k.startswith("pred: wrong token count") for k in reasons)
    q = spark.table("detbad.det_quarantine").toPandas()
    assert len(q) == 8 and set(q["input"]) == {"gt", "pred"}
    assert q[q["reason"].str.startswith("wrong token")]["raw_line"].iloc[0] == "a.mp4,2,0.97,50,50,60,60,7"
    assert json.loads(q[q["reason"] == "duplicate row"]["raw_line"].iloc[0])["label"] == "H2"
    # the valid boxes are still evaluated: frame 1 two helmets, both found; frame 2 one helmet, missed
    assert summary["overall"]["tp"] == 2 and summary["overall"]["fn"] == 1 and summary["overall"]["fp"] == 0

    strict = DetectionConfig(gt=str(gt), pred=str(pred), out_db="detbad2", max_plots=0, max_bad_fraction=0.1)
    with pytest.raises(BadDataError, match="rows are malformed"):
        run_detection_metrics(spark, strict, progress=lambda m: None)
    assert not spark.catalog.databaseExists("detbad2") or not spark.catalog.tableExists("detbad2.det_frames")


def test_missing_columns_and_bad_arguments_are_clear_errors(spark, tmp_path):
    gt = tmp_path / "gt.csv"
    gt.write_text("video,frame,label,left,width,top,height\na.mp4,1,H1,0,10,0,10\n")
    pred = tmp_path / "pred.csv"
    pred.write_text("video,frame,left,top,width,height\na.mp4,1,0,0,10,10\n")
    with pytest.raises(InputError, match="missing required column.*score"):
        run_detection_metrics(spark, DetectionConfig(gt=str(gt), pred=str(pred), max_plots=0))
    nobox = tmp_path / "nobox.csv"
    nobox.write_text("video,frame,score,left,top\na.mp4,1,0.9,0,0\n")
    with pytest.raises(InputError, match="left, top, width, height"):
        run_detection_metrics(spark, DetectionConfig(gt=str(gt), pred=str(nobox), max_plots=0))
    good = tmp_path / "good.csv"
    good.write_text("video,frame,score,left,top,width,height\na.mp4,1,0.9,0,0,10,10\n")
    with pytest.raises(InputError, match="impact"):
        run_detection_metrics(spark, DetectionConfig(gt=str(gt), pred=str(good), nfl_impact=True, max_plots=0))
    with pytest.raises(MljobsError, match="iou-thr"):
        DetectionConfig(gt="a.csv", pred="b.csv", iou_thr=0)
    with pytest.raises(MljobsError, match="invalid"):
        DetectionConfig(gt="a.csv", pred="b.csv", out_db="x;drop")
    with pytest.raises(InputError, match="does not exist"):
        run_detection_metrics(spark, DetectionConfig(gt="nodb.nosuchtable", pred=str(pred), max_plots=0))


def test_image_labels_layout_per_class_or_merged_and_hive_table_input(spark, tmp_path):
    gt = pd.DataFrame({
        "image": ["57502_000480_Endzone_frame0443.jpg"] * 3 + ["57502_000480_Endzone_frame0444.jpg"],
        "label": ["Helmet", "Helmet-Blurred", "Helmet", "Helmet-Partial"],
        "left": [0, 20, 40, 0], "width": [10] * 4, "top": [0] * 4, "height": [10] * 4,
    })
    gt.to_csv(tmp_path / "image_labels.csv", index=False)
    det = pd.DataFrame({
        "image": ["57502_000480_Endzone_frame0443.jpg"] * 3 + ["57502_000480_Endzone_frame0444.jpg"],
        "class": ["Helmet", "Helmet", "Helmet", "Helmet"],
        "score": [0.99, 0.98, 0.97, 0.96],
        "left": [0, 20, 40, 0], "top": [0] * 4, "width": [10] * 4, "height": [10] * 4,
    })
    spark.createDataFrame(det).write.mode("overwrite").saveAsTable("default.detimg_pred")
    per_class = run_detection_metrics(spark, DetectionConfig(
        gt=str(tmp_path / "image_labels.csv"), pred="default.detimg_pred", out_db="detimg", max_plots=0))
    o = per_class["overall"]
    assert (o["tp"], o["fp"], o["fn"]) == (2, 2, 2)  # the Helmet-Blurred/Partial boxes do not match "Helmet"
    assert list(per_class["videos"]) == ["57502_000480_Endzone"]
    frames = spark.table("detimg.det_frames").toPandas().sort_values("frame")
    assert frames["frame"].tolist() == [443, 444]
    merged = run_detection_metrics(spark, DetectionConfig(
        gt=str(tmp_path / "image_labels.csv"), pred="default.detimg_pred", out_db="detimg", max_plots=0,
        merge_labels=True))
    o = merged["overall"]
    assert (o["tp"], o["fp"], o["fn"], o["ap"]) == (4, 0, 0, 1.0)


@pytest.mark.slow
def test_cli_end_to_end_on_generated_plays(tmp_path):
    plays = tmp_path / "plays"
    gen = run_cli([str(ROOT / ".venv/bin/python"), "-m", "mljobs.datasets.helmets", "generate", "--plays", "2",
                   "--frames", "60", str(plays)], env_extra={"PYTHONPATH": str(ROOT / "lib")})
    assert gen.returncode == 0, gen.stderr
    assert json.loads(gen.stdout)["frames"] == 120
    data = tmp_path / "data"
    proc = run_cli(["./spark-submit.sh", "detection-metrics", "--gt", str(plays / "train_labels.csv"),
                    "--pred", str(plays / "detections.csv"), "--snap", str(plays / "snaps.csv"),
                    "--data-dir", str(data), "--summary", str(tmp_path / "s.json")])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = last_json(proc.stdout)
    assert summary == json.loads((tmp_path / "s.json").read_text())
    assert summary["status"] == "ok" and summary["job"] == "detection-metrics"
    for key in ("tp", "fp", "fn", "precision", "recall", "f1", "ap", "ap50", "ap75"):
        assert key in summary["overall"] and all(key in v for v in summary["videos"].values())
    assert summary["overall"]["tp"] + summary["overall"]["fn"] == summary["overall"]["num_gt"]
    stacked = sorted((data / "plots" / "detection").glob("*_stacked.png"))
    assert len(stacked) == 2 and len(summary["plots"]) == 5  # and COCO's PR curves of the one class
    assert "[detection-metrics" in proc.stdout  # progress lines

    bad = run_cli(["./spark-submit.sh", "detection-metrics", "--gt", "a.csv", "--pred", "b.csv", "--iou-thr", "1.5"])
    assert bad.returncode == 2 and last_json(bad.stdout)["error"].startswith("--iou-thr must be within")
