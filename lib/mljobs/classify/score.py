"""Scoring inside Spark tasks: each Arrow batch of image bytes is checked (imagefiles: empty, not an
image, truncated), decoded and preprocessed as in training (vision.to_pixels) and scored in one
pass of the net, which each Python worker loads once (vision.cached_net, keyed by the weights'
sha256). One decode per image: what OpenCV cannot decode is quarantined, not scored."""
from __future__ import annotations

import pandas as pd

from mljobs import imagefiles
from mljobs.models import vision

SCHEMA = "sha256 string, reason string, detail string, probs array<float>"


def score_batch(net, contents, meta: dict, device: str = "cpu", batch: int = 64) -> pd.DataFrame:
    """The SCHEMA columns of a batch of image bytes: sha256, and either the probabilities (in
    ``meta['labels']`` order) or the reason the image cannot be scored and its detail."""
    size = int(meta["image_size"])
    checks = [imagefiles.check(b) for b in contents]
    pixels = [vision.to_pixels(b, size) if c["reason"] is None else None for b, c in zip(contents, checks)]
    for c, p in zip(checks, pixels):
        if c["reason"] is None and p is None:
            c.update(imagefiles.undecodable(c["format"]))
    return pd.DataFrame({"sha256": [c["sha256"] for c in checks], "reason": [c["reason"] for c in checks],
                         "detail": [c["detail"] for c in checks],
                         "probs": pd.Series(vision.scored(net, pixels, meta, device, batch), dtype=object)})


def score_udf(meta: dict, weights_broadcast, device: str = "cpu", threads: int = 1, batch: int = 64):
    """A pandas UDF: the bytes column -> a struct of SCHEMA (score_batch, the net from the cache)."""
    from pyspark.sql.functions import pandas_udf

    @pandas_udf(SCHEMA)
    def score(content: pd.Series) -> pd.DataFrame:
        import cv2

        cv2.setNumThreads(threads)  # a task is spark.task.cpus cores' worth of work
        net = vision.cached_net(meta, lambda: weights_broadcast.value, device, threads)
        return score_batch(net, list(content), meta, device, batch)

    return score
