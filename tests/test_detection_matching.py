"""The matching engine and COCO AP without Spark: hand-made frames with known answers,
properties (hypothesis), and equality with pycocotools' COCOeval."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mljobs.detection_metrics import matching
from mljobs.detection_metrics.ap import coco_ap
from mljobs.detection_metrics.matching import MatchParams, iou_matrix, match_boxes
from mljobs.detection_metrics.nfl import impact_tp

from helpers import coco_reference, frame_counts

COLS = ["video", "frame", "cls", "kind", "left", "top", "width", "height", "score"]


def boxes(rows) -> pd.DataFrame:
    """rows: (frame, kind, left, top, width, height, score[, cls[, video]])."""
    out = []
    for r in rows:
        frame, kind, l, t, w, h, s = r[:7]
        cls = r[7] if len(r) > 7 else "helmet"
        video = r[8] if len(r) > 8 else "v"
        out.append((video, frame, cls, kind, float(l), float(t), float(w), float(h), np.nan if s is None else s))
    return pd.DataFrame(out, columns=COLS)


def counts_of(res, frame=1):
    row = frame_counts(res).set_index("frame").loc[frame]
    return int(row.tp), int(row.fp), int(row.fn)


# ----------------------------------------------------------------------------- IoU


def test_iou_values_with_and_without_the_plus_one_pixel_convention():
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[5, 0, 10, 10], [0, 0, 10, 10], [20, 20, 5, 5], [10, 0, 10, 10]], float)
    assert iou_matrix(a, b)[0].tolist() == pytest.approx([50 / 150, 1.0, 0.0, 0.0])
    # VOC: boxes cover pixels left..left+width inclusive: 6 x 11 overlap, 11 x 11 areas; touching
    # boxes share a column of pixels.
    assert iou_matrix(a, b, pixel_plus_one=True)[0].tolist() == pytest.approx(
        [66 / (121 + 121 - 66), 1.0, 0.0, 11 / (121 + 121 - 11)])


# ----------------------------------------------------------------------------- hand cases


def test_basic_frame_threshold_and_counts():
    res = match_boxes(boxes([
        (1, 0, 0, 0, 10, 10, None), (1, 0, 20, 0, 10, 10, None),
        (1, 1, 0, 0, 10, 10, 0.95),    # IoU 1 with the first helmet
        (1, 1, 21, 0, 10, 10, 0.92),   # IoU 90/110 with the second
        (1, 1, 50, 50, 10, 10, 0.91),  # nothing there: FP
        (1, 1, 20, 0, 10, 10, 0.50),   # below the confidence threshold: ignored
    ]), MatchParams(conf_thr=0.9, iou_thr=0.5))
    assert counts_of(res) == (2, 1, 0)
    fc = frame_counts(res).iloc[0]
    assert (fc.num_gt, fc.num_det) == (2, 3)
    det = res[res["kind"] == 1].set_index("score")
    assert det.loc[0.92, "match_iou"] == pytest.approx(90 / 110)
    assert det.loc[0.91, "best_iou"] == 0.0 and not det.loc[0.91, "matched"]
    assert not det.loc[0.50, "above_conf"] and not det.loc[0.50, "matched"]


def test_two_detections_of_one_helmet_resolved_by_confidence():
    res = match_boxes(boxes([
        (1, 0, 0, 0, 10, 10, None),
        (1, 1, 1, 0, 10, 10, 0.95),
        (1, 1, 0, 1, 10, 10, 0.99),  # same IoU, higher score: this one is the TP
    ]), MatchParams())
    assert counts_of(res) == (1, 1, 0)
    det = res[res["kind"] == 1].set_index("score")
    assert det.loc[0.99, "matched"] and not det.loc[0.95, "matched"]
    assert det.loc[0.95, "best_iou"] == pytest.approx(90 / 110)  # a duplicate, not a background FP


def test_greedy_takes_the_best_iou_and_optimal_finds_more_matches():
    rows = [
        (1, 0, 0, 0, 10, 10, None), (1, 0, 5, 0, 10, 10, None),
        (1, 1, 3, 0, 10, 10, 0.99),  # IoU .538 with the first helmet, .667 with the second
        (1, 1, 6, 0, 10, 10, 0.95),  # IoU .25 with the first, .818 with the second
    ]
    assert counts_of(match_boxes(boxes(rows), MatchParams(method="greedy"))) == (1, 1, 1)
    opt = match_boxes(boxes(rows), MatchParams(method="optimal"))
    assert counts_of(opt) == (2, 0, 0)
    det = opt[opt["kind"] == 1].set_index("score")
    assert det.loc[0.99, "match_iou"] == pytest.approx(70 / 130)
    assert det.loc[0.95, "match_iou"] == pytest.approx(90 / 110)


def test_equal_iou_goes_to_the_last_ground_truth_in_canonical_order_as_coco():
    # The detection overlaps both helmets equally (IoU 1/3); COCOeval keeps the last.
    res = match_boxes(boxes([
        (1, 0, 10, 0, 10, 10, None), (1, 0, 0, 0, 10, 10, None),
        (1, 1, 5, 0, 10, 10, 0.9),
    ]), MatchParams(conf_thr=0.5, iou_thr=0.3))
    gt = res[res["kind"] == 0].set_index("left")
    assert gt.loc[10.0, "matched"] and not gt.loc[0.0, "matched"]
    assert gt.loc[0.0, "best_iou"] == pytest.approx(1 / 3)


def test_equal_scores_are_broken_by_the_box_not_the_row_order():
    rows = [
        (1, 0, 1, 0, 10, 10, None),
        (1, 1, 0, 0, 10, 10, 0.95),  # IoU .818, left 0: first in canonical order, takes the helmet
        (1, 1, 1, 0, 10, 10, 0.95),  # IoU 1.0, but second
    ]
    for order in (rows, rows[::-1]):
        res = match_boxes(boxes(order), MatchParams())
        det = res[res["kind"] == 1].set_index("left")
        assert det.loc[0.0, "matched"] and not det.loc[1.0, "matched"]
        assert list(det.sort_index()["rank"]) == [0, 1]


def test_frames_with_only_ground_truth_only_detections_or_nothing_above_threshold():
    res = match_boxes(boxes([
        (1, 0, 0, 0, 10, 10, None), (1, 0, 30, 0, 10, 10, None),  # frame 1: two misses
        (2, 1, 0, 0, 10, 10, 0.97),                               # frame 2: one false box
        (3, 1, 0, 0, 10, 10, 0.30),                               # frame 3: nothing above 0.9
    ]), MatchParams())
    fc = frame_counts(res).set_index("frame")
    assert fc.loc[1, ["num_gt", "num_det", "tp", "fp", "fn"]].tolist() == [2, 0, 0, 0, 2]
    assert fc.loc[2, ["num_gt", "num_det", "tp", "fp", "fn"]].tolist() == [0, 1, 0, 1, 0]
    assert fc.loc[3, ["num_gt", "num_det", "tp", "fp", "fn"]].tolist() == [0, 0, 0, 0, 0]


def test_classes_are_matched_separately():
    rows = [(1, 0, 0, 0, 10, 10, None, "a"), (1, 1, 0, 0, 10, 10, 0.95, "b")]
    assert counts_of(match_boxes(boxes(rows), MatchParams())) == (0, 1, 1)


def test_crowded_frame_with_duplicates_and_chunking(monkeypatch):
    rng = np.random.default_rng(3)
    rows = []
    for i in range(36):  # a 6 x 6 grid of touching helmets
        x, y = (i % 6) * 12, (i // 6) * 12
        rows.append((1, 0, x, y, 12, 12, None))
        rows.append((1, 1, x + 1, y, 12, 12, 0.9 + 0.09 * rng.random()))
        if i % 4 == 0:  # a duplicate half a box away, lower score
            rows.append((1, 1, x + 6, y, 12, 12, 0.905))
    rows += [(f, 0, 0, 0, 10, 10, None) for f in range(2, 300)]  # many small frames too
    monkeypatch.setattr(matching, "_CHUNK_ELEMENTS", 50)  # force many chunks
    res = match_boxes(boxes(rows), MatchParams())
    assert counts_of(res) == (36, 9, 0)
    assert frame_counts(res)["fn"].sum() == 298


# ----------------------------------------------------------------------------- properties


def reference_greedy(df: pd.DataFrame, conf_thr: float, iou_thr: float) -> dict:
    """A plain per-group loop: the rule written out, to compare the vectorised engine with."""
    matched = {}
    for _, g in df.groupby(["video", "frame", "cls"], sort=False):
        gts = g[g["kind"] == 0].sort_values(["left", "top", "width", "height"], kind="stable")
        dets = g[(g["kind"] == 1) & (g["score"] >= conf_thr)].assign(neg=lambda d: -d["score"])
        dets = dets.sort_values(["neg", "left", "top", "width", "height"], kind="stable")
        taken = set()
        gb = gts[["left", "top", "width", "height"]].to_numpy()
        for idx, d in dets.iterrows():
            best, pick = min(iou_thr, 1 - 1e-10), None
            for j, gidx in enumerate(gts.index):
                if gidx in taken:
                    continue
                iou = iou_matrix(d[["left", "top", "width", "height"]].to_numpy(float)[None], gb[j:j + 1])[0, 0]
                if iou >= best:
                    best, pick = iou, gidx
            matched[idx] = pick is not None
            if pick is not None:
                taken.add(pick)
                matched[pick] = True
        for idx in g.index:
            matched.setdefault(idx, False)
    return matched


box_row = st.tuples(
    st.integers(1, 3),                 # frame
    st.sampled_from(["a", "b"]),       # class
    st.integers(0, 1),                 # kind
    st.integers(0, 30), st.integers(0, 30), st.integers(1, 12), st.integers(1, 12),
    st.sampled_from([0.2, 0.5, 0.9, 0.9, 0.95, 1.0]),
)


def frame_of(rows) -> pd.DataFrame:
    return pd.DataFrame(
        [("v1" if f < 3 else "v2", f, c, k, float(l), float(t), float(w), float(h), s if k else np.nan)
         for f, c, k, l, t, w, h, s in rows],
        columns=COLS,
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(box_row, min_size=0, max_size=40), st.sampled_from([0.0, 0.5, 0.9]),
       st.sampled_from([0.1, 0.5, 0.75]), st.randoms(use_true_random=False))
def test_invariants_hold_and_engine_equals_the_plain_loop(rows, conf_thr, iou_thr, rnd):
    df = frame_of(rows)
    params = MatchParams(conf_thr=conf_thr, iou_thr=iou_thr)
    res = match_boxes(df, params)
    fc = frame_counts(res)
    # tp + fn = number of ground-truth boxes; tp + fp = detections above the threshold
    expected_gt = df[df["kind"] == 0].groupby(["video", "frame"]).size()
    expected_det = df[(df["kind"] == 1) & (df["score"] >= conf_thr)].groupby(["video", "frame"]).size()
    fc = fc.set_index(["video", "frame"])
    assert ((fc["tp"] + fc["fn"]) == expected_gt.reindex(fc.index, fill_value=0)).all()
    assert ((fc["tp"] + fc["fp"]) == expected_det.reindex(fc.index, fill_value=0)).all()
    # the vectorised engine makes exactly the plain loop's decisions
    ref = reference_greedy(df, conf_thr, iou_thr)
    assert {i: bool(m) for i, m in res["matched"].items()} == ref
    # invariance to row order
    perm = list(range(len(df)))
    rnd.shuffle(perm)
    shuffled = match_boxes(df.iloc[perm].reset_index(drop=True), params)
    key = COLS + ["matched", "rank", "coco_tp"]
    a = res[key].fillna(-1).sort_values(key).reset_index(drop=True)
    b = shuffled[key].fillna(-1).sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    # optimal never matches fewer
    opt = frame_counts(match_boxes(df, MatchParams(conf_thr, iou_thr, "optimal"))).set_index(["video", "frame"])
    assert (opt["tp"] >= fc["tp"]).all()
    assert ((opt["tp"] + opt["fn"]) == (fc["tp"] + fc["fn"])).all()


# ----------------------------------------------------------------------------- pycocotools


def ours(res: pd.DataFrame, by=None) -> pd.DataFrame:
    dets = res[(res["kind"] == 1) & res["coco_kept"]]
    gts = res[res["kind"] == 0].groupby(["video", "cls"]).size().rename("n_gt").reset_index()
    return coco_ap(dets, gts, by=by)


def random_scene(seed: int, quantised: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for v in ("p1", "p2"):
        for f in range(1, 13):
            for c in ("Helmet", "Helmet-Blurred"):
                n_gt = int(rng.integers(0, 7)) if f != 5 else 0  # frame 5: detections only
                xy = rng.uniform(0, 200, (n_gt, 2))
                wh = rng.uniform(6, 30, (n_gt, 2))
                if quantised:
                    xy, wh = np.round(xy), np.round(wh)
                for i in range(n_gt):
                    rows.append((v, f, c, 0, *xy[i], *wh[i], np.nan))
                    if f == 7:  # frame 7: ground truth only
                        continue
                    for _ in range(int(rng.integers(0, 3))):
                        j = rng.normal(0, 1, 4)
                        j = np.round(j) if quantised else j
                        s = rng.uniform(0.4, 1.0)
                        s = round(s, 1) if quantised else s
                        rows.append((v, f, c, 1, xy[i, 0] + j[0], xy[i, 1] + j[1], max(1.0, wh[i, 0] + j[2]),
                                     max(1.0, wh[i, 1] + j[3]), s))
                if f == 7:
                    continue
                extra = 110 if (v, f, c) == ("p1", 3, "Helmet") else int(rng.integers(0, 3))  # > maxDets 100
                for _ in range(extra):
                    b = rng.uniform(0, 200, 2)
                    s = rng.uniform(0.0, 0.6)
                    s = round(s, 1) if quantised else s
                    rows.append((v, f, c, 1, b[0], b[1], 15.0, 12.0, s))
    return pd.DataFrame(rows, columns=COLS)


@pytest.mark.parametrize("seed,quantised", [(0, False), (1, True), (2, True)])
def test_ap_equals_pycocotools(seed, quantised):
    df = random_scene(seed, quantised)
    res = match_boxes(df, MatchParams(conf_thr=0.9, iou_thr=0.5))
    expected = coco_reference(res)
    got = ours(res).iloc[0][["ap", "ap50", "ap75"]].to_numpy(float)
    assert np.abs(got - expected).max() <= 1e-9, (got, expected)
    assert 0.1 < expected[0] < 0.9 and expected[1] > expected[2]  # a non-trivial case
    per_video = ours(res, by=["video"]).set_index("video")
    for video in ("p1", "p2"):
        exp = coco_reference(res, video)
        assert np.abs(per_video.loc[video, ["ap", "ap50", "ap75"]].to_numpy(float) - exp).max() <= 1e-9


def test_ap_of_a_perfect_detector_is_one_and_of_no_detections_zero():
    df = boxes([(1, 0, 0, 0, 10, 10, None), (1, 1, 0, 0, 10, 10, 0.9), (2, 0, 5, 5, 10, 10, None)])
    res = match_boxes(df, MatchParams())
    got = ours(res).iloc[0]
    # one of two helmets found at every threshold: precision 1 up to recall 0.5
    assert got["ap"] == pytest.approx(51 / 101) and got["ap50"] == pytest.approx(51 / 101)
    only_gt = match_boxes(boxes([(1, 0, 0, 0, 10, 10, None)]), MatchParams())
    assert ours(only_gt).iloc[0]["ap"] == 0.0


# ----------------------------------------------------------------------------- NFL impact


def test_nfl_impact_matching_window_iou_and_one_to_one():
    gt = pd.DataFrame({"frame": [100, 100, 200], "left": [0.0, 50.0, 0.0], "top": [0.0] * 3,
                       "width": [10.0] * 3, "height": [10.0] * 3})
    pred = pd.DataFrame({
        "frame": [104, 96, 105, 200, 200],
        "left": [0.0, 0.0, 50.0, 4.0, 0.0],
        "top": [0.0] * 5, "width": [10.0] * 5, "height": [10.0] * 5,
    })
    # impact 1 (frame 100, left 0): preds 0 (+4 frames) and 1 (-4) qualify, only one counts;
    # impact 2 (frame 100, left 50): pred 2 is 5 frames away -> no;
    # impact 3 (frame 200): pred 3 IoU 60/140 = .43 >= .35 and pred 4 IoU 1: one match.
    assert impact_tp(gt, pred) == 2
    assert impact_tp(gt, pred.iloc[[2]]) == 0
    far = pred.assign(left=pred["left"] + 7)  # IoU 30/170 < .35 everywhere
    assert impact_tp(gt, far) == 0


# ----------------------------------------------------------------------------- plots


def test_worst_frames_image_draws_boxes_from_the_video(tmp_path, monkeypatch):
    """opencv is optional: a stand-in module plays a video of grey frames."""
    import sys
    import types

    from mljobs.detection_metrics import plots

    reads = []

    class Capture:
        def __init__(self, path):
            self.pos = 0

        def set(self, prop, value):
            self.pos = int(value)

        def read(self):
            reads.append(self.pos)
            return True, np.full((72, 128, 3), 90 + self.pos, dtype=np.uint8)

        def release(self):
            pass

    fake = types.SimpleNamespace(VideoCapture=Capture, CAP_PROP_POS_FRAMES=1, COLOR_BGR2RGB=4,
                                 cvtColor=lambda img, code: img[..., ::-1])
    monkeypatch.setitem(sys.modules, "cv2", fake)
    video = tmp_path / "57583_000082_Endzone.mp4"
    video.write_bytes(b"")
    assert plots.find_video_file(str(tmp_path), "57583_000082_Endzone.mp4") == video
    bx = pd.DataFrame({"frame": [5, 5, 5, 9], "kind": [0, 1, 1, 0], "matched": [False, True, False, False],
                       "left": [10.0, 40, 70, 5], "top": [10.0, 10, 10, 5], "width": [12.0] * 4, "height": [12.0] * 4})
    out = plots.worst_frames_image(video, bx, [5, 9], tmp_path / "w.png", "test")
    assert out == tmp_path / "w.png" and out.read_bytes()[:4] == b"\x89PNG"
    assert reads == [4, 8]  # frame N is the video's frame N - 1
    monkeypatch.setitem(sys.modules, "cv2", None)  # not installed: skipped
    assert plots.worst_frames_image(video, bx, [5], tmp_path / "x.png") is None


@pytest.mark.parametrize("seed", range(5))
def test_lexsort_sorts_only_the_tied_runs_by_the_minor_keys_and_equals_numpy(seed):
    rng = np.random.default_rng(seed)
    n = 5_000
    keys = [rng.integers(0, 3, n).astype(float) * (-1.0) ** rng.integers(0, 2, n)  # -0.0 ties 0.0
            for _ in range(3)] + [rng.integers(0, 4, n) for _ in range(3)]
    major, minor = tuple(keys[3:] + keys[:1]), tuple(keys[1:3])
    assert np.array_equal(matching._lexsort(major[::-1], minor[::-1]), np.lexsort(minor[::-1] + major[::-1]))
    assert np.array_equal(matching._lexsort((np.arange(n),), minor), np.arange(n))  # no ties
