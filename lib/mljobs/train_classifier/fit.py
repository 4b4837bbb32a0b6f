"""The training process (one per TorchDistributor process; plain torch, no Spark): decode the
staged rows once, normalise by the training images' channel statistics, train with random
affine augmentation and class weights (DDP when several processes), keep the weights of the
best validation loss (mljobs.torchtrain.loop)."""
from __future__ import annotations

import math

import numpy as np

from mljobs.models import vision
from mljobs.torchtrain import files, launch, loop

ROTATE_DEG, SCALE, SHIFT = 10.0, 0.10, 0.10  # augmentation: +-10 degrees, +-10 % size, +-10 % shift


def decoded(spec: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """part -> (N x S x S x 3 uint8 pixels, N labels) of the staged rows, in sha256 order."""
    table = files.read_parquet(spec["data"], ["content", "y", "part", "sha256"]).to_pandas()
    table = table.sort_values(["part", "sha256"], kind="stable")
    out = {}
    for part in ("train", "val"):
        rows = table[table["part"] == part]
        pixels = [vision.to_pixels(b, spec["image_size"]) for b in rows["content"]]
        if any(p is None for p in pixels):
            raise ValueError(f"{sum(p is None for p in pixels)} staged images cannot be decoded")
        size = spec["image_size"]
        out[part] = (np.stack(pixels) if pixels else np.zeros((0, size, size, 3), np.uint8),
                     rows["y"].to_numpy(np.int64))
    return out


def channel_stats(pixels: np.ndarray) -> tuple[list[float], list[float]]:
    x = pixels.reshape(-1, 3).astype(np.float64) / 255.0
    return [round(float(v), 6) for v in x.mean(0)], [round(max(float(v), 1e-3), 6) for v in x.std(0)]


def class_weights(y: np.ndarray, classes: int, mode: str):
    """n / (classes * n_c): each label weighs the same in the loss, whatever its count."""
    import torch

    if mode == "none":
        return None
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    w = np.where(counts > 0, len(y) / (classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32)


def augment(x, gen, hflip: bool):
    """A random affine transform per image (rotation, scale, shift; a mirror with ``hflip``)."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    u = torch.rand(5, n, generator=gen) * 2 - 1
    angle, scale = u[0] * math.radians(ROTATE_DEG), 1 + u[1] * SCALE
    flip = torch.where((u[4] > 0) & hflip, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, u[2] * 2 * SHIFT], 1),
                         torch.stack([sin * flip, cos, u[3] * 2 * SHIFT], 1)], 1).to(x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


def initial_net(spec: dict):
    """The net, from random weights or the user's state dict (layers of another shape, e.g. a
    head with another number of labels, stay random)."""
    net = vision.build_net(spec["arch"], len(spec["labels"]))
    if spec.get("init_weights"):
        spec["init_loaded"] = vision.load_init(net, spec["init_weights"], spec["arch"])
    return net


def train_process(spec: dict) -> dict | None:
    """TorchDistributor's function: rank 0 returns the result (weights, history, statistics)."""
    import torch

    proc = launch.start(spec["use_gpu"])
    try:
        torch.manual_seed(spec["seed"])
        data = decoded(spec)
        mean, std = channel_stats(data["train"][0])
        net = initial_net(spec).to(proc.device)
        model = launch.distributed(net, proc)
        opt = torch.optim.AdamW(net.parameters(), lr=spec["learning_rate"], weight_decay=spec["weight_decay"])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=spec["epochs"])
        weights = class_weights(data["train"][1], len(spec["labels"]), spec["class_weights"])
        crit = torch.nn.CrossEntropyLoss(weight=None if weights is None else weights.to(proc.device))
        epoch_fn = _epoch(spec, proc, model, opt, crit, data["train"], mean, std)
        val_fn = _validation(spec, proc, net, data["val"], mean, std)
        plan = loop.Plan(spec["epochs"], spec["patience"], spec["fingerprint"], spec["checkpoint_dir"])
        result = loop.fit(proc, plan, net, opt, sched, epoch_fn, val_fn, log=print if proc.main else _quiet)
        return {**result, "mean": mean, "std": std, "init_loaded": spec.get("init_loaded"),
                "processes": proc.world} if proc.main else None
    finally:
        launch.stop(proc)


def _quiet(*_):
    pass


def _epoch(spec, proc, model, opt, crit, train, mean, std):
    import torch

    pixels, labels = train
    batch = spec["batch_size"]

    def run(epoch: int) -> float:
        model.train()
        torch.manual_seed(spec["seed"] * 100_003 + epoch)  # dropout: the same on a resumed run
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(spec["seed"] + epoch)).numpy()
        order = order[: len(order) // proc.world * proc.world][proc.rank::proc.world]  # equal shards
        if len(order) % batch == 1:
            order = order[:-1]  # batch norm cannot train on a batch of one
        gen = torch.Generator().manual_seed(spec["seed"] * 1_000_003 + epoch * 101 + proc.rank)
        total, seen = 0.0, 0
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            x = vision.to_batch(pixels[idx], mean, std).to(proc.device)
            if spec["augment"]:
                x = augment(x, gen, spec["hflip"])
            y = torch.from_numpy(labels[idx]).to(proc.device)
            loss = crit(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, seen = total + loss.item() * len(idx), seen + len(idx)
        return launch.mean_over_processes(proc, total, seen)

    return run


def _validation(spec, proc, net, val, mean, std):
    import torch

    pixels, labels = val
    meta = {"mean": mean, "std": std, "labels": spec["labels"]}

    def run() -> dict | None:
        if not len(labels):
            return None
        net.eval()
        probs = vision.probabilities(net, pixels, meta, proc.device, spec["batch_size"])
        net.train()
        p = torch.from_numpy(probs[np.arange(len(labels)), labels]).clamp_min(1e-12)
        pred = probs.argmax(1)
        return {"val_loss": round(float(-p.log().mean()), 6), "val_accuracy": round(float((pred == labels).mean()), 6)}

    return run
