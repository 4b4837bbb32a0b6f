"""The training process (one per TorchDistributor process; plain torch, no Spark): read the
staged frames, train the detector (DDP when several processes), and after every epoch score
the validation frames and compute COCO's AP and AP50 with the project's engine
(``mljobs.coco``); the weights of the best validation AP are kept (mljobs.torchtrain.loop).
Frames are decoded a batch at a time (full-size frames do not all fit in memory)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from mljobs import coco
from mljobs.models import torchdet
from mljobs.models.vision import load_init
from mljobs.torchtrain import files, launch, loop


def staged(spec: dict) -> dict[str, pd.DataFrame]:
    """part -> its frames (video, frame, content, boxes, cls), in (video, frame) order."""
    table = files.read_parquet(spec["data"], ["video", "frame", "content", "part", "boxes", "cls"]).to_pandas()
    table = table.sort_values(["part", "video", "frame"], kind="stable").reset_index(drop=True)
    return {part: table[table["part"] == part].reset_index(drop=True) for part in ("train", "val")}


def target(row) -> dict:
    import torch

    boxes = np.asarray(row["boxes"], np.float32).reshape(-1, 4)
    return {"boxes": torch.from_numpy(boxes), "labels": torch.as_tensor(np.asarray(row["cls"], np.int64))}


def images(rows: pd.DataFrame) -> list:
    out = [torchdet.to_image(b) for b in rows["content"]]
    bad = [f"{v}#{f}" for v, f, x in zip(rows["video"], rows["frame"], out) if x is None]
    if bad:
        raise ValueError(f"{len(bad)} staged frames cannot be decoded, e.g. {', '.join(bad[:3])}")
    return out


def initial_net(spec: dict):
    """The detector, random or from the user's state dict (tensors of another shape stay random)."""
    net = torchdet.build_net(spec["arch"], len(spec["classes"]), spec["image_size"])
    if spec.get("init_weights"):
        spec["init_loaded"] = load_init(net, spec["init_weights"], spec["arch"])
    return net


def train_process(spec: dict) -> dict | None:
    """TorchDistributor's function: rank 0 returns the result (weights, history)."""
    import torch

    proc = launch.start(spec["use_gpu"])
    try:
        torch.manual_seed(spec["seed"])
        data = staged(spec)
        net = initial_net(spec).to(proc.device)
        model = launch.distributed(net, proc)
        opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=spec["learning_rate"],
                                weight_decay=spec["weight_decay"])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=spec["epochs"])
        plan = loop.Plan(spec["epochs"], spec["patience"], spec["fingerprint"], spec["checkpoint_dir"],
                         monitor="val_ap", higher_is_better=True)
        result = loop.fit(proc, plan, net, opt, sched, _epoch(spec, proc, model, opt, data["train"]),
                          _validation(spec, proc, net, data["val"]), log=print if proc.main else _quiet)
        return {**result, "init_loaded": spec.get("init_loaded"), "processes": proc.world} if proc.main else None
    finally:
        launch.stop(proc)


def _quiet(*_):
    pass


def _epoch(spec, proc, model, opt, train: pd.DataFrame):
    import torch

    batch = spec["batch_size"]

    def run(epoch: int) -> float:
        model.train()
        torch.manual_seed(spec["seed"] * 100_003 + epoch)  # the samplers: the same on a resumed run
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(spec["seed"] + epoch)).numpy()
        order = order[: len(order) // proc.world * proc.world][proc.rank::proc.world]  # equal shards
        total, seen = 0.0, 0
        for i in range(0, len(order), batch):
            rows = train.iloc[order[i:i + batch]]
            xs = [x.to(proc.device) for x in images(rows)]
            ys = [{k: v.to(proc.device) for k, v in target(r).items()} for _, r in rows.iterrows()]
            loss = sum(model(xs, ys).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, seen = total + loss.item() * len(rows), seen + len(rows)
        return launch.mean_over_processes(proc, total, seen)

    return run


def boxes_frame(rows: pd.DataFrame, found: list[dict], classes: list[str]) -> pd.DataFrame:
    """The ground truth and the detections of ``rows`` in ``coco.evaluate``'s layout (boxes as
    the detections tables hold them: whole pixels)."""
    out = []
    for (_, r), f in zip(rows.iterrows(), found):
        gt = np.asarray(r["boxes"], np.float64).reshape(-1, 4)
        for (x1, y1, x2, y2), c in zip(gt.tolist(), list(r["cls"])):
            out.append((r["video"], r["frame"], classes[c - 1], 0, x1, y1, x2 - x1, y2 - y1, np.nan))
        for (x, y, w, h), s, c in zip(torchdet.xywh(f["boxes"]).tolist(), f["scores"].tolist(), f["labels"].tolist()):
            out.append((r["video"], r["frame"], classes[c - 1], 1, x, y, w, h, s))
    return pd.DataFrame(out, columns=["video", "frame", "cls", "kind", "left", "top", "width", "height", "score"])


def _validation(spec, proc, net, val: pd.DataFrame):
    def run() -> dict | None:
        if not len(val):
            return None
        net.eval()
        found = []
        for i in range(0, len(val), spec["batch_size"]):
            found += torchdet.predict(net, images(val.iloc[i:i + spec["batch_size"]]), proc.device, spec["batch_size"])
        net.train()
        stats = coco.evaluate(boxes_frame(val, found, spec["classes"])).iloc[0]
        return {"val_ap": round(float(stats["ap"]), 6), "val_ap50": round(float(stats["ap50"]), 6)}

    return run
