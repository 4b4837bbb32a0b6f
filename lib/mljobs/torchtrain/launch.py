"""Processes for a torch training function: PySpark's TorchDistributor runs ``fn(spec)`` in
``num_processes`` torchrun processes (on the driver in local mode, in a barrier stage of the
executors on a cluster) and returns rank 0's result. Inside, ``start`` and ``stop`` join and
leave the process group (gloo on CPU, nccl on CUDA) when there is more than one process."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import mljobs


def is_local(spark) -> bool:
    """Local mode (processes beside the driver) for a local[...] master."""
    return spark.sparkContext.master.startswith("local")


@contextmanager
def _importable():
    """mljobs importable in the torchrun processes (they inherit the environment, not sys.path:
    a notebook or test may have mljobs on the driver's path only)."""
    lib = str(Path(mljobs.__file__).resolve().parents[1])
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = lib + (os.pathsep + old if old else "")
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def run(spark, fn: Callable[[dict], Any], spec: dict, num_processes: int = 1, use_gpu: bool = False) -> Any:
    """rank 0's ``fn(spec)`` (``fn`` a module-level function; ``spec`` plain picklable values)."""
    from pyspark.ml.torch.distributor import TorchDistributor

    local = is_local(spark)
    with _importable():
        return TorchDistributor(num_processes=num_processes, local_mode=local, use_gpu=use_gpu).run(fn, spec)


@dataclass
class Process:
    rank: int
    world: int
    device: str

    @property
    def main(self) -> bool:
        return self.rank == 0


def _die_with_parent() -> None:
    """torchrun starts every worker in a session of its own, so a kill -9 of the job's process
    group kills the driver and torchrun but left the worker training (and writing checkpoints
    under a resumed run's feet). On Linux the worker now gets SIGKILL when torchrun dies."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the call
        os._exit(1)


def start(use_gpu: bool) -> Process:
    """This process's rank, world size and device; joins the process group when world > 1.
    The process dies with its parent (``_die_with_parent``)."""
    import torch

    _die_with_parent()

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    device = "cpu"
    if use_gpu:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("nccl" if use_gpu else "gloo")
    return Process(rank, world, device)


def distributed(net, proc: Process):
    """``net`` wrapped in DistributedDataParallel when there are several processes (else itself)."""
    if proc.world == 1:
        return net
    import torch

    return torch.nn.parallel.DistributedDataParallel(net, device_ids=None if proc.device == "cpu" else [proc.device])


def stop(proc: Process) -> None:
    if proc.world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()


def mean_over_processes(proc: Process, total: float, count: int) -> float:
    """sum(total) / sum(count) over every process."""
    if proc.world == 1:
        return total / max(count, 1)
    import torch
    import torch.distributed as dist

    t = torch.tensor([total, float(count)], dtype=torch.float64, device=proc.device)
    dist.all_reduce(t)
    return float(t[0] / max(float(t[1]), 1.0))
