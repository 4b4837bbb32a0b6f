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
