"""Locations as strings: local paths, file://, and the URIs the jobs read and write through
Hadoop (s3:// EMRFS on EMR, s3a:// elsewhere, hdfs://). Pure string work, no Spark: the one
home of the S3 bucket rule and of the s3:// -> s3a:// mapping off EMR."""
from __future__ import annotations

import os
import re
from pathlib import Path

from mljobs.errors import MljobsError

OUTPUT_SCHEMES = ("file", "s3", "s3a", "hdfs")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$")
# S3's bucket naming rule (3-63 characters, lower case, digits, '.' and '-').
S3_BUCKET = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
_S3_URI = re.compile(rf"^s3://({S3_BUCKET})(?:/([A-Za-z0-9._/-]*))?$")


def scheme_of(path: str | os.PathLike | None) -> str | None:
    m = _SCHEME.match(str(path or ""))
    return m.group(1).lower() if m else None


def is_uri(path: str | os.PathLike | None) -> bool:
    """True for a remote location (s3://, s3a://, hdfs://, ...); file:// and plain paths are local."""
    return scheme_of(path) not in (None, "file")


def local_of(path: str | os.PathLike) -> Path:
    """A local path, with a file:// or file: prefix removed (Hadoop qualifies /a as file:/a)."""
    s = str(path)
    for prefix in ("file://", "file:"):
        if s.startswith(prefix):
            return Path(s[len(prefix):])
    return Path(s)


def local_path(uri: str | os.PathLike) -> str | None:
    """The local path of a plain or ``file:`` location (as Hadoop names it), else None."""
    return None if is_uri(uri) else str(local_of(uri))


def join(base: str | os.PathLike, *parts: str) -> str | Path:
    """base/parts..., keeping a URI a URI (Path('s3://b') would collapse the //)."""
    if is_uri(base):
        return "/".join([str(base).rstrip("/"), *[p.strip("/") for p in parts]])
    return local_of(base).joinpath(*parts)


def normalize_path(path: str, env: str) -> str:
    """s3:// is EMRFS on EMR; elsewhere Hadoop only has the s3a connector."""
    if env == "local" and path.startswith("s3://"):
        return "s3a://" + path[len("s3://"):]
    return path


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """'s3://bucket/a/b/' -> ('bucket', 'a/b'); anything else is a usage error."""
    m = _S3_URI.match(uri or "")
    if not m:
        raise MljobsError(f"expected s3://BUCKET[/PREFIX], got {uri!r}")
    return m.group(1), (m.group(2) or "").strip("/")


def s3_join(uri: str, *parts: str) -> str:
    bucket, prefix = parse_s3_uri(uri)
    return "s3://" + "/".join(p for p in (bucket, prefix, *parts) if p)


def output_location(path: str | None, flag: str) -> str | None:
    """Check a model/plot/report location before any work: a local path, or a URI of a
    scheme the jobs read and write through Hadoop (s3:// EMRFS, s3a://, hdfs://)."""
    if not path:
        return path
    m = _SCHEME.match(str(path))
    if m:
        scheme, rest = m.group(1).lower(), m.group(2)
        if scheme not in OUTPUT_SCHEMES:
            raise MljobsError(f"{flag} {path}: unsupported scheme {scheme}://; use a local path or "
                              f"{', '.join(s + '://' for s in OUTPUT_SCHEMES)}")
        if scheme in ("s3", "s3a") and not re.match(rf"^{S3_BUCKET}(/|$)", rest):
            raise MljobsError(f"{flag} {path}: expected {scheme}://BUCKET/PREFIX")
    return path
