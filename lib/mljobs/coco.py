"""COCO's bbox evaluation, rule for rule as pycocotools' ``COCOeval`` (evaluateImg,
accumulate, summarize), in numpy: the twelve ``summarize()`` figures. Plumbing: the
detection-metrics job and train-detector's validation both use it.

Two steps, both vectorised over many images at once:

1. ``match_arrays`` — per (image, class), COCO's ``evaluateImg`` for the four area ranges
   (all, small, medium, large) and the ten IoU thresholds 0.50:0.05:0.95 at once:

   * detections ranked by score, equal scores in input order (``pos``); only the first
     100 (the largest maxDets) take part;
   * ground truth in input order; per area range a box is *ignored* when it is a crowd
     region or its area (the ``area`` field, else width × height) is outside the range;
   * IoU against a crowd region = intersection / detection area (pycocotools' ``bbIou``,
     the same floating-point operations);
   * each detection, in rank order, takes the ground truth of highest IoU ≥ threshold that
     is still free (a crowd region is always free: it absorbs any number of detections),
     preferring a non-ignored box; equal IoUs go to the last box in input order;
   * a detection matched to an ignored box is ignored; an unmatched detection whose area
     (width × height) is outside the range is ignored; the others are TP or FP.

   Per detection: ``c_rank`` (its rank in the image and class), ``c_tp`` and ``c_ig``
   (bit ``a * 10 + t``: TP / ignored at area range a and threshold t). Per ground-truth
   box: ``c_ig`` bit a = ignored at area range a. The matching itself works on those
   40-bit sets too: one int64 per (detection, box) says at which (area, threshold) pairs
   the pair can match, so all forty greedy loops run as one, a few integer operations per
   detection rank over every image of a chunk.

2. ``class_curves`` / ``summarize`` — COCO's ``accumulate``: per class the detections of
   all images (the first maxDet = 1, 10, 100 of each image), ranked by score; equal
   scores by image (images in sorted order, as COCOeval sorts its image ids), then by
   rank within the image; precision made monotone from the right and read at 101 recall
   points; recall = TP / non-ignored ground truth. A class without non-ignored ground
   truth in an area range is -1 there and left out of the means; a figure with no class
   left is -1, as COCO prints.

This module imports only numpy and pandas (the Spark job ships it to its workers).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

IOU_THRS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_RNGS = ((0 ** 2, 1e5 ** 2), (0 ** 2, 32 ** 2), (32 ** 2, 96 ** 2), (96 ** 2, 1e5 ** 2))
AREA_LABELS = ("all", "small", "medium", "large")
MAX_DETS = (1, 10, 100)
N_T, N_A, N_M, N_R = len(IOU_THRS), len(AREA_RNGS), len(MAX_DETS), len(REC_THRS)
STATS = ("ap", "ap50", "ap75", "aps", "apm", "apl", "ar1", "ar10", "ar100", "ars", "arm", "arl")
_EPS = np.spacing(1)
_THR = np.minimum(IOU_THRS, 1 - 1e-10)
_THR_BITS = np.int64((1 << N_T) - 1)
_EVERY_AREA = np.int64(sum(1 << (N_T * a) for a in range(N_A)))
_ALL_BITS = np.int64((1 << (N_A * N_T)) - 1)
_CHUNK_ELEMENTS = 250_000


# ----------------------------------------------------------------------------- evaluateImg


def iou_crowd(d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of detections ``d`` (..., n, 4) against ground truth ``g`` (..., m, 4) (left, top,
    width, height); ``crowd`` (..., m): the union is the detection's area. The floating-point
    operations of pycocotools' ``bbIou``, so equal IoUs compare equal."""
    dl, dt, dw, dh = (d[..., :, None, i] for i in range(4))
    gl, gt, gw, gh = (g[..., None, :, i] for i in range(4))
    w = np.minimum(dw + dl, gw + gl) - np.maximum(dl, gl)
    h = np.minimum(dh + dt, gh + gt) - np.maximum(dt, gt)
    inter = w * h
    da = dw * dh
    ga = gw * gh
    union = np.where(crowd[..., None, :], da, da + ga - inter)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / union
    return np.where((w > 0) & (h > 0), iou, 0.0)


def match_arrays(vcode, frame, ccode, kind, xywh, area, iscrowd, pos, score) -> dict[str, np.ndarray]:
    """COCO's per-image matching on plain arrays (one row per box, any order; video and
    class as integer codes; ``area`` NaN = width × height; ``pos`` the input position).
    Returns ``c_rank`` (int32, -1 for ground truth and for detections past the 100th),
    ``c_tp`` and ``c_ig`` (int64 bit sets) in the input row order."""
    n = len(kind)
    out = {"c_rank": np.full(n, -1, np.int32), "c_tp": np.zeros(n, np.int64), "c_ig": np.zeros(n, np.int64)}
    if n == 0:
        return out
    kind = np.asarray(kind, np.int8)
    xywh = np.asarray(xywh, np.float64)
    score = np.where(kind == 1, np.asarray(score, np.float64), 0.0)
    order = np.lexsort((np.asarray(pos), -score, kind, np.asarray(ccode), np.asarray(frame), np.asarray(vcode)))
    v, f, c, k = (np.asarray(x)[order] for x in (vcode, frame, ccode, kind))
    box = xywh[order]
    change = np.ones(n, dtype=bool)
    change[1:] = (v[1:] != v[:-1]) | (f[1:] != f[:-1]) | (c[1:] != c[:-1])
    gid = np.cumsum(change) - 1
    n_groups = int(gid[-1]) + 1
    is_gt = k == 0
    seg = np.ones(n, dtype=bool)
    seg[1:] = change[1:] | (k[1:] != k[:-1])
    starts = np.flatnonzero(seg)
    rank = np.arange(n) - np.repeat(starts, np.diff(np.append(starts, n)))

    # ground truth: ignore bits per area range
    g_area = np.asarray(area, np.float64)[order]
    g_area = np.where(np.isnan(g_area), box[:, 2] * box[:, 3], g_area)
    crowd = np.asarray(iscrowd)[order].astype(bool) & is_gt
    ig_bits = np.zeros(n, np.int64)
    for a, (lo, hi) in enumerate(AREA_RNGS):
        ig_bits |= ((crowd | (g_area < lo) | (g_area > hi)).astype(np.int64) << a)

    n_gt = np.bincount(gid[is_gt], minlength=n_groups)
    n_det = np.minimum(np.bincount(gid[~is_gt], minlength=n_groups), MAX_DETS[-1])
    group_start = np.searchsorted(gid, np.arange(n_groups), side="left")
    res_tp = np.zeros(n, np.int64)
    res_ig = np.where(is_gt, ig_bits, 0)
    size = np.maximum(np.maximum(n_gt, n_det), 1)
    bucket = np.ceil(np.log2(size)).astype(np.int64)
    for b in np.unique(bucket):
        members = np.flatnonzero(bucket == b)
        per_group = max(1, int(n_det[members].max()) * max(int(n_gt[members].max()), 1))
        step = max(1, _CHUNK_ELEMENTS // per_group)
        for i in range(0, len(members), step):
            _match_chunk(members[i:i + step], group_start, n_gt, n_det, box, crowd, ig_bits, res_tp, res_ig)

    det_rank = np.where(~is_gt & (rank < MAX_DETS[-1]), rank, -1).astype(np.int32)
    for name, values in (("c_rank", det_rank), ("c_tp", res_tp), ("c_ig", res_ig)):
        out[name][order] = values
    return out


def _ranks(counts: np.ndarray) -> np.ndarray:
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    return np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)


def _spread(area_bits: np.ndarray) -> np.ndarray:
    """Bit a (area range a) -> the bits a * N_T .. a * N_T + N_T - 1 (every threshold of it)."""
    out = np.zeros(np.shape(area_bits), np.int64)
    for a in range(N_A):
        out |= ((np.asarray(area_bits) >> a) & 1) * (_THR_BITS << (N_T * a))
    return out


def _reached(iou: np.ndarray) -> np.ndarray:
    """The (area, threshold) bits at which ``iou`` reaches the threshold (every area alike)."""
    n = np.searchsorted(_THR, iou, side="right")  # thresholds t with min(t, 1 - 1e-10) <= iou
    return ((np.int64(1) << n) - 1) * _EVERY_AREA


def _match_chunk(chunk, group_start, n_gt, n_det, box, crowd, ig_bits, res_tp, res_ig) -> None:
    """COCO's matching of the groups ``chunk`` (one row per group, padded to the chunk's most
    boxes); every (area, threshold) pair is one bit of an int64, so the four area ranges
    and ten thresholds are matched together."""
    c_n = len(chunk)
    g_cnt, d_cnt = n_gt[chunk], n_det[chunk]
    pg, pdm = int(g_cnt.max()), int(d_cnt.max())
    if pdm == 0:
        return
    c_idx_d = np.repeat(np.arange(c_n), d_cnt)
    k_idx = _ranks(d_cnt)
    det_rows = group_start[chunk][c_idx_d] + g_cnt[c_idx_d] + k_idx
    db = np.zeros((c_n, pdm, 4))
    db[c_idx_d, k_idx] = box[det_rows]
    d_area = db[..., 2] * db[..., 3]
    outside = _spread(sum(((d_area < lo) | (d_area > hi)).astype(np.int64) << a
                          for a, (lo, hi) in enumerate(AREA_RNGS)))
    if pg == 0:  # detections only: false positives, or ignored outside the range
        m = m_ig = np.zeros((c_n, pdm), np.int64)
    else:
        c_idx_g = np.repeat(np.arange(c_n), g_cnt)
        j_idx = _ranks(g_cnt)
        gt_rows = group_start[chunk][c_idx_g] + j_idx
        gb = np.zeros((c_n, pg, 4))
        gb[c_idx_g, j_idx] = box[gt_rows]
        g_crowd = np.zeros((c_n, pg), dtype=bool)
        g_crowd[c_idx_g, j_idx] = crowd[gt_rows]
        g_ig = np.zeros((c_n, pg), np.int64)
        g_ig[c_idx_g, j_idx] = _spread(ig_bits[gt_rows])
        iou = iou_crowd(db, gb, g_crowd)  # padding boxes have no area: IoU 0, below every threshold
        m, m_ig = _greedy(iou, g_ig, g_crowd)
    ig = m_ig | (~m & outside)
    res_tp[det_rows] = (m & ~ig)[c_idx_d, k_idx]
    res_ig[det_rows] = ig[c_idx_d, k_idx]


def _greedy(iou: np.ndarray, g_ig: np.ndarray, g_crowd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCOeval's greedy loop for every group of a chunk at once, detection k of every group
    in step k: each (area, threshold) bit of a detection takes the free box of highest IoU
    that reaches the threshold, a non-ignored one if any (``g_ig``: a box's ignored bits),
    equal IoUs the last box in input order; a crowd region stays free. ``iou`` (c, pdm, pg).
    Returns the matched and matched-to-an-ignored bits (c, pdm)."""
    c_n, pdm, pg = iou.shape
    # per detection its boxes by IoU, highest first; equal IoUs the last box first
    order = pg - 1 - np.argsort(-iou[..., ::-1], axis=2, kind="stable")
    rows = np.arange(c_n)[:, None]

    def by_iou(per_box):  # (c, pg) -> (c, pdm, pg) in each detection's order
        return np.take_along_axis(np.broadcast_to(per_box[:, None], order.shape), order, 2)

    reach = _reached(np.take_along_axis(iou, order, 2))
    wants = (reach & by_iou(~g_ig & _ALL_BITS), reach & by_iou(g_ig))  # the non-ignored boxes first
    crowd = by_iou(g_crowd)
    taken = np.zeros((c_n, pg), np.int64)  # the bits at which each box is matched so far
    m = np.zeros((c_n, pdm), np.int64)
    m_ig = np.zeros((c_n, pdm), np.int64)
    before = np.zeros((c_n, pg), np.int64)
    for k in range(pdm):
        j = order[:, k]
        free = np.where(crowd[:, k], _ALL_BITS, ~taken[rows, j])
        left = np.full(c_n, _ALL_BITS, np.int64)
        took = np.zeros((c_n, pg), np.int64)
        for p, want in enumerate(wants):
            cand = want[:, k] & free & left[:, None]
            np.bitwise_or.accumulate(cand[:, :-1], axis=1, out=before[:, 1:])
            first = cand & ~before  # each bit to the first box that has it
            took |= first
            got = np.bitwise_or.reduce(first, axis=1)
            m[:, k] |= got
            if p:
                m_ig[:, k] = got
            left &= ~got
        taken[rows, j] |= took
    return m, m_ig


ARROW_TYPES = {"c_rank": "int32", "c_tp": "int64", "c_ig": "int64"}


def match_table(table):
    """``match_arrays`` on a pyarrow Table of boxes (video, frame, cls, kind, left, top,
    width, height, score, area, iscrowd, _rid; rows with a non-null ``_reason`` get null
    results): the table with ``c_rank``, ``c_tp``, ``c_ig`` appended."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = table.num_rows
    if "_reason" in table.column_names:
        valid = pc.is_null(table.column("_reason")).to_numpy(zero_copy_only=False)
    else:
        valid = np.ones(n, dtype=bool)
    sub = table.filter(pa.array(valid)) if not valid.all() else table

    def codes(name):
        return sub.column(name).combine_chunks().dictionary_encode().indices.to_numpy(zero_copy_only=False)

    def num(name, fill):
        return pc.fill_null(sub.column(name), fill).to_numpy(zero_copy_only=False)

    res = match_arrays(
        codes("video"), num("frame", 0), codes("cls"), num("kind", 0),
        np.column_stack([num(c, 0.0) for c in ("left", "top", "width", "height")]) if sub.num_rows
        else np.zeros((0, 4)),
        num("area", np.nan), num("iscrowd", 0), num("_rid", 0), num("score", 0.0),
    )
    for name, typ in ARROW_TYPES.items():
        full = np.zeros(n, dtype=typ)
        full[valid] = res[name]
        table = table.append_column(name, pa.array(full, mask=~valid))
    return table


# ----------------------------------------------------------------------------- accumulate


def non_ignored(gt_ig_bits) -> np.ndarray:
    """Ground truth not ignored, per area range (A,), from the boxes' ``c_ig`` bits."""
    gt_ig_bits = np.asarray(gt_ig_bits, np.int64)
    return np.array([int(np.count_nonzero(((gt_ig_bits >> a) & 1) == 0)) for a in range(N_A)])


def class_curves(score, image_key, rank, tp_bits, ig_bits, npig) -> dict[str, np.ndarray]:
    """COCO's ``accumulate`` for one class over a set of images.

    Detections: ``score``, ``image_key`` (integers or strings ordering the images as
    COCOeval's sorted image ids), ``rank`` (``c_rank``, >= 0), ``tp_bits``/``ig_bits``;
    ground truth: ``npig`` (A,), the boxes not ignored per area range (``non_ignored``).
    Returns ``npig``, ``q`` (T, A, M) the mean interpolated precision over the recall points
    (-1 where npig is 0; computed at maxDets 100 only, the only one ``summarize`` reads, as
    COCO's; -1 at 1 and 10), ``recall`` (T, A, M) (-1 where npig is 0) and ``pr`` (T, R) the
    precision curve at area all, maxDets 100.
    """
    npig = np.asarray(npig, np.int64)
    q_mean = np.full((N_T, N_A, N_M), -1.0)
    recall = np.full((N_T, N_A, N_M), -1.0)
    pr_curve = np.full((N_T, N_R), -1.0)
    rank = np.asarray(rank)
    tp_bits = np.asarray(tp_bits, np.int64)
    for mi, max_det in enumerate(MAX_DETS[:-1]):  # recall only: the TP among each image's first max_det
        tps = _bit_counts(tp_bits[rank < max_det]).reshape(N_A, N_T)
        for a in np.flatnonzero(npig):
            recall[:, a, mi] = tps[a] / npig[a]
    order = np.lexsort((rank, np.asarray(image_key), -np.asarray(score, np.float64)))
    tb, ib = tp_bits[order], np.asarray(ig_bits, np.int64)[order]
    mi = N_M - 1
    for a in np.flatnonzero(npig):
        for t in range(N_T):
            q, recall[t, a, mi] = _interpolated(tb, ib, a * N_T + t, npig[a])
            q_mean[t, a, mi] = q.mean()
            if a == 0:
                pr_curve[t] = q
    return {"npig": npig, "q": q_mean, "recall": recall, "pr": pr_curve}


def _bit_counts(bits: np.ndarray) -> np.ndarray:
    """How many of ``bits`` (int64) have each of the N_A * N_T low bits set."""
    low = np.ascontiguousarray(bits, "<i8").view(np.uint8).reshape(-1, 8)[:, :(N_A * N_T + 7) // 8]
    return np.unpackbits(low, axis=1, bitorder="little")[:, :N_A * N_T].sum(axis=0, dtype=np.int64)


def _interpolated(tp_bits: np.ndarray, ig_bits: np.ndarray, bit: int, npig: int) -> tuple[np.ndarray, float]:
    """COCOeval's interpolated precision at the 101 recall points and the final recall, for
    one (area, threshold) ``bit`` of detections ranked by score. Read at the true positives
    only: recall rises only at one, so each recall point is first reached at one, and from
    a true positive on precision only falls until the next, so the maximum of the precision
    from a point on is that of a true positive (the values are those of COCOeval's
    cumulative sums: tp / (tp + fp + eps), tp / npig)."""
    tp_at = np.flatnonzero((tp_bits >> bit) & 1)
    q = np.zeros(N_R)
    if len(tp_at) == 0:
        return q, 0.0
    tps = np.arange(1, len(tp_at) + 1)
    counted = tp_at + 1 - np.searchsorted(np.flatnonzero((ig_bits >> bit) & 1), tp_at)  # tp + fp so far
    precision = tps / (counted + _EPS)
    recall = tps / npig
    at = np.searchsorted(recall, REC_THRS, side="left")
    inside = at < len(tp_at)
    q[inside] = np.maximum.accumulate(precision[::-1])[::-1][at[inside]]
    return q, recall[-1]


def summarize(q: np.ndarray, recall: np.ndarray) -> dict[str, float]:
    """The twelve figures of ``COCOeval.summarize()`` from per-class ``q`` and ``recall``
    arrays (K, T, A, M) (``class_curves``): means over the classes (and thresholds) that are
    not -1; -1 where none is."""
    q = np.asarray(q, np.float64).reshape(-1, N_T, N_A, N_M)
    recall = np.asarray(recall, np.float64).reshape(-1, N_T, N_A, N_M)
    m100 = MAX_DETS.index(100)

    def mean(x):
        x = x[x > -1]
        return float(x.mean()) if x.size else -1.0

    return {
        "ap": mean(q[:, :, 0, m100]), "ap50": mean(q[:, 0, 0, m100]), "ap75": mean(q[:, 5, 0, m100]),
        "aps": mean(q[:, :, 1, m100]), "apm": mean(q[:, :, 2, m100]), "apl": mean(q[:, :, 3, m100]),
        "ar1": mean(recall[:, :, 0, 0]), "ar10": mean(recall[:, :, 0, 1]), "ar100": mean(recall[:, :, 0, m100]),
        "ars": mean(recall[:, :, 1, m100]), "arm": mean(recall[:, :, 2, m100]), "arl": mean(recall[:, :, 3, m100]),
    }


def evaluate(boxes: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """The twelve figures on a pandas frame of boxes, without Spark: overall (``by`` empty)
    or per ``by`` key (e.g. ``["video"]`` or ``["cls"]``).

    ``boxes``: video, frame, cls, kind (0 ground truth, 1 detection), left, top, width,
    height, score, optional area (NaN = width × height) and iscrowd; the row order is the
    input order (equal scores keep it). Images are (video, frame) in sorted order.
    """
    by = list(by or [])
    n = len(boxes)
    area = boxes["area"].to_numpy(np.float64) if "area" in boxes else np.full(n, np.nan)
    crowd = boxes["iscrowd"].fillna(0).to_numpy(np.int64) if "iscrowd" in boxes else np.zeros(n, np.int64)
    res = match_arrays(
        pd.factorize(boxes["video"])[0], boxes["frame"].to_numpy(np.int64), pd.factorize(boxes["cls"])[0],
        boxes["kind"].to_numpy(np.int8), boxes[["left", "top", "width", "height"]].to_numpy(np.float64),
        area, crowd, np.arange(n), boxes["score"].fillna(0.0).to_numpy(np.float64),
    )
    df = boxes[["video", "frame", "cls", "kind", "score"]].assign(**res)
    df = df[(df["kind"] == 0) | (df["c_rank"] >= 0)]
    images = df[["video", "frame"]].drop_duplicates().sort_values(["video", "frame"])
    image_key = pd.Series(np.arange(len(images)), index=pd.MultiIndex.from_frame(images))
    df = df.assign(_img=image_key.loc[pd.MultiIndex.from_frame(df[["video", "frame"]])].to_numpy())
    rows = []
    groups = df.groupby(by, sort=True) if by else [((), df)]
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        qs, rs = [], []
        for _cls, sub in part.groupby("cls", sort=True):
            d, g = sub[sub["kind"] == 1], sub[sub["kind"] == 0]
            cur = class_curves(d["score"], d["_img"], d["c_rank"], d["c_tp"], d["c_ig"], non_ignored(g["c_ig"]))
            qs.append(cur["q"])
            rs.append(cur["recall"])
        stats = summarize(np.array(qs), np.array(rs)) if qs else dict.fromkeys(STATS, -1.0)
        rows.append({**dict(zip(by, key)), **stats})
    return pd.DataFrame(rows, columns=by + list(STATS))




# ----------------------------------------------------------------------------- Spark groups

CURVES_SCHEMA = ("cls string, video string, npig array<bigint>, q array<double>, recall array<double>, "
                 "pr array<double>")
# detections with c_rank >= 0; image = (the video's position in sorted order) << 32 | (frame + 2**31)
CURVE_INPUT = ["cls", "image", "score", "c_rank", "c_tp", "c_ig"]
CURVE_BOXES = ["video", "frame", "cls", "score", "c_rank", "c_tp", "c_ig"]  # the matched boxes' columns it comes from


def curve_batches(npig: dict, whole: bool, videos: list):
    """A ``mapInArrow`` function over detections (``CURVE_INPUT``) partitioned by class
    (``whole``: each class over all images, video NULL, with the precision curves ``pr`` at
    IoU .50, .75 and their mean over .50:.95) or by (class, video) (one row per pair):
    ``CURVES_SCHEMA`` rows. ``npig``: (class, video or None) -> the ground truth not ignored
    per area range (missing: none); ``videos``: the video names in sorted order (``image``
    holds positions in it). Each task gathers its partition as one Arrow table (no pandas),
    so one class of millions of boxes is one numpy pass; images sort as COCOeval's ids do."""
    def run(batches):
        import pyarrow as pa

        batches = [b for b in batches if b.num_rows]
        if not batches:
            return
        t = pa.Table.from_batches(batches)
        cls_names, cls = _sorted_codes(t.column("cls"))
        image = t.column("image").to_numpy()
        video = image >> 32
        order = np.lexsort((cls,) if whole else (video, cls))
        cols = {n: t.column(n).to_numpy()[order] for n in ("score", "c_rank", "c_tp", "c_ig")}
        image, cls, video = image[order], cls[order], video[order]
        change = np.zeros(len(order), bool)
        change[1:] = cls[1:] != cls[:-1]
        if not whole:
            change[1:] |= video[1:] != video[:-1]
        bounds = np.append(np.flatnonzero(np.r_[True, change[1:]]), len(order))
        rows = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            key = (cls_names[cls[a]], None if whole else videos[video[a]])
            c = class_curves(cols["score"][a:b], image[a:b], cols["c_rank"][a:b], cols["c_tp"][a:b], cols["c_ig"][a:b],
                             npig.get(key, np.zeros(N_A, np.int64)))
            rows.append(curve_row(*key, c, whole))
        yield pa.RecordBatch.from_pylist(rows, schema=pa.schema([
            ("cls", pa.string()), ("video", pa.string()), ("npig", pa.list_(pa.int64())),
            ("q", pa.list_(pa.float64())), ("recall", pa.list_(pa.float64())), ("pr", pa.list_(pa.float64()))]))

    return run


def _sorted_codes(col) -> tuple[list, np.ndarray]:
    """A string column's sorted distinct values and each row's position among them."""
    enc = col.combine_chunks().dictionary_encode()  # col: a table's (chunked) column
    names = enc.dictionary.to_pylist()
    rank = np.empty(len(names), np.int64)
    rank[np.argsort(np.array(names, dtype=object), kind="stable")] = np.arange(len(names))
    return sorted(names), rank[enc.indices.to_numpy(zero_copy_only=False)]


def curve_row(cls, video, c: dict, with_pr: bool) -> dict:
    """One ``CURVES_SCHEMA`` row from ``class_curves``' result."""
    return {"cls": cls, "video": video, "npig": np.asarray(c["npig"], np.int64).tolist(), "q": c["q"].ravel().tolist(),
            "recall": c["recall"].ravel().tolist(),
            "pr": np.concatenate([c["pr"][0], c["pr"][5], c["pr"].mean(axis=0)]).tolist() if with_pr else None}


def no_detection_rows(npig: dict, have: set) -> list[dict]:
    """``CURVES_SCHEMA`` rows of the (class, video) keys of ``npig`` with ground truth but no
    detection (not in ``have``): recall 0, precision 0."""
    empty = np.zeros(0)
    return [curve_row(cls, video, class_curves(empty, empty, empty, empty, empty, n), video is None)
            for (cls, video), n in sorted(npig.items(), key=str) if (cls, video) not in have]


def figures(curves: pd.DataFrame) -> pd.DataFrame:
    """The twelve figures from ``curve_batches`` rows: scope overall (video and cls NULL),
    video (per video, over its classes) and class (per class, over all images)."""
    def stats(rows):
        if not len(rows):
            return dict.fromkeys(STATS, -1.0)
        return summarize(np.stack([np.asarray(x, np.float64) for x in rows["q"]]),
                         np.stack([np.asarray(x, np.float64) for x in rows["recall"]]))

    whole = curves[curves["video"].isna()]
    per_video = curves[curves["video"].notna()]
    out = [{"scope": "overall", "video": None, "cls": None, **stats(whole)}]
    for video, part in per_video.groupby("video", sort=True):
        out.append({"scope": "video", "video": video, "cls": None, **stats(part)})
    for row in whole.sort_values("cls").itertuples(index=False):
        out.append({"scope": "class", "video": None, "cls": row.cls, **stats(pd.DataFrame([row._asdict()]))})
    return pd.DataFrame(out, columns=["scope", "video", "cls", *STATS])


__all__ = ["AREA_LABELS", "AREA_RNGS", "IOU_THRS", "MAX_DETS", "REC_THRS", "STATS", "class_curves", "evaluate",
           "curve_batches", "curve_row", "no_detection_rows", "non_ignored", "figures", "iou_crowd", "match_arrays", "match_table", "summarize"]
