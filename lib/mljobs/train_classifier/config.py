"""Options of the train-classifier job: one dataclass, each default on its field, validated once
when built, before Spark starts."""
from __future__ import annotations

import re
from dataclasses import dataclass

from mljobs.config import JobConfig, parse_table_name, validate_identifier
from mljobs.errors import InputError, MljobsError
from mljobs.models.vision import ARCHS
from mljobs.uris import is_uri, local_of, output_location

CLASS_WEIGHTS = ("balanced", "none")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")


@dataclass
class TrainClassifierConfig(JobConfig):
    """What to train on, how, and where the model goes (the flags of ``jobs/train_classifier.py``)."""

    table: str                          # an ingest-images table (label, split, content, sha256)
    name: str | None = None             # the model's name (default: <table>_classifier)
    model_dir: str | None = None        # default <results>/models/<name>
    plots_dir: str | None = None        # default <results>/plots/images/<name>
    evaluation_table: str | None = None  # default <db>.<name>_evaluation
    arch: str = "small-cnn"
    image_size: int = 32
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 0.002
    weight_decay: float = 0.0001
    patience: int = 8                   # epochs without a better validation loss before stopping
    val_fraction: float = 0.1           # share of each label's training images held out for validation
    seed: int = 0
    class_weights: str = "balanced"     # balanced: each label weighs n / (labels * n_label) in the loss
    augment: bool = True                # random rotation, scale and shift each epoch
    hflip: bool = False                 # also mirror images left-right (not for digits or text)
    init_weights: str | None = None     # a local or S3 torch state dict to start from
    num_processes: int = 1              # TorchDistributor processes (DDP)
    mistakes: int = 16                  # the most confident test mistakes drawn in a grid

    def validate(self) -> None:
        parse_table_name(self.table)
        if self.name is not None and not _NAME.match(str(self.name)):
            raise MljobsError(f"--name {self.name!r}: letters, digits and _, starting with a letter")
        validate_identifier(self.model_name + "_evaluation", "evaluation table name")
        if self.evaluation_table:
            parse_table_name(self.evaluation_table)
        if self.arch not in ARCHS:
            raise MljobsError(f"--arch {self.arch!r}: valid: {', '.join(ARCHS)}")
        if self.class_weights not in CLASS_WEIGHTS:
            raise MljobsError(f"--class-weights {self.class_weights!r}: valid: {', '.join(CLASS_WEIGHTS)}")
        for flag, value, low in (("--image-size", self.image_size, 8), ("--epochs", self.epochs, 1),
                                 ("--batch-size", self.batch_size, 2), ("--patience", self.patience, 1),
                                 ("--num-processes", self.num_processes, 1), ("--mistakes", self.mistakes, 0)):
            if int(value) < low:
                raise MljobsError(f"{flag} must be at least {low}, got {value}")
        if not 0.0 <= float(self.val_fraction) < 1.0:
            raise MljobsError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        for flag, value in (("--learning-rate", self.learning_rate), ("--weight-decay", self.weight_decay)):
            if float(value) < 0 or (flag == "--learning-rate" and float(value) == 0):
                raise MljobsError(f"{flag} must be {'positive' if flag == '--learning-rate' else '>= 0'}, got {value}")
        for flag, value in (("--model-dir", self.model_dir), ("--plots-dir", self.plots_dir)):
            output_location(value, flag)
        if self.init_weights and not is_uri(self.init_weights) and not local_of(self.init_weights).is_file():
            raise InputError(f"--init-weights {self.init_weights}: no such file")

    @property
    def model_name(self) -> str:
        return self.name or parse_table_name(self.table)[1] + "_classifier"

    @property
    def evaluation(self) -> tuple[str, str]:
        if self.evaluation_table:
            return parse_table_name(self.evaluation_table)
        return parse_table_name(self.table)[0], self.model_name + "_evaluation"
