"""COCO's bbox evaluation (the twelve ``summarize()`` figures) against pycocotools' COCOeval
as the oracle: the numpy engine on generated COCO files of many shapes, each rule on a
small hand-made case, and the Spark job on COCO JSON and on CSV with iscrowd/area."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest

from mljobs.datasets.cocoboxes import generate_dicts
from mljobs import coco
from mljobs.detection_metrics.job import DetectionConfig, run_detection_metrics
from mljobs.errors import InputError

TOL = 1e-6


def cocoeval(inst: dict, dets: list, cat_ids: list | None = None, img_ids: list | None = None) -> np.ndarray:
    """pycocotools' twelve figures (bbox) on an instances dict and a results list."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = json.loads(json.dumps(inst))
        gt.createIndex()
        dt = gt.loadRes(json.loads(json.dumps(dets))) if dets else COCO()
        ev = COCOeval(gt, dt, "bbox")
        if cat_ids is not None:
            ev.params.catIds = cat_ids
        if img_ids is not None:
            ev.params.imgIds = img_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats, dtype=np.float64)


def as_boxes(inst: dict, dets: list) -> pd.DataFrame:
    """The files as the engine's rows, in file order (ground truth, then detections)."""
    names = {c["id"]: c["name"] for c in inst["categories"]}
    rows = [("coco", a["image_id"], names[a["category_id"]], 0, *a["bbox"], np.nan, a.get("area", np.nan),
             a.get("iscrowd", 0)) for a in inst["annotations"]]
    rows += [("coco", d["image_id"], names[d["category_id"]], 1, *d["bbox"], d["score"], np.nan, 0) for d in dets]
    return pd.DataFrame(rows, columns=["video", "frame", "cls", "kind", "left", "top", "width", "height", "score",
                                       "area", "iscrowd"])


def ours(inst: dict, dets: list, by=None) -> pd.DataFrame:
    return coco.evaluate(as_boxes(inst, dets), by=by)


def stats(frame: pd.DataFrame, i: int = 0) -> np.ndarray:
    return frame.iloc[i][list(coco.STATS)].to_numpy(np.float64)


# ----------------------------------------------------------------------------- the engine


@pytest.mark.parametrize("seed,images,boxes,crowded", [
    (0, 40, 8, True), (1, 60, 3, True), (2, 25, 15, False), (3, 80, 1, False), (4, 50, 6, True),
    (5, 30, 20, True), (6, 10, 2, False), (7, 120, 5, True),
])
def test_the_twelve_figures_equal_pycocotools(seed, images, boxes, crowded):
    inst, dets = generate_dicts(images, seed=seed, boxes=boxes, crowded=crowded)
    expected = cocoeval(inst, dets)
    got = stats(ours(inst, dets))
    assert np.abs(got - expected).max() <= TOL, (got, expected)
    assert (expected[:6] > -1).any()
    per_class = ours(inst, dets, by=["cls"]).set_index("cls")
    for cat in inst["categories"]:
        exp = cocoeval(inst, dets, cat_ids=[cat["id"]])
        assert np.abs(per_class.loc[cat["name"], list(coco.STATS)].to_numpy(float) - exp).max() <= TOL


@pytest.mark.parametrize("seed,boxes", [(0, 10), (1, 4), (2, 25)])
def test_matching_is_the_same_whatever_the_chunks(monkeypatch, seed, boxes):
    """Groups are matched in chunks padded to their most boxes; one group per chunk gives
    bit for bit the same as the default chunks."""
    args = _engine_args(*generate_dicts(60, seed=seed, boxes=boxes, crowded=True))
    default = coco.match_arrays(**args)
    assert (default["c_tp"] != 0).any() and (default["c_ig"] != 0).any()
    monkeypatch.setattr(coco, "_CHUNK_ELEMENTS", 1)
    single = coco.match_arrays(**args)
    for name in default:
        assert np.array_equal(default[name], single[name]), name


def _inst(anns, images=(1, 2, 3), cats=(1, 2, 3)):
    full = []
    for n, a in enumerate(anns):
        img, cat, box = a[:3]
        extra = a[3] if len(a) > 3 else {}
        full.append({"id": n + 1, "image_id": img, "category_id": cat, "bbox": list(box),
                     "area": extra.get("area", box[2] * box[3]), "iscrowd": extra.get("iscrowd", 0)})
    return {"images": [{"id": i} for i in images], "annotations": full,
            "categories": [{"id": c, "name": f"c{c}"} for c in cats]}


def _dets(rows):
    return [{"image_id": i, "category_id": c, "bbox": list(b), "score": s} for i, c, b, s in rows]


def _check(inst, dets) -> tuple[np.ndarray, pd.DataFrame]:
    expected = cocoeval(inst, dets)
    got = stats(ours(inst, dets))
    assert np.abs(got - expected).max() <= TOL, (got, expected)
    return expected, coco.match_arrays(**_engine_args(inst, dets))


def _engine_args(inst, dets):
    b = as_boxes(inst, dets)
    return dict(vcode=np.zeros(len(b), int), frame=b["frame"].to_numpy(), ccode=pd.factorize(b["cls"])[0],
                kind=b["kind"].to_numpy(), xywh=b[["left", "top", "width", "height"]].to_numpy(float),
                area=b["area"].to_numpy(float), iscrowd=b["iscrowd"].to_numpy(), pos=np.arange(len(b)),
                score=b["score"].fillna(0).to_numpy(float))


def test_a_crowd_region_absorbs_several_detections_which_are_ignored():
    inst = _inst([(1, 1, (0, 0, 100, 100), {"iscrowd": 1}), (1, 1, (200, 200, 50, 50))])
    dets = _dets([(1, 1, (10, 10, 40, 40), 0.9), (1, 1, (50, 50, 40, 40), 0.8), (1, 1, (0, 0, 90, 90), 0.7),
                  (1, 1, (200, 200, 50, 50), 0.6)])
    expected, res = _check(inst, dets)
    det = slice(2, 6)
    all_thrs = (1 << coco.N_T) - 1  # area "all", every threshold
    assert list(res["c_ig"][det][:3] & all_thrs) == [all_thrs] * 3  # inside the crowd: ignored, not FP
    assert (res["c_tp"][det][3] & all_thrs) == all_thrs
    assert expected[0] == pytest.approx(1.0)  # the crowd costs nothing: AP 1


def test_a_detection_on_an_ignored_ground_truth_is_not_a_false_positive():
    # the small box (area 100) is ignored for 'large'; its detection too (not an FP there)
    inst = _inst([(1, 1, (0, 0, 10, 10)), (1, 1, (100, 100, 200, 200))])
    dets = _dets([(1, 1, (0, 0, 10, 10), 0.95), (1, 1, (100, 100, 200, 200), 0.5)])
    expected, res = _check(inst, dets)
    large = 3 * coco.N_T
    assert (res["c_ig"][2] >> large) & 1 and not (res["c_tp"][2] >> large) & 1
    assert expected[5] == pytest.approx(1.0)  # APl: 1, the small box's detection not counted


def test_area_ranges_come_from_the_area_field():
    # a 50x50 box whose 'area' (a mask's) is 900: small for COCO, not medium
    inst = _inst([(1, 1, (0, 0, 50, 50), {"area": 900.0}), (2, 1, (0, 0, 20, 20), {"area": 1024.0})])
    dets = _dets([(1, 1, (0, 0, 50, 50), 0.9), (2, 1, (0, 0, 20, 20), 0.8)])
    expected, _ = _check(inst, dets)
    assert expected[3] == pytest.approx(1.0) and expected[4] == pytest.approx(1.0)  # 1024: small and medium


def test_equal_scores_keep_the_file_order_within_an_image_and_image_order_across():
    # two detections of one box with equal scores: the first in the file takes it
    inst = _inst([(1, 1, (0, 0, 100, 100)), (2, 1, (0, 0, 100, 100))])
    for order in ([(1, 1, (0, 0, 100, 100), 0.5), (1, 1, (0, 0, 100, 60), 0.5)],
                  [(1, 1, (0, 0, 100, 60), 0.5), (1, 1, (0, 0, 100, 100), 0.5)]):
        rows = order + [(2, 1, (300, 300, 10, 10), 0.5), (2, 1, (0, 0, 100, 100), 0.5)]
        _check(inst, _dets(rows))
        _check(inst, _dets(rows[2:] + rows[:2]))  # image 2 first in the file: COCO still ranks image 1 first


def test_max_dets_cut_offs():
    anns = [(1, 1, (i * 20, 0, 15, 15)) for i in range(12)]
    dets = [(1, 1, (i * 20, 0, 15, 15), 0.9 - i * 0.01) for i in range(12)]
    expected, _ = _check(_inst(anns), _dets(dets))
    assert expected[6] == pytest.approx(1 / 12) and expected[7] == pytest.approx(10 / 12)
    assert expected[8] == pytest.approx(1.0)


def test_images_and_classes_without_ground_truth_or_detections():
    # image 2: detections only (false positives); class 2: detections only (left out,
    # COCO's -1); class 3: ground truth only (0)
    inst = _inst([(1, 1, (0, 0, 50, 50)), (1, 3, (0, 0, 50, 50))])
    dets = _dets([(1, 1, (0, 0, 50, 50), 0.5), (2, 1, (0, 0, 50, 50), 0.9), (1, 2, (0, 0, 50, 50), 0.8)])
    expected, _ = _check(inst, dets)
    per_class = ours(inst, dets, by=["cls"]).set_index("cls")
    assert per_class.loc["c2", "ap"] == -1 and per_class.loc["c3", "ap"] == 0
    assert expected[0] == pytest.approx(np.mean([per_class.loc["c1", "ap"], 0.0]))


# ----------------------------------------------------------------------------- the job


@pytest.fixture(scope="module")
def coco_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("coco")
    inst, dets = generate_dicts(60, seed=21)
    (out / "instances.json").write_text(json.dumps(inst))
    (out / "results.json").write_text(json.dumps(dets))
    return out, inst, dets


def test_the_job_on_coco_json_equals_pycocotools_and_quarantines_malformed_elements(spark, coco_files, tmp_path):
    """The clean files plus malformed annotations and results: those are quarantined and
    counted, and the twelve figures (overall, per video, per class) are COCOeval's on the
    clean files."""
    _, inst, dets = coco_files
    first = inst["images"][0]["id"]
    bad_inst = json.loads(json.dumps(inst))
    bad_inst["annotations"].append({"id": 9001, "image_id": first, "category_id": 1,
                                    "bbox": [1, 2, -3, 4], "area": 5, "iscrowd": 0})  # negative width
    bad_inst["annotations"].append({"id": 9002, "image_id": first, "category_id": 1})  # no bbox
    bad = [dict(d) for d in dets]
    bad.insert(5, {"image_id": 999_999, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5})
    bad.append({"image_id": first, "category_id": 1, "score": 0.5})
    bad.append({"image_id": first, "category_id": 77, "bbox": [1, 2, 3, 4], "score": 0.5})
    bad.append({"image_id": first, "category_id": 1, "bbox": [1, 2, 3], "score": 0.5})
    bad.append({"image_id": first, "category_id": 1, "bbox": [1, 2, 3, -1], "score": 0.5})
    (tmp_path / "inst.json").write_text(json.dumps(bad_inst))
    (tmp_path / "res.json").write_text(json.dumps(bad))
    cfg = DetectionConfig(gt=str(tmp_path / "inst.json"), pred=str(tmp_path / "res.json"), out_db="detcoco",
                          plots_dir=str(tmp_path / "plots"), max_plots=3)
    summary = run_detection_metrics(spark, cfg, progress=lambda m: None)

    assert summary["rows_read"] == {"gt": len(inst["annotations"]) + 2, "pred": len(dets) + 5}
    assert summary["rows_quarantined"] == 7
    assert summary["quarantine_reasons"] == {
        "gt: missing bbox": 1, "gt: width or height <= 0": 1,
        "pred: bbox is not a list of four numbers": 1, "pred: missing bbox": 1,
        "pred: unknown category_id (not in the instances file's categories)": 1,
        "pred: unknown image_id (not in the instances file's images)": 1, "pred: width or height <= 0": 1}
    q = spark.table("detcoco.det_quarantine").toPandas()
    assert len(q) == 7 and q["raw_line"].str.contains("999999").any()

    expected = cocoeval(inst, dets)
    got = np.array([summary["coco"]["overall"][k] for k in coco.STATS])
    assert np.abs(got - expected).max() <= TOL, (got, expected)
    assert summary["overall"]["ap"] == pytest.approx(expected[0], abs=TOL)
    table = spark.table("detcoco.det_coco").toPandas()
    for cat in inst["categories"]:
        exp = cocoeval(inst, dets, cat_ids=[cat["id"]])
        row = table[(table["scope"] == "class") & (table["cls"] == cat["name"])].iloc[0]
        assert np.abs(row[list(coco.STATS)].to_numpy(float) - exp).max() <= TOL
        assert summary["coco"]["classes"][cat["name"]]["ap"] == pytest.approx(exp[0], abs=TOL)
    assert summary["coco"]["classes"]["class5"]["ap"] == -1  # detections, no ground truth: COCO's -1
    video = table[table["scope"] == "video"].iloc[0]
    assert video["video"] == "coco" and np.abs(video[list(coco.STATS)].to_numpy(float) - expected).max() <= TOL
    pr = [p for p in summary["plots"] if p.endswith("_coco_pr.png")]
    assert [p.rsplit("/", 1)[1] for p in pr] == [f"class_class{c}_coco_pr.png" for c in (1, 2, 3)]


def test_the_job_on_csv_with_iscrowd_and_area_per_video(spark, coco_files, tmp_path):
    _, inst, dets = coco_files
    b = as_boxes(inst, dets)
    # two videos: the images split by id; each video's figures are COCOeval on its images
    b["video"] = np.where(b["frame"] % 2 == 0, "even", "odd")
    # ground truth per class: the image_labels layout (<video>_frame<N>.jpg)
    gt = b[b["kind"] == 0].assign(image=lambda d: d["video"] + "_frame" + d["frame"].astype(str) + ".jpg")
    gt[["image", "cls", "left", "top", "width", "height", "area", "iscrowd"]].rename(
        columns={"cls": "label"}).to_csv(tmp_path / "gt.csv", index=False)
    b[b["kind"] == 1][["video", "frame", "cls", "score", "left", "top", "width", "height"]].rename(
        columns={"cls": "label"}).to_csv(tmp_path / "pred.csv", index=False)
    cfg = DetectionConfig(gt=str(tmp_path / "gt.csv"), pred=str(tmp_path / "pred.csv"), out_db="detcoco",
                          max_plots=0)
    summary = run_detection_metrics(spark, cfg, progress=lambda m: None)
    # COCO's images are sorted (video, frame): renumber so that its sorted ids agree
    images = sorted({(("even" if i % 2 == 0 else "odd"), i) for i in (im["id"] for im in inst["images"])})
    new_id = {img: n + 1 for n, (_, img) in enumerate(images)}
    inst2 = {**inst, "images": [{"id": new_id[im["id"]]} for im in inst["images"]],
             "annotations": [{**a, "image_id": new_id[a["image_id"]]} for a in inst["annotations"]]}
    dets2 = [{**d, "image_id": new_id[d["image_id"]]} for d in dets]
    expected = cocoeval(inst2, dets2)
    got = np.array([summary["coco"]["overall"][k] for k in coco.STATS])
    assert np.abs(got - expected).max() <= TOL, (got, expected)
    for video in ("even", "odd"):
        ids = [new_id[i] for v, i in images if v == video]
        exp = cocoeval(inst2, dets2, img_ids=ids)
        got = np.array([summary["coco"]["videos"][video][k] for k in coco.STATS])
        assert np.abs(got - exp).max() <= TOL, (video, got, exp)


def test_coco_results_need_the_coco_instances_file(spark, coco_files, tmp_path):
    out, _, _ = coco_files
    (tmp_path / "gt.csv").write_text("video,frame,label,left,top,width,height\nv,1,a,0,0,1,1\n")
    with pytest.raises(InputError, match="COCO instances file"):
        run_detection_metrics(spark, DetectionConfig(gt=str(tmp_path / "gt.csv"), pred=str(out / "results.json"),
                                                     out_db="detcoco", max_plots=0), progress=lambda m: None)
    with pytest.raises(InputError, match="not a COCO instances file"):
        run_detection_metrics(spark, DetectionConfig(gt=str(out / "results.json"), pred=str(out / "results.json"),
                                                     out_db="detcoco", max_plots=0), progress=lambda m: None)
