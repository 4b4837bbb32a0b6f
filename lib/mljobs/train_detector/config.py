"""Options of the train-detector job: one dataclass, each default on its field, validated once
when built, before Spark starts."""
from __future__ import annotations

import re
from dataclasses import dataclass

from mljobs.config import JobConfig, parse_table_name, validate_identifier
from mljobs.errors import InputError, MljobsError
from mljobs.models.torchdet import ARCHS
from mljobs.readers import is_path
from mljobs.uris import is_uri, local_of, output_location

_NAME = re.compile(r"[^A-Za-z0-9_]+")


@dataclass
class TrainDetectorConfig(JobConfig):
    """What to train on, how, and where the model goes (the flags of ``jobs/train_detector.py``)."""

    frames: str                         # a frames table DB.NAME (video, frame, content), or a Parquet path
    labels: str                         # boxes: a CSV/Parquet path or a table (video, frame, left, width, top, height)
    model_dir: str                      # local or s3://; checkpoints go under <model_dir>/checkpoint
    name: str | None = None             # the model's name (default: the model directory's last part)
    training_table: str | None = None   # per-epoch history (default: <frames db>.<name>_training)
    class_column: str | None = None     # None: one class, "helmet" (NFL train_labels' label names the player)
    arch: str = "fasterrcnn_resnet18_fpn"
    image_size: int = 640               # frames are scaled so that neither side exceeds this (aspect kept)
    epochs: int = 20
    batch_size: int = 4
    learning_rate: float = 0.0005       # AdamW's, decayed on a cosine over --epochs
    weight_decay: float = 0.0001
    patience: int = 20                  # epochs without a better validation AP before stopping
    val_fraction: float = 0.2           # share of the labelled videos held out for validation (by video)
    seed: int = 0
    init_weights: str | None = None     # a local or S3 torch state dict to start from
    num_processes: int = 1              # TorchDistributor processes (DDP)

    def validate(self) -> None:
        if not is_path(str(self.frames)):
            parse_table_name(self.frames)
        validate_identifier(self.model_name + "_training", "training table name")
        if self.training_table:
            parse_table_name(self.training_table)
        if self.arch not in ARCHS:
            raise MljobsError(f"--arch {self.arch!r}: valid: {', '.join(ARCHS)}")
        for flag, value, low in (("--image-size", self.image_size, 32), ("--epochs", self.epochs, 1),
                                 ("--batch-size", self.batch_size, 1), ("--patience", self.patience, 1),
                                 ("--num-processes", self.num_processes, 1)):
            if int(value) < low:
                raise MljobsError(f"{flag} must be at least {low}, got {value}")
        if not 0.0 <= float(self.val_fraction) < 1.0:
            raise MljobsError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if float(self.learning_rate) <= 0 or float(self.weight_decay) < 0:
            raise MljobsError(f"--learning-rate must be positive and --weight-decay >= 0, got "
                              f"{self.learning_rate}, {self.weight_decay}")
        if not str(self.model_dir or "").strip():
            raise MljobsError("--model-dir is required: where the model (and its checkpoints) go")
        output_location(self.model_dir, "--model-dir")
        if self.init_weights and not is_uri(self.init_weights) and not local_of(self.init_weights).is_file():
            raise InputError(f"--init-weights {self.init_weights}: no such file")

    @property
    def model_name(self) -> str:
        if self.name:
            return validate_identifier(self.name, "--name")
        last = str(self.model_dir).rstrip("/").rsplit("/", 1)[-1]
        name = _NAME.sub("_", last).strip("_") or "detector"
        return name if name[0].isalpha() else "m_" + name

    @property
    def training(self) -> tuple[str, str]:
        """(database, table) of the per-epoch history."""
        if self.training_table:
            return parse_table_name(self.training_table)
        db = "default" if is_path(str(self.frames)) else parse_table_name(self.frames)[0]
        return db, self.model_name + "_training"
