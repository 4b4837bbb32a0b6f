"""Checkpoints: one file, ``<dir>/last.pt``, rewritten after every epoch (atomically: a local
file is renamed into place, an object store writes whole objects), read back to resume. The
directory may be local or a URI (s3://, s3a://, hdfs://; read and written with pyarrow, which
the torch processes have without Spark)."""
from __future__ import annotations

import io
import os
from pathlib import Path

from mljobs import uris
from mljobs.torchtrain.files import filesystem

LAST = "last.pt"
SUBDIR = "checkpoint"  # a model directory's checkpoints: <model dir>/checkpoint/last.pt


def of(model_dir: str) -> str:
    """Where a training job checkpoints the model it will write to ``model_dir``."""
    return str(uris.join(str(model_dir), SUBDIR))


def discard(model_dir: str) -> None:
    """Remove the checkpoints of ``model_dir`` once the finished model is saved there (a local
    save replaces the whole directory, so only an object store still holds them)."""
    import shutil

    where = of(model_dir)
    if not uris.is_uri(where):
        shutil.rmtree(uris.local_of(where), ignore_errors=True)
        return
    from pyarrow import fs as pafs

    store, path = filesystem(where)
    if store.get_file_info(path).type != pafs.FileType.NotFound:
        store.delete_dir(path)


def _remote(directory: str):
    return filesystem(directory.rstrip("/") + "/" + LAST)


def write(directory: str, state: dict) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    if uris.is_uri(directory):
        filesystem, path = _remote(directory)
        with filesystem.open_output_stream(path) as out:
            out.write(buf.getvalue())
        return
    d = uris.local_of(directory)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{LAST}.tmp-{os.getpid()}"
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, d / LAST)


def read(directory: str) -> dict | None:
    """The last checkpoint under ``directory``, or None."""
    import torch

    if uris.is_uri(directory):
        from pyarrow import fs as pafs

        filesystem, path = _remote(directory)
        if filesystem.get_file_info(path).type == pafs.FileType.NotFound:
            return None
        with filesystem.open_input_stream(path) as f:
            data = f.read()
    else:
        p = Path(uris.local_of(directory)) / LAST
        if not p.is_file():
            return None
        data = p.read_bytes()
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
