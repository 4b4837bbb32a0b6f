"""Image classifiers: the nets train-classifier trains, the preprocessing that training, the
evaluation and classify share (one function, so a model sees the same pixels everywhere), the
model directory, and scoring inside Spark tasks through the per-worker model cache.

Preprocessing: OpenCV decodes the bytes as 3-channel colour (a grey image is repeated into the
three, an alpha channel dropped), BGR becomes RGB, the image is resized to ``image_size`` square
(area interpolation when shrinking, bilinear when enlarging), scaled to [0, 1] and normalised by
the training images' per-channel mean and standard deviation (kept in metadata.json).

torch is imported inside the functions: the core install (and every other job) runs without it.
"""
from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from mljobs.errors import InputError
from mljobs.models.artifact import FORMAT_VERSION, now_utc, read_model_dir, save_model_dir

ARCHS = ("small-cnn", "mobilenet_v3_small", "resnet18")
MODEL_FORMAT = "torch-image-classifier"
WEIGHTS_FILE = "model.pt"
WRITTEN_BY = "train-classifier"


def build_net(arch: str, classes: int):
    """A freshly initialised net (nothing is ever downloaded: torchvision's with weights=None)."""
    import torch.nn as nn

    if arch == "small-cnn":
        def block(i, o):
            return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

        return nn.Sequential(*block(3, 32), *block(32, 32), nn.MaxPool2d(2), *block(32, 64), *block(64, 64),
                             nn.MaxPool2d(2), *block(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Dropout(0.3), nn.Linear(128, classes))
    import torchvision

    if arch in ("mobilenet_v3_small", "resnet18"):
        return getattr(torchvision.models, arch)(weights=None, num_classes=classes)
    raise InputError(f"unknown architecture {arch!r}; valid: {', '.join(ARCHS)}")


def decode_bgr(data: bytes | None) -> np.ndarray | None:
    """One image's bytes as H x W x 3 BGR uint8, as OpenCV reads colour (None: cannot decode them)."""
    import cv2

    if not data:
        return None
    img = cv2.imdecode(np.frombuffer(bytes(data), np.uint8), cv2.IMREAD_COLOR)
    return None if img is None or img.size == 0 else img


def to_pixels(data: bytes | None, size: int) -> np.ndarray | None:
    """One image's bytes as size x size x 3 RGB uint8 (None: OpenCV cannot decode them)."""
    import cv2

    img = decode_bgr(data)
    if img is None:
        return None
    shrink = min(img.shape[:2]) > size
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def to_batch(pixels: np.ndarray, mean, std):
    """N x S x S x 3 uint8 -> the nets' N x 3 x S x S float tensor, normalised."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


@dataclass(kw_only=True)
class TorchModelMeta:
    """metadata.json of a torch model directory: what every one holds (image classifiers here,
    detectors in mljobs.models.torchdet add their own fields)."""

    name: str
    arch: str
    image_size: int
    params: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)       # the data it was trained on
    metrics: dict[str, Any] = field(default_factory=dict)    # validation history, evaluation
    model_format: str = ""
    model_file: str = WEIGHTS_FILE
    format_version: int = FORMAT_VERSION
    created_at: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    model_sha256: str = ""
    path: str = ""      # the local directory (a copy for a remote one); not written
    location: str = ""  # as given; not written

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("path", "location")}

    def weights(self) -> bytes:
        return (Path(self.path) / self.model_file).read_bytes()


@dataclass(kw_only=True)
class ImageClassifier(TorchModelMeta):
    """metadata.json of an image classifier."""

    labels: list[str]
    mean: list[float]
    std: list[float]
    model_format: str = MODEL_FORMAT


def versions() -> dict[str, str]:
    import platform

    import cv2
    import pyspark
    import torch
    import torchvision

    from mljobs import __version__

    return {"mljobs": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "opencv": cv2.__version__, "pyspark": pyspark.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def save_torch_model(directory, state_dict_bytes: bytes, meta, extra: dict[str, bytes] | None = None) -> str | Path:
    """A torch model directory (image classifier or detector): the weights (a state dict, as
    torch.save wrote it), metadata.json from ``meta`` (its ``to_json()``) and ``extra`` files."""
    meta.created_at = meta.created_at or now_utc()
    meta.versions = meta.versions or versions()
    target, written = save_model_dir(directory, lambda p: Path(p).write_bytes(state_dict_bytes), meta.model_file,
                                     meta.to_json(), extra)
    meta.model_sha256, meta.location = written["model_sha256"], str(target)
    return target


def load_torch_model(directory, cls, model_format: str, written_by: str, what: str):
    """``cls`` (a metadata dataclass with path and location) of a torch model directory."""
    d, data = read_model_dir(directory, written_by)
    if data.get("model_format") != model_format:
        raise InputError(f"{directory}: a {data.get('model_format', 'xgboost-json')} model, not {what} "
                         f"({written_by} writes those)")
    known = set(cls.__dataclass_fields__) - {"path", "location"}
    meta = cls(**{k: v for k, v in data.items() if k in known})
    meta.path, meta.location = str(d), str(directory)
    return meta


def save_classifier(directory, state_dict_bytes: bytes, meta: ImageClassifier,
                    extra: dict[str, bytes] | None = None) -> str | Path:
    """The weights (a torch state dict, as torch.save wrote it), metadata.json and ``extra`` files."""
    return save_torch_model(directory, state_dict_bytes, meta, extra)


def load_classifier(directory) -> ImageClassifier:
    return load_torch_model(directory, ImageClassifier, MODEL_FORMAT, WRITTEN_BY, "an image classifier")


def state_dict_of(data: bytes) -> dict:
    """A torch state dict from bytes (weights only: no pickled code runs)."""
    import torch

    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input
        raise InputError(f"not a torch state dict ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise InputError("not a torch state dict (a dict of tensors)")
    return state


def read_init_weights(spark, location: str | None) -> bytes | None:
    """An --init-weights file's bytes (local or a URI), checked to be a state dict before any
    training (train-classifier, train-detector)."""
    if not location:
        return None
    from mljobs import fs

    if fs.is_uri(location):
        local = fs.download_tree(spark, location, fs.temp_dir("mljobs-init-"))
        raw = [p for p in local.rglob("*") if p.is_file()][0].read_bytes()
    else:
        raw = fs.local_of(location).read_bytes()
    try:
        state_dict_of(raw)
    except InputError as exc:
        raise InputError(f"--init-weights {location}: {exc}") from None
    return raw


def load_init(net, raw: bytes, arch: str) -> str:
    """Load the tensors of the --init-weights state dict whose name and shape fit ``net`` (the
    others, e.g. a head for another number of labels, stay as they are); "<loaded> of <all>
    tensors". ValueError when none fits."""
    given = state_dict_of(raw)
    own = net.state_dict()
    usable = {k: v for k, v in given.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not usable:
        raise ValueError(f"--init-weights: none of its {len(given)} tensors fits a {arch}")
    net.load_state_dict(usable, strict=False)
    return f"{len(usable)} of {len(own)} tensors"


def net_of(meta: dict, weights: bytes, device: str = "cpu", threads: int | None = None):
    """The trained net in eval mode on ``device``."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    net = build_net(meta["arch"], len(meta["labels"]))
    net.load_state_dict(state_dict_of(weights))
    return net.to(device).eval()


def cached_net(meta: dict, weights: Callable[[], bytes], device: str = "cpu", threads: int = 1):
    """net_of once per Python worker (mljobs.modelcache), keyed by the weights' sha256."""
    from mljobs import modelcache

    return modelcache.get(("torch-image", meta["model_sha256"], device, threads),
                          lambda: net_of(meta, weights(), device, threads))


def probabilities(net, pixels: np.ndarray, meta: dict, device: str = "cpu", batch: int = 64) -> np.ndarray:
    """Softmax probabilities (N x labels, float32) of N preprocessed images."""
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(pixels), batch):
            x = to_batch(pixels[i:i + batch], meta["mean"], meta["std"]).to(device)
            out.append(torch.softmax(net(x), dim=1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(meta["labels"])), np.float32)


def probabilities_udf(meta: dict, weights_broadcast, device: str = "cpu", threads: int = 1, batch: int = 64):
    """A pandas UDF: encoded image bytes -> array<float> of the labels' probabilities in
    ``meta['labels']`` order (NULL where OpenCV cannot decode the bytes). The net is loaded
    once per worker; images are decoded and scored a batch at a time."""
    from pyspark.sql.functions import pandas_udf

    size = int(meta["image_size"])

    @pandas_udf("array<float>")
    def score(content: pd.Series) -> pd.Series:
        net = cached_net(meta, lambda: weights_broadcast.value, device, threads)
        return pd.Series(scored(net, [to_pixels(b, size) for b in content], meta, device, batch), dtype=object)

    return score


def scored(net, pixels: list, meta: dict, device: str = "cpu", batch: int = 64) -> list:
    """``probabilities`` of the decoded images of a list (to_pixels' results), None where one is None."""
    size = int(meta["image_size"])
    ok = [i for i, p in enumerate(pixels) if p is not None]
    probs = probabilities(net, np.stack([pixels[i] for i in ok]) if ok else np.zeros((0, size, size, 3), np.uint8),
                          meta, device, batch)
    out = [None] * len(pixels)
    for i, p in zip(ok, probs):
        out[i] = p
    return out
