"""The torch training harness every torch job shares (train-classifier, train-detector):
processes launched by PySpark's TorchDistributor (``launch``), checkpoints a killed run resumes
from (``checkpoint``), and the epoch loop with early stopping (``loop``). The training code
itself is plain torch (DDP when there are several processes) and runs without Spark."""
