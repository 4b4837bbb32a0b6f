"""The matching engine: ground truth and detections of many frames matched at once.

Input is one flat table of boxes (pandas), ground truth (``kind`` 0) and detections
(``kind`` 1) together, keyed by ``video``, ``frame`` and ``cls``; a *group* is one
(video, frame, class). Within a group the boxes are put in a canonical order that does
not depend on the input row order:

* ground truth by (left, top, width, height);
* detections by score descending, then (left, top, width, height).

Greedy matching follows COCOeval (``pycocotools.cocoeval.COCOeval.evaluateImg``): each
detection in that order takes the unmatched ground-truth box of highest IoU when the IoU
is at least the threshold (``min(t, 1 - 1e-10)``); among equal IoUs the *last* ground
truth in the order wins, as in COCOeval's loop. It runs at once for the user threshold
(detections with score >= the confidence threshold, all of them) and for the ten COCO
thresholds 0.50:0.05:0.95 (all detections, the first 100 of each group), so one pass
yields the per-frame counts and the flags AP needs.

The loop is over the k-th detection of every group simultaneously: the boxes of each
group are padded into dense (groups x detections x ground truth) arrays, grouped into
buckets of similar size so one crowded frame does not inflate the padding of all others.

``optimal`` replaces the user-threshold greedy step by a Hungarian assignment per group
(scipy's ``linear_sum_assignment``): the most matches with IoU >= threshold, and among
those the largest total IoU.

This module imports only numpy, pandas and scipy: Spark ships it to the Python workers
by value (see ``job.py``), so the workers need not have mljobs installed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

COCO_IOU_THRS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
COCO_MAX_DETS = 100
MATCH_METHODS = ("greedy", "optimal")
# Padded elements (groups x detections x ground truth) per chunk: bounds memory.
_CHUNK_ELEMENTS = 1_000_000

RESULT_COLUMNS = {
    "rank": "int32",         # position in the group's canonical order (per kind)
    "above_conf": "bool",    # detection with score >= conf_thr (ground truth: True)
    "matched": "bool",       # matched at the user threshold
    "match_iou": "float64",  # IoU of that match (NaN when unmatched)
    "best_iou": "float64",   # best IoU with any box of the other kind in the group
    "coco_tp": "int32",      # detections: bit t set when a TP at COCO_IOU_THRS[t]
    "coco_kept": "bool",     # detections among the first COCO_MAX_DETS of the group
}


@dataclass(frozen=True)
class MatchParams:
    conf_thr: float = 0.9
    iou_thr: float = 0.5
    method: str = "greedy"
    pixel_plus_one: bool = False
    coco: bool = True  # also match at the ten COCO thresholds (for AP)

    def validate(self) -> "MatchParams":
        if not 0.0 <= self.conf_thr <= 1.0:
            raise ValueError(f"confidence threshold must be within [0, 1], got {self.conf_thr}")
        if not 0.0 < self.iou_thr <= 1.0:
            raise ValueError(f"IoU threshold must be within (0, 1], got {self.iou_thr}")
        if self.method not in MATCH_METHODS:
            raise ValueError(f"unknown match method {self.method!r}; valid: {', '.join(MATCH_METHODS)}")
        return self


def iou_matrix(a: np.ndarray, b: np.ndarray, pixel_plus_one: bool = False) -> np.ndarray:
    """IoU of boxes ``a`` (..., n, 4) against ``b`` (..., m, 4), boxes as left, top, width,
    height; the same floating-point operations as pycocotools' ``bbIou`` (so equal IoUs
    compare equal). ``pixel_plus_one``: inclusive pixel boxes (VOC), area (w+1)(h+1)."""
    al, at, aw, ah = (a[..., :, None, i] for i in range(4))
    bl, bt, bw, bh = (b[..., None, :, i] for i in range(4))
    one = 1.0 if pixel_plus_one else 0.0
    iw = np.minimum(aw + al, bw + bl) - np.maximum(al, bl) + one
    ih = np.minimum(ah + at, bh + bt) - np.maximum(at, bt) + one
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    area_a = (aw + one) * (ah + one)
    area_b = (bw + one) * (bh + one)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / (area_a + area_b - inter)
    return np.where(inter > 0, iou, 0.0)


def canonical_order(vcode: np.ndarray, frame: np.ndarray, ccode: np.ndarray, kind: np.ndarray,
                    xywh: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row order by (video, frame, cls, kind, -score, left, top, width, height, input
    position) and the group id (video, frame, cls) of each row in that order."""
    n = len(frame)
    neg = np.where(kind == 1, -score, 0.0)
    order = _lexsort((xywh[:, 0], neg, kind, ccode, frame, vcode), (xywh[:, 3], xywh[:, 2], xywh[:, 1]))
    v, f, c = vcode[order], frame[order], ccode[order]
    change = np.ones(n, dtype=bool)
    if n > 1:
        change[1:] = (v[1:] != v[:-1]) | (f[1:] != f[:-1]) | (c[1:] != c[:-1])
    gid = np.cumsum(change) - 1
    return order, gid


def _lexsort(major: tuple, minor: tuple) -> np.ndarray:
    """``np.lexsort(minor + major)`` (keys least significant first; stable, so equal rows keep
    their input order), sorting by the ``minor`` keys only the runs of rows equal in every
    ``major`` key: the float keys are most of a lexsort's cost, and such runs are rare."""
    order = np.lexsort(major)
    same = np.ones(max(len(order) - 1, 0), dtype=bool)
    for key in major:
        k = key[order]
        same &= k[1:] == k[:-1]
    if not same.any():
        return order
    run = np.cumsum(np.concatenate(([True], ~same))) - 1
    tied = np.flatnonzero(np.bincount(run)[run] > 1)
    rows = order[tied]
    order[tied] = rows[np.lexsort((*[key[rows] for key in minor], run[tied]))]
    return order


def match_arrays(vcode: np.ndarray, frame: np.ndarray, ccode: np.ndarray, kind: np.ndarray,
                 xywh: np.ndarray, score: np.ndarray, params: MatchParams) -> dict[str, np.ndarray]:
    """The engine on plain arrays (video and class as integer codes, score 0 for ground
    truth); returns the ``RESULT_COLUMNS`` arrays in the input row order."""
    n = len(frame)
    if n == 0:
        return {c: np.zeros(0, dtype=t) for c, t in RESULT_COLUMNS.items()}
    kind = np.asarray(kind, dtype=np.int8)
    frame = np.asarray(frame, dtype=np.int64)
    xywh = np.asarray(xywh, dtype=np.float64)
    score = np.where(kind == 1, np.nan_to_num(np.asarray(score, dtype=np.float64)), 0.0)
    order, gid = canonical_order(np.asarray(vcode), frame, np.asarray(ccode), kind, xywh, score)
    kind, xywh, score = kind[order], xywh[order], score[order]

    n_groups = int(gid[-1]) + 1
    is_gt = kind == 0
    n_gt = np.bincount(gid[is_gt], minlength=n_groups)
    n_det = np.bincount(gid[~is_gt], minlength=n_groups)
    n_conf = np.bincount(gid[~is_gt & (score >= params.conf_thr)], minlength=n_groups)
    rank = _group_ranks(gid, kind)

    res_matched = np.zeros(n, dtype=bool)
    res_match_iou = np.full(n, np.nan)
    res_best_iou = np.zeros(n)
    res_coco = np.zeros(n, dtype=np.int32)

    # Rows of each group: groups are contiguous; ground truth first, then detections.
    group_start = np.searchsorted(gid, np.arange(n_groups), side="left")
    size = np.maximum(np.maximum(n_gt, n_det), 1)
    bucket = np.ceil(np.log2(size)).astype(np.int64)
    for b in np.unique(bucket):
        members = np.flatnonzero(bucket == b)
        pd_max = int(n_det[members].max())
        pg_max = int(n_gt[members].max())
        per_group = max(1, pd_max * max(pg_max, 1))
        step = max(1, _CHUNK_ELEMENTS // per_group)
        for i in range(0, len(members), step):
            chunk = members[i:i + step]
            _match_chunk(chunk, group_start, n_gt, n_det, n_conf, xywh, params,
                         res_matched, res_match_iou, res_best_iou, res_coco)

    sorted_results = {
        "rank": rank,
        "above_conf": np.where(is_gt, True, score >= params.conf_thr),
        "matched": res_matched,
        "match_iou": res_match_iou,
        "best_iou": res_best_iou,
        "coco_tp": res_coco,
        "coco_kept": ~is_gt & (rank < COCO_MAX_DETS),
    }
    out = {}
    for name, values in sorted_results.items():
        back = np.empty_like(values)
        back[order] = values
        out[name] = back
    return out


def match_boxes(boxes: pd.DataFrame, params: MatchParams) -> pd.DataFrame:
    """Match ground truth and detections group by group: ``boxes`` (same row order) with
    the ``RESULT_COLUMNS`` added; ``rank`` is each box's position in its group's
    canonical order (ground truth and detections counted separately).

    ``boxes`` needs video, frame, cls, kind (0 ground truth, 1 detection), left, top,
    width, height and score (ignored for ground truth). Boxes must be valid (positive
    size, finite numbers, scores in [0, 1]): the Spark job quarantines the others first.
    """
    params.validate()
    res = match_arrays(
        pd.factorize(boxes["video"], sort=False)[0],
        boxes["frame"].to_numpy(np.int64),
        pd.factorize(boxes["cls"], sort=False)[0],
        boxes["kind"].to_numpy(np.int8),
        boxes[["left", "top", "width", "height"]].to_numpy(np.float64),
        boxes["score"].to_numpy(np.float64, na_value=0.0),
        params,
    )
    out = boxes.copy()
    for name, values in res.items():
        out[name] = values
    return out


def _match_chunk(chunk, group_start, n_gt, n_det, n_conf, xywh, params,
                 res_matched, res_match_iou, res_best_iou, res_coco) -> None:
    c_n = len(chunk)
    g_cnt, d_cnt, conf_cnt = n_gt[chunk], n_det[chunk], n_conf[chunk]
    pg, pdm = int(g_cnt.max()), int(d_cnt.max())
    if pdm == 0:  # ground truth only: every box is a miss
        return
    # Row index of (group c, gt j) and (group c, det k) in the sorted frame.
    c_idx_g = np.repeat(np.arange(c_n), g_cnt)
    j_idx = _ranks(g_cnt)
    gt_rows = group_start[chunk][c_idx_g] + j_idx
    c_idx_d = np.repeat(np.arange(c_n), d_cnt)
    k_idx = _ranks(d_cnt)
    det_rows = group_start[chunk][c_idx_d] + g_cnt[c_idx_d] + k_idx
    if pg == 0:  # detections only: every one a false positive
        return

    gb = np.zeros((c_n, pg, 4))
    gb[c_idx_g, j_idx] = xywh[gt_rows]
    db = np.zeros((c_n, pdm, 4))
    db[c_idx_d, k_idx] = xywh[det_rows]
    gt_valid = np.arange(pg)[None, :] < g_cnt[:, None]
    det_pos = np.arange(pdm)[None, :]
    iou = iou_matrix(db, gb, params.pixel_plus_one)  # (c, pdm, pg)
    iou = np.where(gt_valid[:, None, :] & (det_pos < d_cnt[:, None])[:, :, None], iou, 0.0)

    thrs = [params.iou_thr] + (list(COCO_IOU_THRS) if params.coco else [])
    thr = np.minimum(np.asarray(thrs, dtype=np.float64), 1 - 1e-10)
    t_n = len(thr)
    det_valid = np.empty((t_n, c_n, pdm), dtype=bool)
    det_valid[0] = det_pos < conf_cnt[:, None]
    det_valid[1:] = det_pos < np.minimum(d_cnt, COCO_MAX_DETS)[:, None]

    det_gt, matched = _greedy(iou, thr, det_valid, gt_valid)
    if params.method == "optimal":
        det_gt[0], matched[0] = _optimal(iou, conf_cnt, g_cnt, params.iou_thr)

    # Per detection
    user = det_gt[0][c_idx_d, k_idx]
    res_matched[det_rows] = user >= 0
    res_match_iou[det_rows] = np.where(user >= 0, iou[c_idx_d, k_idx, np.maximum(user, 0)], np.nan)
    res_best_iou[det_rows] = iou[c_idx_d, k_idx].max(axis=-1)
    if t_n > 1:
        bits = (det_gt[1:] >= 0).astype(np.int32)  # (10, c, pdm)
        weights = (1 << np.arange(t_n - 1, dtype=np.int32))[:, None, None]
        res_coco[det_rows] = (bits * weights).sum(axis=0)[c_idx_d, k_idx]
    # Per ground-truth box: matched flag, IoU of its match, best IoU with a detection
    # above the confidence threshold.
    res_matched[gt_rows] = matched[0][c_idx_g, j_idx]
    gt_det = np.full((c_n, pg), -1, dtype=np.int64)
    cc, kk = np.nonzero(det_gt[0] >= 0)
    gt_det[cc, det_gt[0][cc, kk]] = kk
    mk = gt_det[c_idx_g, j_idx]
    res_match_iou[gt_rows] = np.where(mk >= 0, iou[c_idx_g, np.maximum(mk, 0), j_idx], np.nan)
    conf_iou = np.where((det_pos < conf_cnt[:, None])[:, :, None], iou, 0.0)
    res_best_iou[gt_rows] = conf_iou.max(axis=1)[c_idx_g, j_idx]


def _group_ranks(gid: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """Each row's position within its (group, kind); rows are sorted by group then kind."""
    n = len(gid)
    seg_start = np.zeros(n, dtype=np.int64)
    new_seg = np.ones(n, dtype=bool)
    new_seg[1:] = (gid[1:] != gid[:-1]) | (kind[1:] != kind[:-1])
    starts = np.flatnonzero(new_seg)
    seg_start[starts] = starts
    seg_start = np.maximum.accumulate(seg_start)
    return (np.arange(n) - seg_start).astype(np.int32)


def _greedy(iou: np.ndarray, thr: np.ndarray, det_valid: np.ndarray, gt_valid: np.ndarray):
    """COCOeval's greedy rule at every threshold at once: (thresholds, groups, detections)
    ground-truth index or -1, and the matched flags of the ground truth (thresholds, groups,
    ground truth). A detection that reaches one box at the lowest threshold, a box no other
    detection reaches, takes it wherever its IoU and validity allow, whatever the order;
    only the contested ones go through the loop (``_greedy_loop``), compacted per group."""
    t_n, (c_n, _, pg) = len(thr), iou.shape
    cand = (iou >= thr.min()) & det_valid.any(axis=0)[:, :, None] & gt_valid[:, None, :]
    contested = (cand.sum(axis=2) > 1) | (cand & (cand.sum(axis=1) > 1)[:, None, :]).any(axis=2)
    j = iou.argmax(axis=2)  # an uncontested detection's one box
    best = np.take_along_axis(iou, j[..., None], axis=2)[..., 0]
    ok = (best[None] >= thr[:, None, None]) & det_valid & (cand.any(axis=2) & ~contested)[None]
    det_gt = np.where(ok, j[None], -1)
    matched = np.zeros((t_n, c_n, pg), dtype=bool)
    tt, cc, kk = np.nonzero(ok)
    matched[tt, cc, j[cc, kk]] = True
    c_at, k_at = np.nonzero(contested)  # by group, then rank
    if len(c_at):
        groups, g_at, counts = np.unique(c_at, return_inverse=True, return_counts=True)
        j_at = _ranks(counts)
        sub = np.zeros((len(groups), int(counts.max()), pg))
        sub[g_at, j_at] = iou[c_at, k_at]
        sub_valid = np.zeros((t_n, *sub.shape[:2]), dtype=bool)
        sub_valid[:, g_at, j_at] = det_valid[:, c_at, k_at]
        sub_gt, sub_matched = _greedy_loop(sub, thr, sub_valid, gt_valid[groups])
        det_gt[:, c_at, k_at] = sub_gt[:, g_at, j_at]
        matched[:, groups] |= sub_matched
    return det_gt, matched


def _greedy_loop(iou: np.ndarray, thr: np.ndarray, det_valid: np.ndarray, gt_valid: np.ndarray):
    """``_greedy`` by the rule itself, over the k-th detection of every group at once."""
    c_n, pdm, pg = iou.shape
    t_n = len(thr)
    matched = np.zeros((t_n, c_n, pg), dtype=bool)
    det_gt = np.full((t_n, c_n, pdm), -1, dtype=np.int64)
    for k in range(pdm):
        iou_k = iou[:, k, :]  # (c, pg)
        cand = (iou_k[None] >= thr[:, None, None]) & ~matched & gt_valid[None]
        masked = np.where(cand, iou_k[None], -1.0)
        j = pg - 1 - np.argmax(masked[..., ::-1], axis=-1)  # the last of equal maxima
        best = np.take_along_axis(masked, j[..., None], axis=-1)[..., 0]
        ok = (best >= 0) & det_valid[:, :, k]
        det_gt[:, :, k] = np.where(ok, j, -1)
        tt, cc = np.nonzero(ok)
        matched[tt, cc, j[tt, cc]] = True
    return det_gt, matched


def _ranks(counts: np.ndarray) -> np.ndarray:
    """0..n-1 for each count, concatenated."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(total) - starts


def _optimal(iou, conf_cnt, g_cnt, iou_thr):
    """Hungarian assignment per group: most matches with IoU >= thr, then most IoU."""
    from scipy.optimize import linear_sum_assignment

    c_n, pdm, pg = iou.shape
    det_gt = np.full((c_n, pdm), -1, dtype=np.int64)
    matched = np.zeros((c_n, pg), dtype=bool)
    thr = min(iou_thr, 1 - 1e-10)
    for c in range(c_n):
        nd, ng = int(conf_cnt[c]), int(g_cnt[c])
        if nd == 0 or ng == 0:
            continue
        sub = iou[c, :nd, :ng]
        ok = sub >= thr
        if not ok.any():
            continue
        # A weight above any sum of IoUs makes the number of matches come first.
        weight = np.where(ok, (min(nd, ng) + 1) + sub, 0.0)
        rows, cols = linear_sum_assignment(weight, maximize=True)
        keep = ok[rows, cols]
        det_gt[c, rows[keep]] = cols[keep]
        matched[c, cols[keep]] = True
    return det_gt, matched


def max_matching(ok: np.ndarray) -> int:
    """Size of a maximum bipartite matching of a boolean eligibility matrix."""
    from scipy.optimize import linear_sum_assignment

    if ok.size == 0 or not ok.any():
        return 0
    rows, cols = linear_sum_assignment(ok.astype(np.float64), maximize=True)
    return int(ok[rows, cols].sum())


ARROW_RESULT_TYPES = {"rank": "int32", "above_conf": "bool", "matched": "bool", "match_iou": "float64",
                      "best_iou": "float64", "coco_tp": "int32", "coco_kept": "bool"}


def match_table(table, params: MatchParams):
    """``match_arrays`` on a pyarrow Table: the table with the result columns appended.
    Strings (video, class) are dictionary-encoded in Arrow, never turned into Python
    objects. Rows with a non-null ``_reason`` (rejected input) get null results."""
    import pyarrow as pa
    import pyarrow.compute as pc

    types = {k: pa.from_numpy_dtype(np.dtype(v)) for k, v in ARROW_RESULT_TYPES.items()}
    if "_reason" in table.column_names and table.column("_reason").null_count < table.num_rows:
        valid = pc.is_null(table.column("_reason"))
        good = match_table(table.filter(valid).drop_columns(["_reason"]).append_column(
            "_reason", pa.nulls(int(pc.sum(valid).as_py() or 0), pa.string())), params)
        bad = table.filter(pc.invert(valid))
        for name, typ in types.items():
            bad = bad.append_column(name, pa.nulls(bad.num_rows, typ))
        return pa.concat_tables([good.select(bad.column_names), bad])
    if table.num_rows == 0:
        for name, typ in types.items():
            table = table.append_column(name, pa.array([], typ))
        return table

    def codes(name):
        return table.column(name).combine_chunks().dictionary_encode().indices.to_numpy(zero_copy_only=False)

    def num(name, fill=None):
        col = table.column(name)
        if fill is not None:
            col = pc.fill_null(col, fill)
        return col.to_numpy()

    res = match_arrays(
        codes("video"), num("frame"), codes("cls"), num("kind"),
        np.column_stack([num("left"), num("top"), num("width"), num("height")]),
        num("score", 0.0), params,
    )
    for name, values in res.items():
        table = table.append_column(name, pa.array(values, types[name]))
    return table


def batch_matcher(params: MatchParams, columns: list[str], min_rows: int = 200_000, extra=None):
    """A ``mapInArrow`` function over rows partitioned by (video, frame) and grouped by
    (video, frame) within each partition: record batches are gathered to at least
    ``min_rows`` rows (many frames per numpy pass) and cut at a frame boundary; the last,
    possibly incomplete, frame waits for the next batch. Yields record batches with
    ``columns`` (the input's and the ``RESULT_COLUMNS``). ``extra``: a function applied to
    each matched pyarrow Table (e.g. ``coco.match_table``), whose columns ``columns`` may
    name too."""

    def both(table):
        out = match_table(table, params)
        return (extra(out) if extra is not None else out).select(columns).to_batches()

    def run(batches):
        import pyarrow as pa
        import pyarrow.compute as pc

        pending = []
        rows = 0
        for batch in batches:
            if batch.num_rows == 0:
                continue
            pending.append(batch)
            rows += batch.num_rows
            if rows < min_rows:
                continue
            table = pa.Table.from_batches(pending)
            video, frame = table.column("video"), table.column("frame")
            last_v, last_f = video[-1], frame[-1]
            same_v = pc.is_null(video) if not last_v.is_valid else pc.equal(video, last_v)
            same_f = pc.is_null(frame) if not last_f.is_valid else pc.equal(frame, last_f)
            n_tail = int(pc.sum(pc.and_(pc.fill_null(same_v, False), pc.fill_null(same_f, False))).as_py() or 0)
            n_tail = max(1, n_tail)
            head = table.slice(0, table.num_rows - n_tail)
            pending, rows = table.slice(table.num_rows - n_tail).to_batches(), n_tail
            if head.num_rows:
                yield from both(head)
        if rows:
            table = pa.Table.from_batches(pending)
            yield from both(table)

    return run
