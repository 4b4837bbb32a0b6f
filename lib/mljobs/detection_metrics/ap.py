"""COCO average precision from per-detection match flags, as ``COCOeval.accumulate`` and
``summarize`` compute it (area range 'all', maxDets 100).

For each class, the detections (the first 100 of each frame) are ranked by score
descending; equal scores keep COCO's order: image (here (video, frame), in sorted order),
then the order within the frame. Precision ``tp / (tp + fp + eps)`` is made monotone from
the right, read at the 101 recall points 0:0.01:1 (the first rank whose recall reaches
the point; 0 beyond the last detection) and averaged. Classes without ground truth are
left out, as COCO leaves their -1 out. AP is the mean over the ten IoU thresholds and the
classes; AP50 and AP75 use one threshold.

This module imports only numpy and pandas (it runs on the driver).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

COCO_REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
N_THRS = 10
_EPS = np.spacing(1)


def precision_at_recall(tp: np.ndarray, n_gt: int) -> np.ndarray:
    """(T, n) boolean TP flags of detections in rank order -> (T, 101) interpolated
    precision (COCO's ``q``)."""
    t_n, nd = tp.shape
    q = np.zeros((t_n, len(COCO_REC_THRS)))
    if nd == 0:
        return q
    tps = np.cumsum(tp, axis=1).astype(float)
    fps = np.cumsum(~tp, axis=1).astype(float)
    rc = tps / n_gt
    pr = tps / (fps + tps + _EPS)
    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
    for t in range(t_n):
        inds = np.searchsorted(rc[t], COCO_REC_THRS, side="left")
        inside = inds < nd
        q[t, inside] = pr[t, inds[inside]]
    return q


def coco_ap(dets: pd.DataFrame, gt_counts: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """AP, AP50 and AP75 overall (``by`` empty) or per ``by`` key (e.g. ``["video"]``).

    ``dets``: one row per detection kept for AP (``coco_kept``), with the ``by`` columns,
    cls, video, frame, rank (order within the frame), score and coco_tp (bit t = TP at
    the t-th COCO IoU threshold). ``gt_counts``: the ``by`` columns, cls and n_gt.
    Returns one row per key with ap, ap50, ap75 (NaN where no class has ground truth).
    """
    by = list(by or [])
    keys = by + ["cls"]
    gts = gt_counts.groupby(keys, sort=True)["n_gt"].sum() if len(gt_counts) else pd.Series(dtype=np.int64)
    # COCO's tie order: score descending, then image id (sorted video, frame), then the
    # order within the image.
    vcode = pd.Categorical(dets["video"]).codes if len(dets) else np.zeros(0, dtype=np.int64)
    order = np.lexsort((
        dets["rank"].to_numpy(np.int64),
        dets["frame"].to_numpy(np.int64),
        vcode,
        -dets["score"].to_numpy(np.float64),
        *[_codes(dets[k]) for k in reversed(keys)],
    )) if len(dets) else np.zeros(0, dtype=np.int64)
    bits = dets["coco_tp"].to_numpy(np.int64)[order]
    seg_bounds: dict[tuple, tuple[int, int]] = {}
    if len(order):
        key_codes = [_codes(dets[k])[order] for k in keys]
        change = np.zeros(len(order), dtype=bool)
        change[0] = True
        for c in key_codes:
            change[1:] |= c[1:] != c[:-1]
        starts = np.flatnonzero(change)
        ends = np.append(starts[1:], len(order))
        first_rows = dets[keys].iloc[order[starts]].itertuples(index=False, name=None)
        for key, lo, hi in zip(first_rows, starts, ends):
            seg_bounds[tuple(key)] = (int(lo), int(hi))
    shifts = np.arange(N_THRS, dtype=np.int64)[:, None]
    per_class: dict[tuple, np.ndarray] = {}  # key -> (T,) AP per threshold
    for key, n_gt in gts.items():
        key = key if isinstance(key, tuple) else (key,)
        if n_gt <= 0:
            continue
        lo, hi = seg_bounds.get(key, (0, 0))
        tp = ((bits[lo:hi][None, :] >> shifts) & 1).astype(bool)
        per_class[key] = precision_at_recall(tp, int(n_gt)).mean(axis=1)
    rows = []
    groups: dict[tuple, list[np.ndarray]] = {}
    for key, ap_t in per_class.items():
        groups.setdefault(key[:-1], []).append(ap_t)
    all_keys = sorted({k[:-1] for k in (tuple(x) if isinstance(x, tuple) else (x,) for x in gts.index)} | set(groups))
    if not by:
        all_keys = [()]
    for gkey in all_keys:
        aps = groups.get(gkey)
        if aps:
            m = np.stack(aps)  # (K, T)
            ap, ap50, ap75 = float(m.mean()), float(m[:, 0].mean()), float(m[:, 5].mean())
        else:
            ap = ap50 = ap75 = float("nan")
        rows.append(dict(zip(by, gkey), ap=ap, ap50=ap50, ap75=ap75))
    return pd.DataFrame(rows, columns=by + ["ap", "ap50", "ap75"])


def _codes(s: pd.Series) -> np.ndarray:
    return pd.Categorical(s).codes.astype(np.int64)
