"""Per-video plots (matplotlib, Agg backend):

* ``<video>_stacked.png`` — TP (green), FN (red) and FP (blue) stacked per frame, the
  ground-truth helmets as a black line (it runs along the top of the FN band), the snap
  frame as a dashed line; the title has the play's precision, recall and F1.
* ``<video>_pr.png`` — precision and recall per frame, FP and FN counts on a second axis.
* ``<video>_worst.png`` — when the video file is found and opencv is installed: the N
  frames with the most errors, missed boxes red, false ones blue, correct ones cyan.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

GREEN, RED, BLUE, CYAN = "#2ca02c", "#d62728", "#1f77b4", "#17becf"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def file_stem(video: str) -> str:
    stem = video[:-4] if video.lower().endswith((".mp4", ".avi", ".mov", ".mkv")) else video
    return _SAFE.sub("_", stem)


def dense_frames(frames: pd.DataFrame) -> pd.DataFrame:
    """One row per frame from the first to the last; frames without boxes count zero."""
    f = frames.sort_values("frame").set_index("frame")
    full = range(int(f.index.min()), int(f.index.max()) + 1)
    out = f.reindex(full)
    for c in ("num_gt", "num_det", "tp", "fp", "fn"):
        out[c] = out[c].fillna(0).astype(int)
    return out.reset_index().rename(columns={"index": "frame"})


def _title(video: str, stats: dict, conf_thr: float, iou_thr: float) -> str:
    def fmt(v):
        return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.2f}"

    return (f"{video}: precision {fmt(stats.get('precision'))}, recall {fmt(stats.get('recall'))}, "
            f"F1 {fmt(stats.get('f1'))}\n(score >= {conf_thr:g}, IoU >= {iou_thr:g}; "
            f"TP {stats.get('tp', 0)}, FN {stats.get('fn', 0)}, FP {stats.get('fp', 0)})")


def stacked_plot(frames: pd.DataFrame, video: str, path: Path, stats: dict, snap: int | None = None,
                 conf_thr: float = 0.9, iou_thr: float = 0.5) -> Path:
    """The reference's stacked TP/FN/FP area plot for one video."""
    plt = _pyplot()
    d = dense_frames(frames)
    fig, ax = plt.subplots(figsize=(12, 4.5), dpi=100)
    ax.stackplot(d["frame"], d["tp"], d["fn"], d["fp"], colors=[GREEN, RED, BLUE], alpha=0.85,
                 labels=["TP (found)", "FN (missed)", "FP (false)"], step=None)
    ax.plot(d["frame"], d["num_gt"], color="black", linewidth=1.4, label="ground-truth helmets")
    if snap is not None:
        ax.axvline(snap, color="black", linestyle="--", linewidth=1.2, label=f"snap (frame {snap})")
    ax.set_xlim(d["frame"].iloc[0], d["frame"].iloc[-1])
    ax.set_ylim(0, max(1, int((d["tp"] + d["fn"] + d["fp"]).max()), int(d["num_gt"].max())) * 1.1)
    ax.set_xlabel("frame")
    ax.set_ylabel("boxes")
    ax.set_title(_title(video, stats, conf_thr, iou_thr), fontsize=10)
    ax.legend(loc="lower left", fontsize=8, ncol=5, framealpha=0.9)
    ax.grid(alpha=0.25)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def pr_plot(frames: pd.DataFrame, video: str, path: Path, stats: dict, snap: int | None = None,
            conf_thr: float = 0.9, iou_thr: float = 0.5) -> Path:
    """Precision and recall per frame; FP and FN counts on the right axis."""
    plt = _pyplot()
    d = dense_frames(frames)
    fig, ax = plt.subplots(figsize=(12, 4.5), dpi=100)
    ax.plot(d["frame"], d["precision"], color=BLUE, linewidth=1.2, label="precision")
    ax.plot(d["frame"], d["recall"], color=RED, linewidth=1.2, label="recall")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("frame")
    ax.set_ylabel("precision / recall")
    ax2 = ax.twinx()
    ax2.bar(d["frame"], d["fn"], width=1.0, color=RED, alpha=0.3, label="FN per frame")
    ax2.bar(d["frame"], d["fp"], bottom=d["fn"], width=1.0, color=BLUE, alpha=0.3, label="FP per frame")
    ax2.set_ylim(0, max(4, int((d["fn"] + d["fp"]).max()) * 3))
    ax2.set_ylabel("errors per frame")
    if snap is not None:
        ax.axvline(snap, color="black", linestyle="--", linewidth=1.2, label=f"snap (frame {snap})")
    ax.set_xlim(d["frame"].iloc[0], d["frame"].iloc[-1])
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="center left", fontsize=8, ncol=5, framealpha=0.9)
    ax.set_title(_title(video, stats, conf_thr, iou_thr), fontsize=10)
    ax.grid(alpha=0.25)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def find_video_file(videos_dir: str | None, video: str) -> Path | None:
    if not videos_dir:
        return None
    base = Path(videos_dir)
    for name in (video, f"{video}.mp4", f"{file_stem(video)}.mp4"):
        if (base / name).is_file():
            return base / name
    return None


def worst_frames_image(video_file: Path, boxes: pd.DataFrame, frames: list[int], path: Path,
                       title: str = "", first_frame: int = 1) -> Path | None:
    """A grid of the given frames read from the video with their boxes: missed ground
    truth red, false detections blue, matched detections cyan. None without opencv or
    when no frame can be read. ``first_frame``: the number of the video's first frame
    (the NFL labels count from 1)."""
    try:
        import cv2  # optional: only for this image
    except ImportError:
        return None
    plt = _pyplot()
    cap = cv2.VideoCapture(str(video_file))
    images = []
    try:
        for fr in frames:
            cap.set(cv2.CAP_PROP_POS_FRAMES, max(0, fr - first_frame))
            ok, img = cap.read()
            if not ok:
                continue
            images.append((fr, cv2.cvtColor(img, cv2.COLOR_BGR2RGB)))
    finally:
        cap.release()
    if not images:
        return None
    cols = min(3, len(images))
    rows = (len(images) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.6 * rows), dpi=100, squeeze=False)
    from matplotlib.patches import Rectangle

    for ax in axes.ravel():
        ax.axis("off")
    for ax, (fr, img) in zip(axes.ravel(), images):
        ax.imshow(img)
        fb = boxes[boxes["frame"] == fr]
        n_fn = n_fp = 0
        for b in fb.itertuples():
            if b.kind == 0 and not b.matched:
                color, n_fn = RED, n_fn + 1
            elif b.kind == 1 and b.matched:
                color = CYAN
            elif b.kind == 1:
                color, n_fp = BLUE, n_fp + 1
            else:
                continue
            ax.add_patch(Rectangle((b.left, b.top), b.width, b.height, fill=False, edgecolor=color, linewidth=1.2))
        ax.set_title(f"frame {fr}: {n_fn} missed (red), {n_fp} false (blue)", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_videos(spark, frames_df, matched_df, videos_pd: pd.DataFrame, out_dir: Path, cfg, progress) -> list[str]:
    """The plots of up to cfg.max_plots videos (most errors first); returns the paths."""
    from pyspark.sql import functions as F

    out_dir.mkdir(parents=True, exist_ok=True)
    per_video = videos_pd[videos_pd["scope"] == "video"].copy()
    per_video["_errors"] = per_video["fp"] + per_video["fn"]
    chosen = per_video.sort_values(["_errors", "video"], ascending=[False, True]).head(cfg.max_plots)
    if len(chosen) < len(per_video):
        progress(f"plotting {len(chosen)} of {len(per_video)} videos (the ones with most errors; --max-plots)")
    names = list(chosen["video"])
    frames_pd = frames_df.where(F.col("video").isin(names)).toPandas()
    written: list[str] = []
    for rec in chosen.to_dict("records"):
        video = rec["video"]
        f = frames_pd[frames_pd["video"] == video]
        if f.empty:
            continue
        snap = rec.get("snap_frame")
        snap = None if snap is None or (isinstance(snap, float) and np.isnan(snap)) else int(snap)
        stem = file_stem(video)
        written.append(str(stacked_plot(f, video, out_dir / f"{stem}_stacked.png", rec, snap, cfg.conf_thr, cfg.iou_thr)))
        written.append(str(pr_plot(f, video, out_dir / f"{stem}_pr.png", rec, snap, cfg.conf_thr, cfg.iou_thr)))
        vfile = find_video_file(cfg.videos_dir, video)
        if vfile is not None and cfg.worst_frames > 0:
            worst = f.assign(_e=f["fn"] + f["fp"]).sort_values(["_e", "frame"], ascending=[False, True])
            worst = [int(x) for x in worst[worst["_e"] > 0]["frame"].head(cfg.worst_frames)]
            if worst:
                boxes = matched_df.where((F.col("video") == video) & F.col("frame").isin(worst)
                                         & ((F.col("kind") == 0) | F.col("above_conf"))).toPandas()
                img = worst_frames_image(vfile, boxes, sorted(worst), out_dir / f"{stem}_worst.png",
                                         f"{video}: the {len(worst)} frames with most errors")
                if img is not None:
                    written.append(str(img))
    return written


def class_pr_plots(curves: pd.DataFrame, figures: pd.DataFrame, out_dir: Path, max_plots: int) -> list[str]:
    """``class_<class>_coco_pr.png`` per class with ground truth (at most ``max_plots``, by
    name): COCO's interpolated precision at the 101 recall points, at IoU .50, .75 and the
    mean over .50:.95 (area all, 100 detections an image); the title has the class's AP."""
    from mljobs.coco import REC_THRS

    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    ap = {r.cls: r for r in figures[figures["scope"] == "class"].itertuples(index=False)}
    written: list[str] = []
    for row in curves.sort_values("cls").itertuples(index=False):
        if len(written) >= max_plots:
            break
        pr = np.asarray(row.pr, dtype=np.float64).reshape(3, len(REC_THRS)) if row.pr is not None else None
        if pr is None or (pr < 0).all():
            continue  # no ground truth: COCO's -1
        fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
        for curve, label, style in zip(pr, ("IoU .50", "IoU .75", "mean over IoU .50:.95"), ("-", "--", ":")):
            ax.plot(REC_THRS, curve, style, linewidth=1.6, label=label)
        f = ap.get(row.cls)
        title = f"{row.cls}: AP {f.ap:.3f}, AP50 {f.ap50:.3f}, AP75 {f.ap75:.3f}" if f is not None else str(row.cls)
        ax.set_title(title + "\n(COCO: 101-point interpolated precision, area all, 100 detections an image)",
                     fontsize=9)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.25)
        ax.legend(loc="lower left", fontsize=8)
        fig.tight_layout()
        path = out_dir / f"class_{file_stem(str(row.cls))}_coco_pr.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(str(path))
    return written
