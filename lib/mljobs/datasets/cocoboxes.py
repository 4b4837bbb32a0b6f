"""Generated COCO-format detection files (an instances file and a results file) for testing
and benchmarking ``detection-metrics`` against pycocotools; nothing is downloaded.

The data exercise every COCO rule: crowd regions (with several detections on them),
boxes of all three area ranges (and exactly on the 32² and 96² boundaries), an ``area``
field that differs from width × height, scores quantised so that ties occur within and
across images, images with detections but no ground truth, a category with detections
but no ground truth and one with ground truth but no detections, and (``crowded``)
images with more than 100 detections of one class.

Usage::

    python -m mljobs.datasets.cocoboxes OUT_DIR [--images 1000] [--seed 7] [--boxes 8]

writes ``OUT_DIR/instances.json`` and ``OUT_DIR/results.json``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def generate_dicts(images: int, seed: int = 7, boxes: int = 8, crowded: bool = True,
                   categories: int = 5) -> tuple[dict, list]:
    """(instances dict, results list). ``boxes``: mean ground-truth boxes per image.
    Category ``categories`` (the last id) has detections but no ground truth; category
    ``categories - 1`` has ground truth but no detections."""
    rng = np.random.default_rng(seed)
    cats = [{"id": c, "name": f"class{c}", "supercategory": "thing"} for c in range(1, categories + 1)]
    imgs, anns, dets = [], [], []
    # image ids not in file order, so the file order and COCO's sorted order differ
    ids = rng.permutation(np.arange(1, images + 1) * 3)
    ann_id = 1
    scores = np.round(np.linspace(0.05, 1.0, 20), 2)  # quantised: many ties
    for n, img in enumerate(ids):
        img = int(img)
        imgs.append({"id": img, "width": 640, "height": 480, "file_name": f"{img:012d}.jpg"})
        n_gt = 0 if n % 7 == 3 else int(rng.poisson(boxes))
        gts = []
        for _ in range(n_gt):
            cat = int(rng.integers(1, categories))  # never the last category
            kind = rng.random()
            side = float(rng.choice([8, 20, 32, 50, 96, 150, 300])) if kind < 0.5 else float(rng.uniform(4, 300))
            w = round(side * float(rng.uniform(0.6, 1.4)), 2) if rng.random() < 0.7 else side
            h = round(side * side / w, 2) if rng.random() < 0.5 else round(float(rng.uniform(4, 300)), 2)
            x, y = round(float(rng.uniform(0, 600)), 2), round(float(rng.uniform(0, 440)), 2)
            crowd = int(rng.random() < 0.06)
            if rng.random() < 0.3:
                area = round(w * h * float(rng.uniform(0.4, 1.0)), 2)  # a mask's area: smaller than the box
            else:
                area = w * h
            gts.append((cat, [x, y, w, h]))
            anns.append({"id": ann_id, "image_id": img, "category_id": cat, "bbox": [x, y, w, h],
                         "area": area, "iscrowd": crowd})
            ann_id += 1
        img_dets = []
        for cat, (x, y, w, h) in gts:
            if cat == categories - 1:
                continue
            for _ in range(int(rng.integers(0, 4))):
                jx, jy = rng.normal(0, 0.1 * w), rng.normal(0, 0.1 * h)
                dw, dh = w * float(rng.uniform(0.8, 1.2)), h * float(rng.uniform(0.8, 1.2))
                img_dets.append((cat, [round(x + jx, 2), round(y + jy, 2), round(max(dw, 1.0), 2),
                                       round(max(dh, 1.0), 2)]))
            if rng.random() < 0.2:  # an exact copy of the box (equal IoUs)
                img_dets.append((cat, [x, y, w, h]))
        for _ in range(int(rng.poisson(2))):  # background and no-ground-truth classes
            cat = int(rng.integers(1, categories + 1))
            if cat == categories - 1:
                cat = categories
            img_dets.append((cat, [round(float(rng.uniform(0, 600)), 2), round(float(rng.uniform(0, 440)), 2),
                                   round(float(rng.uniform(2, 200)), 2), round(float(rng.uniform(2, 200)), 2)]))
        if crowded and n % 50 == 7 and gts:
            cat, (x, y, w, h) = next((g for g in gts if g[0] != categories - 1), (1, gts[0][1]))
            for _ in range(130):
                img_dets.append((cat, [round(x + float(rng.normal(0, 3)), 2), round(y + float(rng.normal(0, 3)), 2),
                                       round(w, 2), round(h, 2)]))
        rng.shuffle(img_dets)
        for cat, bb in img_dets:
            dets.append({"image_id": img, "category_id": cat, "bbox": bb, "score": float(rng.choice(scores))})
    # results grouped by image in no particular image order, as detectors write them
    return {"images": imgs, "annotations": anns, "categories": cats}, dets


def generate(out_dir: str | Path, images: int, seed: int = 7, boxes: int = 8, crowded: bool = True) -> dict:
    """Write instances.json and results.json under out_dir; returns their paths and counts."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    inst, dets = generate_dicts(images, seed, boxes, crowded)
    gt_path, dt_path = out / "instances.json", out / "results.json"
    with open(gt_path, "w") as f:
        json.dump(inst, f)
    with open(dt_path, "w") as f:
        json.dump(dets, f)
    return {"instances": str(gt_path), "results": str(dt_path), "images": len(inst["images"]),
            "annotations": len(inst["annotations"]), "detections": len(dets)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mljobs.datasets.cocoboxes", description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--boxes", type=int, default=8)
    args = ap.parse_args(argv)
    print(json.dumps(generate(args.out_dir, args.images, args.seed, args.boxes)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
