"""Real labelled images that ship inside packages, written as image files in folders named
after their label (the layout ``ingest-images --labels folders`` reads). No download:

- ``export-digits DIR``: scikit-learn's handwritten digits (``load_digits``: 1,797 real 8x8
  scans, 16 grey levels, UCI's optical recognition set), ``DIR/<digit>/digit_<i>.png``; the
  grey levels 0..16 are written as 0..255 (``round(v * 255 / 16)``), so decoding gives back
  the data exactly.
- ``export-faces DIR``: scikit-image's LFW subset (``skimage.data.lfw_subset``: 100 real
  25x25 face crops from Labeled Faces in the Wild and 100 non-face crops of the same
  photos), ``DIR/face/face_<i>.png`` and ``DIR/non-face/non_face_<i>.png``.

Both print one JSON line (where, how many per label) and write PNG (lossless), so the same
call gives byte-identical files.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mljobs.errors import MljobsError

DIGIT_LEVELS = 16


def _write_png(path: Path, pixels: np.ndarray) -> None:
    import cv2

    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise MljobsError(f"cannot encode {path} as PNG")
    path.write_bytes(encoded.tobytes())


def _export(out: Path, groups: dict[str, tuple[str, np.ndarray]]) -> dict:
    """Write each group's uint8 images as <out>/<label>/<stem>_<i>.png; the counts."""
    counts = {}
    for label, (stem, images) in groups.items():
        folder = out / label
        folder.mkdir(parents=True, exist_ok=True)
        for i, pixels in enumerate(images):
            _write_png(folder / f"{stem}_{i:04d}.png", pixels)
        counts[label] = len(images)
    return counts


def digits_groups() -> dict[str, tuple[str, np.ndarray]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.rint(digits.images * (255 / DIGIT_LEVELS)).astype(np.uint8)
    return {str(d): ("digit", pixels[digits.target == d]) for d in range(10)}


def faces_groups() -> dict[str, tuple[str, np.ndarray]]:
    from skimage import data

    images = np.rint(data.lfw_subset() * 255).astype(np.uint8)  # 100 faces, then 100 non-faces
    return {"face": ("face", images[:100]), "non-face": ("non_face", images[100:])}


DATASETS = {"digits": (digits_groups, "scikit-learn load_digits (UCI optical recognition of handwritten digits)"),
            "faces": (faces_groups, "scikit-image lfw_subset (Labeled Faces in the Wild)")}


def export(name: str, out: str | Path) -> dict:
    """Write dataset ``name`` under ``out``; the JSON summary."""
    groups, source = DATASETS[name]
    out = Path(out)
    counts = _export(out, groups())
    return {"dataset": name, "source": source, "dir": str(out), "images": sum(counts.values()), "labels": counts}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mljobs.datasets.images", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in DATASETS:
        s = sub.add_parser(f"export-{name}", help=f"write {DATASETS[name][1]} as PNG files in label folders")
        s.add_argument("dir", help="output directory (created; files of the same name are replaced)")
    args = p.parse_args(argv)
    print(json.dumps(export(args.command.removeprefix("export-"), args.dir)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
