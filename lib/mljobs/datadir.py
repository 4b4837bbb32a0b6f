"""Where a local data directory is: --data-dir, else $MLJOBS_DATA_DIR, else ./.mljobs (no Spark
imports, so the metastore server's CLI can use it without the session)."""
from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "MLJOBS_DATA_DIR"
DEFAULT_DATA_DIR = ".mljobs"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """--data-dir, else $MLJOBS_DATA_DIR, else ./.mljobs; returned absolute."""
    raw = data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    return Path(raw).expanduser().resolve()
