"""Synthetic NFL plays: helmet ground truth in the layout of the NFL Impact Detection
``train_labels.csv`` and a helmet detector's output, for the detection-metrics demo,
tests and benchmark (no downloads; seeded, so the same arguments give the same files).

Command line::

    python -m mljobs.datasets.helmets generate --plays N --frames F DIR [--seed S] [--force]
    python -m mljobs.datasets.helmets render --plays N --out DIR [--frames F] [--size WxH] [--fps R] [--seed S]
        [--min-visible V]

writes ``DIR/train_labels.csv`` (gameKey, playID, view, video, frame, label, left, width,
top, height, impact, impactType, confidence, visibility), ``DIR/detections.csv`` (video,
frame, label, score, left, top, width, height) and ``DIR/snaps.csv`` (video, snap_frame),
then prints one JSON line (plays, frames, gt_rows, det_rows, dir, seconds).

Each play (video ``<gameKey>_<playID:06d>_<Endzone|Sideline>.mp4``, frames 1..F, a
1280x720 image) has 18-22 helmets (two teams, labels H<jersey> / V<jersey>, integer
pixel boxes 16-32 px). Before the snap (at 15-30 % of the play) players stand in
formation with a little jitter; after it they run with smoothly changing velocities.
Late in the play 5-9 of them converge on a ball carrier: in that tackle window (about
±F/15 frames) the helmets crowd and overlap, and the simulated detector fails there:

* away from the tackle a helmet is missed with probability 0.02, its box jitters by
  about 1 px, scores are high (mostly > 0.95), a false positive appears in about one
  frame in ten, a duplicate box on a helmet in one of fifty;
* in the tackle window, for the players involved: misses 30 %, jitter 3 px, lower scores
  (some fall under 0.9), duplicates 15 %, and about one extra false box per frame near
  the pile;
* everywhere, a few low-score boxes (score < 0.5) of background, as a real detector
  emits before thresholding (they matter for AP, not at --conf-thr 0.9).

``render`` draws the same plays (the simulation of ``generate`` with the same seed) as real mp4
videos (OpenCV's mp4v encoder): a mown field with yard lines seen by a camera that follows the
players and pans, players far to near (so helmets hide behind nearer players), helmets as shaded
ellipses in team colours filling their boxes, a mild motion blur; and ``DIR/train_labels.csv``
with the helmets as drawn, in output pixels, clipped to the frame. As an annotator would, it
labels only the helmets one can see: at least half of the helmet's pixels visible, neither hidden
by nearer players nor outside the frame (``MIN_VISIBLE``). At 640x360 a helmet is 16-36 px.

Impacts: in the tackle window a few pairs of colliding players get impact = 1 for one
frame each (impactType Helmet/Shoulder/Body, confidence 1-3, visibility 0-3, mostly >= 1)
so the NFL impact metric has something to find; other rows have impact 0, impactType
None, confidence 0, visibility 0. These are synthetic values in the real column layout.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mljobs.argtypes import frame_size, positive_float, positive_int

WIDTH, HEIGHT = 1280, 720
GT_COLUMNS = ["gameKey", "playID", "view", "video", "frame", "label", "left", "width", "top", "height",
              "impact", "impactType", "confidence", "visibility"]
DET_COLUMNS = ["video", "frame", "label", "score", "left", "top", "width", "height"]
FILES = ("train_labels.csv", "detections.csv", "snaps.csv")


def simulate_play(rng: np.random.Generator, n_frames: int, play_index: int) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """One play's ground truth, detections and snap frame."""
    # The steps draw from rng in this order: the same seed gives the same files.
    game_key, play_id, view, video = _play_names(play_index)
    n, snap, tackle, half = _timeline(rng, n_frames)
    frames = np.arange(1, n_frames + 1)
    x0, y0, size, aspect, labels = _formation(rng, n)
    pos, involved, pile = _trajectories(rng, frames, x0, y0, snap, tackle, half)
    left, top, w, h = _pixel_boxes(pos, size, aspect)
    fr_grid = np.broadcast_to(frames[:, None], (n_frames, n))
    crowded = (np.abs(fr_grid - tackle) <= half) & np.isin(np.arange(n), involved)[None, :]
    impact, itype, conf, vis = _impacts(rng, n_frames, n, involved, tackle, half)
    gt = pd.DataFrame({
        "gameKey": game_key, "playID": play_id, "view": view, "video": video,
        "frame": fr_grid.ravel(), "label": np.broadcast_to(labels, (n_frames, n)).ravel(),
        "left": left.ravel(), "width": w.ravel(), "top": top.ravel(), "height": h.ravel(),
        "impact": impact.ravel(), "impactType": itype.ravel(), "confidence": conf.ravel(), "visibility": vis.ravel(),
    })
    parts = _helmet_detections(rng, gt, video, crowded.ravel())
    parts += _false_detections(rng, video, frames, tackle, half, pile)
    det = _finish_detections(parts)
    return gt, det[DET_COLUMNS], {"video": video, "snap_frame": snap, "tackle_frame": tackle}


def _play_names(play_index: int) -> tuple[int, int, str, str]:
    """gameKey, playID, view and the video name of the play_index-th play."""
    game_key = 57500 + play_index // 4 * 7
    play_id = 100 + (play_index * 37) % 3500
    view = "Endzone" if play_index % 2 == 0 else "Sideline"
    return game_key, play_id, view, f"{game_key}_{play_id:06d}_{view}.mp4"


def _timeline(rng: np.random.Generator, n_frames: int) -> tuple[int, int, int, int]:
    """Players, snap frame, tackle frame and the tackle window's half width."""
    n = int(rng.integers(18, 23))
    snap = int(1 + rng.uniform(0.15, 0.30) * n_frames)
    tackle = int(snap + rng.uniform(0.45, 0.75) * (n_frames - snap))
    return n, snap, tackle, max(8, n_frames // 15)


def _formation(rng: np.random.Generator, n: int):
    """Two lines facing each other around the line of scrimmage: start positions, helmet
    sizes and aspect ratios, and the labels (H<jersey> / V<jersey>)."""
    team = np.array([0] * ((n + 1) // 2) + [1] * (n // 2))
    los = rng.uniform(520, 760)
    x0 = np.where(team == 0, los - rng.uniform(20, 160, n), los + rng.uniform(20, 160, n))
    y0 = rng.uniform(140, 600, n)
    size = rng.uniform(16, 30, n)
    aspect = rng.uniform(1.0, 1.2, n)
    jerseys = rng.choice(np.arange(1, 100), size=n, replace=False)
    labels = np.array([("H" if t == 0 else "V") + str(j) for t, j in zip(team, jerseys)])
    return x0, y0, size, aspect, labels


def _trajectories(rng: np.random.Generator, frames: np.ndarray, x0: np.ndarray, y0: np.ndarray,
                  snap: int, tackle: int, half: int):
    """Helmet centres (frames x players x 2): jitter before the snap, smooth running after
    it, and the players involved pulled to the pile before the tackle."""
    n = len(x0)
    pos = np.zeros((len(frames), n, 2))
    p = np.stack([x0, y0], axis=1)
    vel = np.zeros((n, 2))
    involved = rng.choice(n, size=int(rng.integers(5, 10)), replace=False)
    pile = np.array([rng.uniform(400, 880), rng.uniform(220, 520)])
    offsets = rng.normal(0, 14, (len(involved), 2))
    for t, fr in enumerate(frames):
        if fr < snap:
            p = p + rng.normal(0, 0.3, (n, 2))
        else:
            vel = 0.92 * vel + rng.normal(0, 0.6, (n, 2))
            p = p + vel
            if fr >= tackle - 3 * half:
                pull = min(1.0, (fr - (tackle - 3 * half)) / (2 * half)) * 0.25
                p[involved] += (pile + offsets - p[involved]) * pull
        p[:, 0] = np.clip(p[:, 0], 20, WIDTH - 40)
        p[:, 1] = np.clip(p[:, 1], 20, HEIGHT - 40)
        pos[t] = p
    return pos, involved, pile


def _pixel_boxes(pos: np.ndarray, size: np.ndarray, aspect: np.ndarray):
    """Integer pixel boxes (left, top, width, height; frames x players) around the centres."""
    n_frames, n = pos.shape[:2]
    w = np.rint(np.broadcast_to(size, (n_frames, n))).astype(int)
    h = np.rint(np.broadcast_to(size * aspect, (n_frames, n))).astype(int)
    left = np.rint(pos[..., 0] - w / 2).astype(int)
    top = np.rint(pos[..., 1] - h / 2).astype(int)
    return left, top, w, h


def _impacts(rng: np.random.Generator, n_frames: int, n: int, involved: np.ndarray, tackle: int, half: int):
    """impact, impactType, confidence, visibility (frames x players): a few colliding pairs
    near the tackle, one frame each."""
    impact = np.zeros((n_frames, n), dtype=int)
    itype = np.full((n_frames, n), "None", dtype=object)
    conf = np.zeros((n_frames, n), dtype=int)
    vis = np.zeros((n_frames, n), dtype=int)
    for _ in range(int(rng.integers(1, 4))):
        a, b = rng.choice(involved, size=2, replace=False)
        t = int(np.clip(tackle - 1 + rng.integers(-half // 2, half // 2 + 1), 0, n_frames - 1))
        kind = rng.choice(["Helmet", "Shoulder", "Body"])
        for who in (a, b):
            impact[t, who] = 1
            itype[t, who] = kind
            conf[t, who] = rng.choice([1, 2, 3], p=[0.2, 0.4, 0.4])
            vis[t, who] = rng.choice([0, 1, 2, 3], p=[0.1, 0.3, 0.3, 0.3])
    return impact, itype, conf, vis


def _helmet_detections(rng: np.random.Generator, gt: pd.DataFrame, video: str, crowd: np.ndarray) -> list[pd.DataFrame]:
    """The detector on the helmets: some missed, the rest jittered and scored; and duplicate
    boxes on some (shifted, lower score). More of each where the players crowd."""
    m = len(gt)
    missed = rng.random(m) < np.where(crowd, 0.30, 0.02)
    sigma = np.where(crowd, 3.0, 1.0)
    score = np.where(crowd, 1 - rng.beta(1.5, 14, m), 1 - rng.beta(1.0, 40, m))
    gl, gtop, gw, gh = (gt[c].to_numpy(float) for c in ("left", "top", "width", "height"))
    dx1 = gl + rng.normal(0, 1, m) * sigma
    dy1 = gtop + rng.normal(0, 1, m) * sigma
    dx2 = gl + gw + rng.normal(0, 1, m) * sigma
    dy2 = gtop + gh + rng.normal(0, 1, m) * sigma
    keep = ~missed
    found = pd.DataFrame({"video": video, "frame": gt["frame"].to_numpy()[keep], "score": score[keep],
                          "left": dx1[keep], "top": dy1[keep], "width": (dx2 - dx1)[keep], "height": (dy2 - dy1)[keep]})
    dup = rng.random(m) < np.where(crowd, 0.15, 0.02)
    shift = rng.choice([-1, 1], (m, 2)) * rng.uniform(0.35, 0.6, (m, 2)) * np.stack([gw, gh], 1)
    dups = pd.DataFrame({"video": video, "frame": gt["frame"].to_numpy()[dup],
                         "score": (score * rng.uniform(0.88, 1.0, m))[dup],
                         "left": (gl + shift[:, 0])[dup], "top": (gtop + shift[:, 1])[dup],
                         "width": gw[dup], "height": gh[dup]})
    return [found, dups]


def _false_detections(rng: np.random.Generator, video: str, frames: np.ndarray, tackle: int, half: int,
                      pile: np.ndarray) -> list[pd.DataFrame]:
    """False positives (rare in open field, about one a frame near the pile) and low-score
    background boxes."""
    fp_count = rng.poisson(np.where(np.abs(frames - tackle) <= half, 1.0, 0.1))
    fp_frames = np.repeat(frames, fp_count)
    k = len(fp_frames)
    near = np.abs(fp_frames - tackle) <= half
    cx = np.where(near, pile[0] + rng.normal(0, 40, k), rng.uniform(40, WIDTH - 60, k))
    cy = np.where(near, pile[1] + rng.normal(0, 40, k), rng.uniform(40, HEIGHT - 60, k))
    s = rng.uniform(16, 30, k)
    false = pd.DataFrame({"video": video, "frame": fp_frames, "score": rng.uniform(0.9, 0.985, k),
                          "left": cx - s / 2, "top": cy - s / 2, "width": s, "height": s * rng.uniform(1.0, 1.2, k)})
    lo_count = rng.poisson(2.0, len(frames))
    lo_frames = np.repeat(frames, lo_count)
    k = len(lo_frames)
    s = rng.uniform(14, 34, k)
    background = pd.DataFrame({"video": video, "frame": lo_frames, "score": rng.uniform(0.02, 0.5, k),
                               "left": rng.uniform(0, WIDTH - 40, k), "top": rng.uniform(0, HEIGHT - 40, k),
                               "width": s, "height": s})
    return [false, background]


def _finish_detections(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """All boxes clipped to the image, rounded, labelled, and in the matching's canonical order."""
    det = pd.concat(parts, ignore_index=True)
    det["left"] = det["left"].clip(0, WIDTH)
    det["top"] = det["top"].clip(0, HEIGHT)
    det["width"] = det["width"].clip(lower=2)
    det["height"] = det["height"].clip(lower=2)
    det["score"] = det["score"].clip(0.0, 0.9999)
    det.insert(2, "label", "helmet")
    det = det.round({"left": 2, "top": 2, "width": 2, "height": 2, "score": 4})
    # Rows in the canonical order of the matching (frame, score descending, box), so tools
    # that break score ties by row order (pycocotools) see the same order as mljobs.
    return det.sort_values(["frame", "score", "left", "top", "width", "height"],
                           ascending=[True, False, True, True, True, True], kind="stable").reset_index(drop=True)


def generate(out_dir: str | Path, plays: int, frames: int, seed: int = 7, force: bool = False) -> dict:
    """Write the three CSV files for ``plays`` plays of ``frames`` frames each."""
    if plays < 1 or frames < 10:
        raise ValueError("need at least 1 play of at least 10 frames")
    t0 = time.monotonic()
    out = _prepare_out(out_dir, force)
    rng = np.random.default_rng(seed)
    gt_rows = det_rows = 0
    snaps = []
    header = True
    with open(out / "train_labels.csv", "w") as gt_f, open(out / "detections.csv", "w") as det_f:
        for i in range(plays):
            gt, det, info = simulate_play(rng, frames, i)
            gt.to_csv(gt_f, index=False, header=header)
            det.to_csv(det_f, index=False, header=header, columns=DET_COLUMNS)
            header = False
            gt_rows += len(gt)
            det_rows += len(det)
            snaps.append(info)
    pd.DataFrame(snaps)[["video", "snap_frame", "tackle_frame"]].to_csv(out / "snaps.csv", index=False)
    return {"plays": plays, "frames": plays * frames, "gt_rows": gt_rows, "det_rows": det_rows,
            "dir": str(out.resolve()), "seconds": round(time.monotonic() - t0, 3)}


# ---- render: the plays as real mp4 videos, and the boxes of the helmets as drawn

VIEW_W = 640  # the camera's window on the 1280x720 field, in field pixels: helmets 16-36 px at 640x360
TEAM_BGR = {"H": (38, 32, 150), "V": (150, 82, 24)}  # helmets: maroon (home), navy (visitors)
JERSEY_BGR = {"H": (48, 40, 175), "V": (232, 232, 232)}  # jerseys: red, white
RENDER_FOURCC = "mp4v"  # the MPEG-4 Part 2 encoder every opencv-python wheel has (no H.264 encoder there)
MIN_VISIBLE = 0.5  # render labels a helmet when at least this share of its pixels shows in the frame


def render(out_dir: str | Path, plays: int, frames: int = 90, size: tuple[int, int] = (640, 360), fps: float = 30.0,
           seed: int = 7, force: bool = False, min_visible: float = MIN_VISIBLE) -> dict:
    """Write ``plays`` plays as ``DIR/<video>`` mp4 files (the simulation of ``generate`` with the same
    seed, seen by a panning camera) and ``DIR/train_labels.csv``: the helmets as drawn in each frame,
    clipped to it; a helmet less than ``min_visible`` of whose pixels show (hidden by nearer players
    or outside the frame) is left out. Same arguments, same OpenCV build: the same bytes."""
    if plays < 1 or frames < 10:
        raise ValueError("need at least 1 play of at least 10 frames")
    if not 0.0 <= min_visible <= 1.0:
        raise ValueError(f"--min-visible must be within [0, 1], got {min_visible}")
    if size[1] * VIEW_W > HEIGHT * size[0]:
        raise ValueError(f"--size {size[0]}x{size[1]} is taller than the field (height at most 1.125 x width)")
    t0 = time.monotonic()
    out = _prepare_out(out_dir, force)
    rng = np.random.default_rng(seed)  # the simulation's draws, as generate makes them
    paint = np.random.default_rng([seed, 1])  # the rendering's own (grass)
    field = _field(paint, size[0] / VIEW_W)
    rows = 0
    with open(out / "train_labels.csv", "w") as gt_f:
        for i in range(plays):
            gt = simulate_play(rng, frames, i)[0]
            labels = _render_play(out / gt["video"].iloc[0], gt, field, size, fps, min_visible)
            labels.to_csv(gt_f, index=False, header=i == 0)
            rows += len(labels)
    return {"plays": plays, "frames": plays * frames, "gt_rows": rows, "size": f"{size[0]}x{size[1]}", "fps": fps,
            "dir": str(out.resolve()), "seconds": round(time.monotonic() - t0, 3)}


def _field(rng: np.random.Generator, scale: float) -> np.ndarray:
    """The whole field at the output scale (BGR): mown stripes, yard lines every 5 yards, hash
    marks every yard, a little grass noise."""
    w, h = int(round(WIDTH * scale)), int(round(HEIGHT * scale))
    yard = WIDTH / 60 * scale  # the camera-side field shows 60 yards
    x = np.arange(w)
    stripe = ((x // (5 * yard)).astype(int) % 2)[None, :, None]
    img = np.where(stripe == 1, np.array([46, 128, 52]), np.array([40, 112, 44])).astype(np.float32)
    img = np.broadcast_to(img, (h, w, 3)).copy()
    img += rng.normal(0, 4, (h, w, 1)).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    thick = max(1, int(round(2 * scale)))
    for k in range(0, 61):
        xk = int(round(k * yard))
        if k % 5 == 0:
            _yard_line(img, (xk, 0), (xk, h - 1), thick)
        else:
            for yk in (h // 3, 2 * h // 3):
                _yard_line(img, (xk, yk - int(4 * scale)), (xk, yk + int(4 * scale)), thick)
    return img


def _yard_line(img: np.ndarray, a: tuple[int, int], b: tuple[int, int], thick: int) -> None:
    import cv2

    cv2.line(img, a, b, (235, 240, 235), thick, cv2.LINE_AA)


def _camera(gt: pd.DataFrame, n_frames: int, view: tuple[float, float]) -> np.ndarray:
    """The window's top-left corner per frame, in field pixels: it follows the helmets' centroid
    with a lag (and a slow drift, so it pans before the snap too), inside the field."""
    cx = (gt["left"] + gt["width"] / 2).to_numpy(float).reshape(n_frames, -1).mean(axis=1)
    cy = (gt["top"] + gt["height"] / 2).to_numpy(float).reshape(n_frames, -1).mean(axis=1)
    target = np.stack([cx + np.linspace(-60, 60, n_frames), cy], axis=1)
    cam = np.empty_like(target)
    c = target[0]
    for t in range(n_frames):
        c = c + 0.2 * (target[t] - c)
        cam[t] = c
    cam -= np.array(view) / 2
    cam[:, 0] = np.clip(cam[:, 0], 0, WIDTH - view[0])
    cam[:, 1] = np.clip(cam[:, 1], 0, HEIGHT - view[1])
    return cam


def _render_play(path: Path, gt: pd.DataFrame, field: np.ndarray, size: tuple[int, int], fps: float,
                 min_visible: float) -> pd.DataFrame:
    """Write one play's video; its labels (train_labels.csv rows) in output pixels."""
    import cv2

    n_frames = int(gt["frame"].max())
    scale = size[0] / VIEW_W
    cam = np.rint(_camera(gt, n_frames, (VIEW_W, size[1] / scale)) * scale).astype(int)
    cam = np.clip(cam, 0, [field.shape[1] - size[0], field.shape[0] - size[1]])  # rounding stays inside
    boxes = gt.copy()
    for c in ("left", "width", "top", "height"):
        boxes[c] = np.rint(gt[c].to_numpy(float) * scale).astype(int)
    frame_index = boxes["frame"].to_numpy() - 1
    boxes["left"] -= cam[frame_index, 0]
    boxes["top"] -= cam[frame_index, 1]
    visible = pd.Series(0.0, index=boxes.index)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*RENDER_FOURCC), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV {cv2.__version__} cannot write {RENDER_FOURCC} video to {path}")
    try:
        pan = np.diff(cam[:, 0], prepend=cam[0, 0])
        for t, one in boxes.groupby("frame", sort=True):
            x0, y0 = cam[t - 1]
            img = field[y0:y0 + size[1], x0:x0 + size[0]].copy()
            visible[one.index] = _draw_players(img, one, scale)
            writer.write(_motion_blur(img, pan[t - 1]))
    finally:
        writer.release()
    return _clipped(boxes[visible >= min_visible], size)


def _draw_players(img: np.ndarray, boxes: pd.DataFrame, scale: float) -> np.ndarray:
    """Players far to near (by helmet bottom), so the nearer ones hide parts of the others: a body
    in jersey colour, then the helmet, a shaded ellipse filling its box, with a face mask. Returns
    each helmet's visible share (in ``boxes``' order): its pixels left in the frame once every
    player is drawn, over its pixels drawn alone on an unbounded canvas."""
    import cv2

    s = 16  # fixed-point: 4 fractional bits
    owner = np.zeros(img.shape[:2], np.int32)  # who drew each pixel last: k + 1 a helmet, -1 a body
    whole = np.zeros(len(boxes), np.float64)
    order = boxes.assign(_bottom=boxes["top"] + boxes["height"], draw_k=np.arange(len(boxes)))
    for r in order.sort_values(["_bottom", "label"]).itertuples():
        team = r.label[0]
        cx, cy, ax, ay = r.left + r.width / 2, r.top + r.height / 2, r.width / 2, r.height / 2
        body = ((int(cx * s), int((cy + 2.1 * ay) * s)), (int(1.5 * ax * s), int(2.0 * ay * s)))
        cv2.ellipse(img, body[0], body[1], 0, 0, 360, JERSEY_BGR[team], -1, cv2.LINE_AA, 4)
        cv2.ellipse(owner, body[0], body[1], 0, 0, 360, -1, -1, cv2.LINE_8, 4)
        helmet = ((int(cx * s), int(cy * s)), (int(ax * s), int(ay * s)))
        cv2.ellipse(owner, helmet[0], helmet[1], 0, 0, 360, r.draw_k + 1, -1, cv2.LINE_8, 4)
        whole[r.draw_k] = _ellipse_pixels(cx, cy, ax, ay)
        base = np.array(TEAM_BGR[team], float)
        for k, (shade, shrink, up) in enumerate(((0.6, 1.0, 0.0), (1.0, 0.8, 0.12), (1.6, 0.3, 0.45))):
            colour = tuple(int(v) for v in np.clip(base * shade + (40 if k == 2 else 0), 0, 255))
            centre = (int((cx - up * ax * 0.5) * s), int((cy - up * ay) * s))
            cv2.ellipse(img, centre, (int(ax * shrink * s), int(ay * shrink * s)), 0, 0, 360, colour, -1,
                        cv2.LINE_AA, 4)
        mask_x = int((cx + 0.55 * ax) * s)
        cv2.line(img, (mask_x, int((cy - 0.1 * ay) * s)), (mask_x, int((cy + 0.8 * ay) * s)), (170, 170, 170),
                 max(1, int(round(scale))), cv2.LINE_AA, 4)
    shown = np.bincount(owner[owner > 0].ravel(), minlength=len(boxes) + 1)[1:]
    return shown / np.maximum(whole, 1.0)


def _ellipse_pixels(cx: float, cy: float, ax: float, ay: float) -> int:
    """Pixels of a filled ellipse as ``_draw_players`` fills it, drawn alone (no frame edge)."""
    import cv2

    s, pad = 16, 2
    w, h = int(2 * ax) + 2 * pad + 2, int(2 * ay) + 2 * pad + 2
    canvas = np.zeros((h, w), np.uint8)
    centre = (int((cx - int(cx - ax) + pad) * s), int((cy - int(cy - ay) + pad) * s))
    cv2.ellipse(canvas, centre, (int(ax * s), int(ay * s)), 0, 0, 360, 1, -1, cv2.LINE_8, 4)
    return int(canvas.sum())


def _motion_blur(img: np.ndarray, pan_px: float) -> np.ndarray:
    """A mild horizontal blur, longer while the camera pans (2 px at rest, at most 6)."""
    import cv2

    length = int(min(6, 2 + abs(pan_px)))
    kernel = np.full((1, length), 1.0 / length, np.float32)
    return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT)


def _clipped(boxes: pd.DataFrame, size: tuple[int, int]) -> pd.DataFrame:
    """The boxes cut to the frame (integer pixels); those wholly outside it dropped."""
    x1 = boxes["left"].clip(0, size[0])
    y1 = boxes["top"].clip(0, size[1])
    x2 = (boxes["left"] + boxes["width"]).clip(0, size[0])
    y2 = (boxes["top"] + boxes["height"]).clip(0, size[1])
    out = boxes.assign(left=x1, top=y1, width=x2 - x1, height=y2 - y1)
    return out[(out["width"] > 0) & (out["height"] > 0)][GT_COLUMNS].reset_index(drop=True)


def _prepare_out(out_dir: str | Path, force: bool, files: tuple[str, ...] = FILES) -> Path:
    """The output directory, created; FileExistsError when it holds our files and not ``force``
    (with ``force`` they are removed)."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        existing = [out / f for f in files if (out / f).exists()]
        if existing and not force:
            raise FileExistsError(f"{out} already holds {', '.join(p.name for p in existing)}; pass --force")
        for p in existing:
            p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mljobs.datasets.helmets", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write synthetic plays (train_labels.csv, detections.csv, snaps.csv)")
    gen.add_argument("dir")
    gen.add_argument("--plays", type=positive_int, required=True)
    gen.add_argument("--frames", type=positive_int, required=True, help="frames per play (>= 10)")
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--force", action="store_true", help="replace the files if DIR already has them")
    ren = sub.add_parser("render", help="write simulated plays as mp4 videos and their train_labels.csv")
    ren.add_argument("--out", required=True, metavar="DIR")
    ren.add_argument("--plays", type=positive_int, required=True)
    ren.add_argument("--frames", type=positive_int, default=90, help="frames per play (>= 10)")
    ren.add_argument("--size", type=frame_size, default=(640, 360), metavar="WxH", help="frame size (default 640x360)")
    ren.add_argument("--fps", type=positive_float, default=30.0)
    ren.add_argument("--min-visible", type=float, default=MIN_VISIBLE, metavar="F",
                     help="label a helmet when at least this share of it shows (default 0.5; "
                          "0: every helmet in the frame)")
    ren.add_argument("--seed", type=int, default=7)
    ren.add_argument("--force", action="store_true", help="replace train_labels.csv if DIR already has it")
    args = parser.parse_args(argv)
    if args.frames < 10:
        parser.error("--frames must be at least 10")
    try:
        if args.command == "render":
            result = render(args.out, args.plays, args.frames, args.size, args.fps, args.seed, args.force,
                            args.min_visible)
        else:
            result = generate(args.dir, args.plays, args.frames, args.seed, args.force)
    except (FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
