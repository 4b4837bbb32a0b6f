"""torch object detectors (torchvision's Faster R-CNN): the nets train-detector trains, the
pixels they see, the model directory, and scoring frames in Spark tasks for the detect job.

Pixels: OpenCV decodes the frame's bytes as colour, BGR becomes RGB, scaled to [0, 1]; the
net's own transform (torchvision's ``GeneralizedRCNNTransform``) normalises with ImageNet's
statistics and resizes the frame so that neither side exceeds ``image_size`` (aspect kept);
boxes come back in the frame's own pixels. Scores are the box head's softmax probabilities.

Nets are built with ``weights=None, weights_backbone=None``: nothing is ever downloaded; their
BatchNorm layers become GroupNorm (``group_norm``: trained from scratch on small batches).
torch is imported inside the functions: the core install runs without it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mljobs import modelcache
from mljobs.errors import InputError
from mljobs.models import detectors
from mljobs.models.vision import TorchModelMeta, decode_bgr, load_torch_model, save_torch_model, state_dict_of

ARCHS = ("fasterrcnn_resnet18_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn_mobilenet_v3_large_fpn",
         "fasterrcnn_resnet50_fpn")
# fasterrcnn_resnet18_fpn: its pyramid levels (strides 8, 16 and a pooled 32) and their anchors
SMALL_ANCHORS = ((16, 24), (32, 48), (64, 96))
MODEL_FORMAT = "torch-detector"
WEIGHTS_FILE = "model.pt"
WRITTEN_BY = "train-detector"
SCORE_THRESH = 0.001   # boxes kept by the net (COCO evaluation's habit); --score-min filters further
MAX_DETS = 100         # boxes per frame, as COCO's maxDets
# sampled proposals per image while training (torchvision: 2000 / 512 / 256): cheaper on a CPU,
# and ample for frames of tens of objects
TRAIN_SAMPLING = {"rpn_pre_nms_top_n_train": 300, "rpn_post_nms_top_n_train": 300,
                  "rpn_batch_size_per_image": 64, "box_batch_size_per_image": 64}


def build_net(arch: str, classes: int, image_size: int):
    """A freshly initialised detector for ``classes`` labels (+ background)."""
    if arch not in ARCHS:
        raise InputError(f"unknown architecture {arch!r}; valid: {', '.join(ARCHS)}")
    import torchvision

    options = dict(num_classes=classes + 1, min_size=image_size, max_size=image_size, box_score_thresh=SCORE_THRESH,
                   box_detections_per_img=MAX_DETS, **TRAIN_SAMPLING)
    if arch == "fasterrcnn_resnet18_fpn":
        return group_norm(resnet18_fpn(**options))
    make = getattr(torchvision.models.detection, arch)
    return group_norm(make(weights=None, weights_backbone=None, **options))


def resnet18_fpn(**options):
    """torchvision's Faster R-CNN on a ResNet-18 (torchvision's, random) whose feature pyramid
    starts at stride 8 (layers 2 and 3, plus the pooled level), with anchors of 16 to 96 pixels:
    for objects of about 10 to 100 pixels, such as helmets in broadcast frames. torchvision's own
    detectors start at stride 16 (MobileNet) or with 32-pixel anchors; trained from scratch on a
    CPU they learn such small objects far more slowly (docs/train-detector.md: measured)."""
    import torch.nn as nn
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5,
                                   returned_layers=[2, 3], norm_layer=nn.BatchNorm2d)
    anchors = AnchorGenerator(SMALL_ANCHORS, ((0.5, 1.0, 2.0),) * len(SMALL_ANCHORS))
    return FasterRCNN(backbone, rpn_anchor_generator=anchors, **options)


def group_norm(module):
    """Every BatchNorm2d replaced by a GroupNorm of as many groups (<= 32) as divide its channels.
    A detector trained from scratch on a few frames a batch (Wu & He, 2018): batch statistics of
    so few frames are noisy, and the running statistics of BatchNorm lag behind the weights, so
    in eval mode every frame gave the same boxes; GroupNorm is the same in training and eval."""
    import torch.nn as nn

    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            c = child.num_features
            setattr(module, name, nn.GroupNorm(max(g for g in range(1, 33) if c % g == 0), c))
        else:
            group_norm(child)
    return module


def to_image(data: bytes | None):
    """A frame's bytes as the net's 3 x H x W float tensor in [0, 1] (None: cannot decode)."""
    import torch

    bgr = decode_bgr(data)
    if bgr is None:
        return None
    return torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1])).permute(2, 0, 1).float().div_(255.0)


def predict(net, images: list, device: str = "cpu", batch: int = 8) -> list[dict[str, np.ndarray]]:
    """Per image: boxes (n x 4, x1 y1 x2 y2 in its pixels), scores, labels (1-based classes)."""
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            for r in net([x.to(device) for x in images[i:i + batch]]):
                out.append({k: r[k].float().cpu().numpy() if k != "labels" else r[k].cpu().numpy()
                            for k in ("boxes", "scores", "labels")})
    return out


def xywh(boxes: np.ndarray) -> np.ndarray:
    """x1 y1 x2 y2 -> integer left, top, width, height (rounded), as the detections tables hold."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.rint(np.column_stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]])).astype(np.int64)


@dataclass(kw_only=True)
class TorchDetector(TorchModelMeta):
    """metadata.json of a torch detector: its classes (box label c is classes[c - 1])."""

    classes: list[str]
    model_format: str = MODEL_FORMAT


def save_detector(directory, state_dict_bytes: bytes, meta: TorchDetector,
                  extra: dict[str, bytes] | None = None) -> str | Path:
    """The weights (torch.save bytes of the state dict), metadata.json and ``extra`` files."""
    return save_torch_model(directory, state_dict_bytes, meta, extra)


def load_detector(directory) -> TorchDetector:
    return load_torch_model(directory, TorchDetector, MODEL_FORMAT, WRITTEN_BY, "a torch detector")


def net_of(meta: dict, weights: bytes, device: str = "cpu", threads: int | None = None):
    """The trained detector in eval mode on ``device``."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    net = build_net(meta["arch"], len(meta["classes"]), int(meta["image_size"]))
    net.load_state_dict(state_dict_of(weights))
    return net.to(device).eval()


def cached_net(meta: dict, weights: Callable[[], bytes], device: str = "cpu", threads: int = 1):
    """net_of once per Python worker (mljobs.modelcache), keyed by the weights' sha256."""
    return modelcache.get(("torch-detector", meta["model_sha256"], device, threads),
                          lambda: net_of(meta, weights(), device, threads))


def frame_rows(meta: dict, video, frame, content, found: dict | None, score_min: float) -> list[tuple]:
    """The ``detectors.OUT_COLUMNS`` rows of one frame (margin NULL: the score is a probability)."""
    if found is None:
        reason = detectors.NO_CONTENT if content is None or len(content) == 0 else detectors.CANNOT_DECODE
        return [(detectors.BAD, video, frame, None, None, None, None, None, None, None, None, reason)]
    rows = []
    for (x, y, w, h), s, c in zip(xywh(found["boxes"]).tolist(), found["scores"].tolist(), found["labels"].tolist()):
        if s >= score_min:
            rows.append((detectors.DETECTION, video, frame, meta["classes"][c - 1], float(s), None, x, w, y, h,
                         None, None))
    rows.append((detectors.FRAME, video, frame, None, None, None, None, None, None, None, len(rows), None))
    return rows


def detect_fn(meta: dict, weights_broadcast, device: str, params: detectors.DetectParams):
    """mapInArrow function: (video, frame, content) batches in, ``detectors.OUT_SCHEMA`` batches
    out; the net is loaded once per Python worker, each batch's frames scored in one call."""
    def fn(batches):
        import pyarrow as pa

        net = cached_net(meta, lambda: weights_broadcast.value, device, params.threads)
        schema = detectors.arrow_schema()
        for batch in batches:
            cols = batch.to_pydict()
            images = [to_image(c) for c in cols["content"]]
            ok = [i for i, x in enumerate(images) if x is not None]
            found = dict(zip(ok, predict(net, [images[i] for i in ok], device, max(len(ok), 1))))
            rows = []
            for i, (video, frame, content) in enumerate(zip(cols["video"], cols["frame"], cols["content"])):
                rows.extend(frame_rows(meta, video, frame, content, found.get(i), params.score_min))
            yield pa.RecordBatch.from_pylist([dict(zip(detectors.OUT_COLUMNS, r)) for r in rows], schema=schema)

    return fn
