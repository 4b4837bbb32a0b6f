"""Helpers shared by test files (conftest.py holds the fixtures)."""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]

# Fake AWS credentials planted in the environment of commands that talk to the local AWS
# emulator; none may show up in any output, log, table or artefact.
PLANTED = {
    "AWS_ACCESS_KEY_ID": "AKIAPLANTEDFAKE7Q3XZ",
    "AWS_SECRET_ACCESS_KEY": "plantedSecret/Kx9+vT2wQeLmNs8RrYy4Uu1Oo6Pp0Aa",
    "AWS_SESSION_TOKEN": "plantedSessionToken//ZmFrZXRva2VuLW5vdC1yZWFs",
}


def last_json(stdout: str) -> dict:
    """The JSON summary every job prints as its last line."""
    return json.loads(stdout.strip().splitlines()[-1])


def wait_for(path: Path, text: str, proc: subprocess.Popen, timeout: float = 400) -> None:
    """Until ``text`` shows in the log ``path`` of the running ``proc`` (an AssertionError when
    the process ends first, or after ``timeout`` seconds)."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if text in path.read_text(errors="replace"):
            return
        assert proc.poll() is None, path.read_text()[-3000:]
        time.sleep(0.5)
    raise AssertionError(f"no {text!r} in {timeout} s")


def run_cli(args: list[str], env_extra: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ./spark-submit.sh (or any command) from the project root; output captured."""
    env = dict(os.environ)
    env.pop("MLJOBS_DATA_DIR", None)
    env.update(env_extra or {})
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def frame_counts(res: pd.DataFrame) -> pd.DataFrame:
    """Per-frame num_gt, num_det, tp, fp, fn as the job computes them."""
    gt = res["kind"] == 0
    det = (res["kind"] == 1) & res["above_conf"]
    g = res.assign(gt=gt, det=det, tp=det & res["matched"], gtm=gt & res["matched"])
    agg = g.groupby(["video", "frame"]).agg(num_gt=("gt", "sum"), num_det=("det", "sum"), tp=("tp", "sum"),
                                            gtm=("gtm", "sum")).reset_index()
    agg["fp"] = agg["num_det"] - agg["tp"]
    agg["fn"] = agg["num_gt"] - agg["gtm"]
    return agg.drop(columns="gtm").astype({c: int for c in ("num_gt", "num_det", "tp", "fp", "fn")})


def coco_reference(res: pd.DataFrame, video: str | None = None) -> np.ndarray:
    """COCOeval's AP, AP50, AP75 on the same boxes, fed in the engine's canonical order
    (images = sorted (video, frame), categories = sorted classes)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    res = res.sort_values(["video", "frame", "cls", "kind", "rank"])
    images = sorted(set(zip(res["video"], res["frame"])))
    img_id = {k: i + 1 for i, k in enumerate(images)}
    cat_id = {c: i + 1 for i, c in enumerate(sorted(res["cls"].unique()))}
    gt = res[res["kind"] == 0]
    dt = res[res["kind"] == 1]
    dataset = {
        "images": [{"id": i} for i in img_id.values()],
        "categories": [{"id": i} for i in cat_id.values()],
        "annotations": [
            {"id": n + 1, "image_id": img_id[(r.video, r.frame)], "category_id": cat_id[r.cls],
             "bbox": [r.left, r.top, r.width, r.height], "area": r.width * r.height, "iscrowd": 0}
            for n, r in enumerate(gt.itertuples())
        ],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes([
            {"image_id": img_id[(r.video, r.frame)], "category_id": cat_id[r.cls],
             "bbox": [r.left, r.top, r.width, r.height], "score": r.score}
            for r in dt.itertuples()
        ])
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        if video is not None:
            ev.params.imgIds = [img_id[k] for k in images if k[0] == video]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[:3]
