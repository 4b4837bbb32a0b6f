"""Files the torch processes read and write without Spark (staged training rows, checkpoints):
local paths (file: prefixes as Hadoop writes them) or URIs, through pyarrow's file systems
(s3a:// read as s3://)."""
from __future__ import annotations

from mljobs import uris


def filesystem(location: str):
    """(pyarrow file system, path within it)."""
    from pyarrow import fs as pafs

    if not uris.is_uri(location):
        return pafs.LocalFileSystem(), str(uris.local_of(location))
    uri = "s3://" + location[len("s3a://"):] if location.startswith("s3a://") else location
    return pafs.FileSystem.from_uri(uri)


def read_parquet(location: str, columns: list[str]):
    """A directory of Parquet files (Spark's output: _SUCCESS and dot files skipped) as a pyarrow Table."""
    import pyarrow.parquet as pq

    filesystem_, path = filesystem(location)
    return pq.read_table(path, columns=columns, filesystem=filesystem_)
