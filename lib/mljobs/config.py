"""Configuration: Spark properties per environment, the job config contract (one dataclass per
job, one merge of YAML and flags), validated names. No Spark here."""
from __future__ import annotations

import os
import re
from pathlib import Path
from dataclasses import dataclass, fields
from typing import Any

from mljobs.errors import MljobsError, error_text

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


# Root of the jobs' default model/plot/report locations (mljobs.session.results_root).
RESULTS_CONF = "spark.mljobs.resultsDir"
JAVA_OPTIONS = "spark.driver.extraJavaOptions"  # merged, not replaced: conf/<env>.properties, ours, the caller's
# conf/local.properties makes the local driver JVM compile with C1 only; these jobs turn C2 back on
# (after it, before the caller's options): their row work runs in the driver JVM for long enough
# to repay C2's compiling (the Arrow reader's 5M-row ingest: 33 -> 24 s, docs/benchmarks.md).
LOCAL_C2_JOBS = ("ingest",)
C2 = "-XX:TieredStopAtLevel=4"
# Local properties per job over conf/local.properties (yours, --conf, still win): ingest's rows
# pass through the Python workers and staging files, never the driver's heap, so it needs 2 GB,
# not the 6 GB tune's and explain's arrays do (a JVM fills the heap it is given).
LOCAL_JOB_CONF = {"ingest": {"spark.driver.memory": "2g"}}


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


class WithQuarantine:
    """For the config of a job that writes ``table`` (DB.NAME) and its ``DB.NAME_quarantine``."""

    def check_tables(self) -> None:
        parse_table_name(self.table)
        validate_identifier(self.output[1] + "_quarantine", "quarantine table name")

    @property
    def output(self) -> tuple[str, str]:
        return parse_table_name(self.table)

    @property
    def quarantine(self) -> tuple[str, str]:
        return self.output[0], self.output[1] + "_quarantine"


def split_names(value: Any) -> Any:
    """'a,b' or ['a', 'b,c'] (a flag or a YAML value) as ['a', 'b', 'c']; anything else as given."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return [c.strip() for v in value for c in str(v).split(",") if c.strip()]
    return value


def check_scored_tables(table: str, out_table: str | None, output: tuple[str, str], where: str | None) -> None:
    """A scoring job's --table, --out-table (``output``: the resolved one, not the scored table)
    and --where."""
    parse_table_name(table)
    if out_table is not None:
        parse_table_name(out_table)
    if output == parse_table_name(table):
        raise MljobsError(f"--out-table {'.'.join(output)} is the table being scored; name another")
    if where is not None and not str(where).strip():
        raise MljobsError("--where is empty")


def check_output_columns(columns: list[str], reserved: tuple[str, ...], what: str) -> None:
    """Column names passed through to an output table: valid, and none of its own columns."""
    for c in columns:
        validate_identifier(c, f"column name ({what})")
    clash = [c for c in columns if c.lower() in reserved]
    if clash:
        raise MljobsError(f"columns {clash} clash with the output columns ({', '.join(reserved)})")


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


def load_yaml(path: Path) -> dict[str, Any]:
    """A YAML file that must hold a mapping (an empty file is an empty mapping)."""
    import yaml  # lazily: spark-submit.sh's command builder runs on a bare python3

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise MljobsError(f"config {path}: not valid YAML ({error_text(exc)})") from None
    if not isinstance(data, dict):
        raise MljobsError(f"config {path} must be a mapping, got {type(data).__name__}")
    return data


@dataclass
class JobConfig:
    """Base of every job's configuration: one dataclass whose fields carry the defaults.

    A config is validated when it is built (``__post_init__`` calls ``validate`` once), so no
    unvalidated config exists, whether it comes from ``load_config`` or from a notebook.
    """

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check (and normalise) the values; raise MljobsError on a bad one. No Spark here."""

    @classmethod
    def coerce(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Turn text spellings (flags, YAML: 'a,b' lists, 'auto') into field values."""
        return values

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.init]


def load_config(cls: type[JobConfig], flags: dict[str, Any], job: str, config_file: str | Path | None = None):
    """The one merge of every job: the fields' defaults < conf/<job>.yaml < ``--config FILE``
    < the flags given (None = not given). Unknown keys are an error everywhere: a typo must
    not silently fall back to a default."""
    merged: dict[str, Any] = {}
    sources = [conf_dir() / f"{job}.yaml"]
    if config_file:
        if not Path(config_file).is_file():
            raise MljobsError(f"config file not found: {config_file}")
        sources.append(Path(config_file))
    for path in sources:
        if path.exists():
            values = load_yaml(path)
            unknown = sorted(set(values) - set(cls.keys()))
            if unknown:
                raise MljobsError(f"{job} config {path}: unknown keys {unknown}; valid: {', '.join(cls.keys())}")
            merged.update(values)
    merged.update({k: v for k, v in flags.items() if v is not None})
    values = cls.coerce(merged)
    unknown = sorted(set(values) - set(cls.keys()))
    if unknown:
        raise MljobsError(f"{job}: unknown options {unknown}")
    return cls(**{k: _typed(cls, k, v, job) for k, v in values.items()})


_SCALARS = {"int": int, "float": float, "bool": bool, "str": str}


def _typed(cls, key: str, value: Any, job: str) -> Any:
    """A YAML/flag value checked against a scalar field's annotation (``int``, ``float``,
    ``bool``, ``str``, optionally ``| None``), so a quoted number in YAML is a clear error,
    not a TypeError deep in validate(); an int is accepted for a float, a number for a string."""
    hint = str(next(f.type for f in fields(cls) if f.name == key)).replace(" ", "")
    names = [t for t in hint.split("|") if t != "None"]
    if value is None or len(names) != 1 or names[0] not in _SCALARS:
        return value
    want = _SCALARS[names[0]]
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if want is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # YAML reads `snap: 40` as a number
    if isinstance(value, want) and not (want is int and isinstance(value, bool)):
        return value
    raise MljobsError(f"{job} config: {key} must be {names[0]}, got {value!r}")

