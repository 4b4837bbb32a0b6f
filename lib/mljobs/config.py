"""Configuration: Spark properties per environment, job YAML, validated names."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from mljobs.errors import MljobsError

ENVS = ("local", "emr", "emr-gpu")
_PROP_LINE = re.compile(r"^([^\s=]+)\s*(?:=|\s)\s*(.*)$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def project_root() -> Path:
    """The checkout (or unpacked artefact) holding conf/ and jobs/."""
    return Path(__file__).resolve().parents[2]


def conf_dir() -> Path:
    """$MLJOBS_CONF_DIR, else the checkout's conf/.

    On YARN the library runs from a --py-files zip in a container, far from any checkout:
    the conf archive (mljobs-conf-<v>.tar.gz#mljobs-conf) and this variable bring it along.
    """
    override = os.environ.get("MLJOBS_CONF_DIR")
    return Path(override) if override else project_root() / "conf"


def validate_identifier(name: str, what: str = "name") -> str:
    """Accept only plain SQL identifiers, so names from arguments cannot inject SQL."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise MljobsError(
            f"invalid {what} {name!r}: use letters, digits and underscores, starting with a letter or _"
        )
    return name


OUTPUT_SCHEMES = ("file", "s3", "s3a", "hdfs")
# Root of the jobs' default model/plot/report locations (mljobs.session.results_root).
RESULTS_CONF = "spark.mljobs.resultsDir"


def output_location(path: str | None, flag: str) -> str | None:
    """Check a model/plot/report location before any work: a local path, or a URI of a
    scheme the jobs read and write through Hadoop (s3:// EMRFS, s3a://, hdfs://)."""
    if not path:
        return path
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", str(path))
    if m:
        scheme, rest = m.group(1).lower(), m.group(2)
        if scheme not in OUTPUT_SCHEMES:
            raise MljobsError(f"{flag} {path}: unsupported scheme {scheme}://; use a local path or "
                              f"{', '.join(s + '://' for s in OUTPUT_SCHEMES)}")
        if scheme in ("s3", "s3a") and not re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/|$)", rest):
            raise MljobsError(f"{flag} {path}: expected {scheme}://BUCKET/PREFIX")
    return path


def parse_table_name(full: str, default_db: str = "default") -> tuple[str, str]:
    """Split 'db.table' (or 'table') into validated (db, table)."""
    parts = full.split(".") if isinstance(full, str) else []
    if len(parts) == 1:
        db, table = default_db, parts[0]
    elif len(parts) == 2:
        db, table = parts
    else:
        raise MljobsError(f"invalid table name {full!r}: expected DB.NAME or NAME")
    return validate_identifier(db, "database name"), validate_identifier(table, "table name")


def read_properties(path: Path) -> dict[str, str]:
    """Read a spark-defaults style file: 'key value' or 'key=value', # comments."""
    props: dict[str, str] = {}
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _PROP_LINE.match(line)
        if not m:
            raise MljobsError(f"{path}: cannot parse property line {raw!r}")
        props[m.group(1)] = m.group(2).strip()
    return props


def env_properties(env: str) -> dict[str, str]:
    if env not in ENVS:
        raise MljobsError(f"unknown environment {env!r}; valid: {', '.join(ENVS)}")
    return read_properties(conf_dir() / f"{env}.properties")


def load_job_yaml(path: str | Path | None, default_name: str) -> dict[str, Any]:
    """Load a job's YAML defaults (conf/<job>.yaml unless a path is given)."""
    p = Path(path) if path else conf_dir() / default_name
    if not p.exists():
        if path:
            raise MljobsError(f"config file not found: {p}")
        return {}
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise MljobsError(f"config {p} must be a mapping, got {type(data).__name__}")
    return data


def merge_yaml_and_flags(defaults: dict[str, Any], args, keys, job: str) -> dict[str, Any]:
    """A job's YAML defaults overridden by the flags that were given (not None).

    Unknown YAML keys are an error: a typo must not silently fall back to a default."""
    unknown = sorted(set(defaults) - set(keys))
    if unknown:
        raise MljobsError(f"{job} config: unknown keys {unknown}")
    merged = dict(defaults)
    for key in keys:
        value = getattr(args, key, None)
        if value is not None:
            merged[key] = value
    return merged

