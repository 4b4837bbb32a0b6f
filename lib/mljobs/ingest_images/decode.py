"""What an image file is, decided inside a task: its format (from its first bytes, never its
name), whether OpenCV decodes it whole, its size and channels, its sha256; or why it cannot be
used (one of the reasons below, with a detail)."""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

# The quarantine's reasons, fixed words (the summary counts them); the detail says more.
EMPTY, NOT_IMAGE, TRUNCATED, UNDECODABLE, TOO_SMALL = "empty file", "not an image", "truncated", "cannot decode", "too small"
NO_LABEL, MISSING, BAD_MANIFEST = "no label", "missing file", "bad manifest line"

_MAGIC = ((b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF87a", "gif"), (b"GIF89a", "gif"),
          (b"BM", "bmp"), (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"))
FIELDS = ("format", "width", "height", "channels", "sha256", "reason", "detail")


def sniff(data: bytes) -> str | None:
    """The image format of these bytes by their signature (None: not one OpenCV reads here)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((fmt for magic, fmt in _MAGIC if data.startswith(magic)), None)


def truncation(data: bytes, fmt: str) -> str | None:
    """Why a JPEG or PNG is cut short (its end marker is missing), else None. libjpeg decodes a
    truncated JPEG anyway (grey below the cut, one warning), so the decoder's word is not enough."""
    if fmt == "jpeg" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        return "no end-of-image marker (FFD9): the file is cut short"
    if fmt == "png" and b"IEND" not in data[-12:]:
        return "no IEND chunk: the file is cut short"
    return None


def inspect(data: bytes | None, min_size: int) -> dict:
    """The FIELDS of one file's bytes: format, width, height, channels and sha256 of a usable
    image (reason None), or the reason and detail of an unusable one."""
    import cv2

    out = dict.fromkeys(FIELDS)
    data = bytes(data or b"")
    if not data:
        return {**out, "reason": EMPTY, "detail": "0 bytes"}
    out["sha256"] = hashlib.sha256(data).hexdigest()
    fmt = sniff(data)
    if fmt is None:
        return {**out, "reason": NOT_IMAGE, "detail": f"unknown signature {data[:8].hex()}"}
    out["format"] = fmt
    cut = truncation(data, fmt)
    if cut:
        return {**out, "reason": TRUNCATED, "detail": f"{fmt}: {cut}"}
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.size == 0:
        return {**out, "reason": UNDECODABLE, "detail": f"OpenCV {cv2.__version__} cannot decode this {fmt}"}
    height, width = pixels.shape[:2]
    out.update(width=int(width), height=int(height), channels=1 if pixels.ndim == 2 else int(pixels.shape[2]))
    if min(width, height) < min_size:
        return {**out, "reason": TOO_SMALL, "detail": f"{width}x{height}: a side under --min-size {min_size}"}
    return out


def inspect_udf(min_size: int):
    """A pandas UDF: the bytes column -> a struct of FIELDS (one OpenCV decode per file)."""
    from pyspark.sql.functions import pandas_udf

    schema = ("format string, width int, height int, channels int, sha256 string, reason string, detail string")

    @pandas_udf(schema)
    def inspect_files(contents: pd.Series) -> pd.DataFrame:
        import cv2

        cv2.setNumThreads(1)  # a task is one core's worth of work
        out = pd.DataFrame([inspect(c, min_size) for c in contents], columns=list(FIELDS))
        return out.astype({"width": "Int32", "height": "Int32", "channels": "Int32"})

    return inspect_files
