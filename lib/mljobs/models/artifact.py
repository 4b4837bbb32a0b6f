"""The model artifact every job writes and reads: one directory, one model file and its
metadata, whatever the library (``model_format`` says which: ``xgboost-json`` for tune's
models today; a torch job writes its own format through the same functions).

Layout of ``<data-dir>/models/<study>/`` (or any directory)::

    metadata.json   what the model needs: features in order, label, encodings, params, CV score, lineage,
                    the model file's sha256 (the key of the per-worker cache, mljobs.modelcache)
    model.json      the model file (``model_file``): for tune, the xgboost Booster (``save_model`` JSON) of
                    both families (our Random Forest is xgboost's random-forest mode), so every tune
                    artifact has exact TreeSHAP and one loader

The directory may be remote (s3://, s3a://, hdfs://; see mljobs.fs): the files are written
locally, then model.json is uploaded before metadata.json, whose ``model_sha256`` every
reader checks, so a reader never uses a model with another model's metadata.

Features are fed to the booster as float32 in ``features`` order. Numeric columns are
cast to double; string columns listed in ``categorical_maps`` become the position of the
value in that (sorted) list; an unseen value or a null is missing (NaN), which xgboost
routes by its learned default direction.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mljobs.errors import InputError

FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
MODEL_FILE = "model.json"


@dataclass
class ModelArtifact:
    study: str
    family: str  # "xgboost" | "random_forest"
    label: str
    features: list[str]
    params: dict[str, Any]
    booster_params: dict[str, Any] = field(default_factory=dict)
    categorical_maps: dict[str, list[str]] = field(default_factory=dict)
    objective: str = "binary:logistic"
    metric: str = "accuracy"
    cv_value: float | None = None
    cv_folds: int | None = None
    table: str | None = None
    rows: int | None = None
    mode: str | None = None
    train_metrics: dict[str, Any] = field(default_factory=dict)  # the refit model on its own training rows
    model_format: str = "xgboost-json"
    model_file: str = MODEL_FILE
    format_version: int = FORMAT_VERSION
    created_at: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    model_sha256: str = ""
    path: str = ""  # the local directory holding the files (a copy for a remote one); not written
    location: str = ""  # where it was loaded from or saved to, as given (local path or URI); not written

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("path")
        out.pop("location")
        return out

    def where(self) -> str:
        """Where the model lives, for lineage: the URI it came from, or the absolute local path."""
        from mljobs import fs

        if fs.is_uri(self.location):
            return self.location
        return str(Path(self.location or self.path).resolve())

    def booster(self, nthread: int | None = None):
        """Load the xgboost Booster (one call per process: cache the result)."""
        import xgboost as xgb

        if self.model_format != "xgboost-json":
            raise InputError(f"{self.where()}: a {self.model_format} model, not an xgboost one")

        booster = xgb.Booster()
        model = Path(self.path) / self.model_file
        # Without a .json/.ubj name (SageMaker's "xgboost-model") xgboost guesses the format
        # from the name and warns; from bytes it reads the format from the content.
        booster.load_model(str(model) if model.suffix in (".json", ".ubj") else bytearray(model.read_bytes()))
        if nthread is not None:
            booster.set_param({"nthread": nthread})
        booster.feature_names = list(self.features)
        return booster

    def model_bytes(self) -> bytes:
        """The raw model file, for shipping to executors in a broadcast."""
        return (Path(self.path) / self.model_file).read_bytes()


def library_versions() -> dict[str, str]:
    import numpy
    import pyspark
    import xgboost

    from mljobs import __version__

    return {"mljobs": __version__, "xgboost": xgboost.__version__, "pyspark": pyspark.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def save_artifact(directory: str | os.PathLike, booster, artifact: ModelArtifact) -> str | Path:
    """Write the model file + metadata.json (see save_model_dir). ``booster``: any object with
    ``save_model(path)``."""
    from mljobs import fs

    artifact.created_at = artifact.created_at or now_utc()
    artifact.versions = artifact.versions or library_versions()
    target, meta = save_model_dir(directory, lambda path: booster.save_model(path), artifact.model_file,
                                  artifact.to_json())
    artifact.model_sha256 = meta["model_sha256"]
    artifact.location = str(target)
    if not fs.is_uri(directory):
        artifact.path = str(target)
    return target


def now_utc() -> str:
    """A model's created_at: 2026-12-02T21:50:00Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def save_model_dir(directory: str | os.PathLike, write_model, model_file: str, metadata: dict[str, Any],
                   extra: dict[str, bytes] | None = None) -> tuple[str | Path, dict[str, Any]]:
    """Any library's model directory: ``write_model(path)`` writes the model file, metadata.json
    gets ``metadata`` with the file's ``model_sha256``, ``extra`` files go beside them. Locally into a temp dir renamed over the
    old one; to a URI as a local stage uploaded model first, metadata.json last. (where, metadata)."""
    from mljobs import fs

    if fs.is_uri(directory):
        stage = fs.temp_dir("mljobs-model-") / "model"
        meta = _save_local(stage, write_model, model_file, metadata, extra)
        fs.upload_tree(None, stage, str(directory), last=(METADATA_FILE,))
        return str(directory), meta
    target = fs.local_of(directory)
    return target, _save_local(target, write_model, model_file, metadata, extra)


def _save_local(target: Path, write_model, model_file: str, metadata: dict[str, Any],
                extra: dict[str, bytes] | None = None) -> dict[str, Any]:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    if tmp.exists():
        _rmtree(tmp)
    tmp.mkdir()
    write_model(str(tmp / model_file))
    for name, data in (extra or {}).items():
        (tmp / name).write_bytes(data)
    meta = {**metadata, "model_sha256": hashlib.sha256((tmp / model_file).read_bytes()).hexdigest()}
    (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        target.rename(old)
    tmp.rename(target)
    if old is not None:
        _rmtree(old)
    return meta


def check_model_location(value, flag: str = "--model") -> None:
    """A model argument that can be a model directory (checked without Spark: a local one must
    exist; a remote one is checked when it is read)."""
    from mljobs import uris

    if not value or not str(value).strip():
        raise InputError(f"{flag} is empty: pass a model directory (metadata.json + model.json)")
    uris.output_location(value, flag)
    if not uris.is_uri(value) and not Path(str(value).removeprefix("file://")).is_dir():
        raise InputError(f"{flag} {value}: no such directory (the tune job writes models under "
                         "<data-dir>/models/<study>)")


def read_model_dir(directory: str | os.PathLike, written_by: str = "the tune job") -> tuple[Path, dict[str, Any]]:
    """(local directory, its metadata.json) of a model directory (local, or a URI copied down
    first): a clear InputError when it is not one, or when its model file is not the one its
    metadata describes (sha256)."""
    from mljobs import fs

    where = str(directory)
    if fs.is_uri(directory):
        try:
            d = fs.download_tree(None, where, fs.temp_dir("mljobs-model-") / "model")
        except InputError:
            raise InputError(f"{where}: not found ({written_by} writes the model there with --model-dir)") from None
    else:
        d = fs.local_of(directory)
    meta = d / METADATA_FILE
    if not meta.is_file():
        raise InputError(f"{where}: not a model directory (no {METADATA_FILE}); {written_by} writes one")
    try:
        data = json.loads(meta.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}/{METADATA_FILE}: not valid JSON ({exc})") from None
    if data.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{where}/{METADATA_FILE}: format_version {data.get('format_version')} is not supported "
                         f"(expected {FORMAT_VERSION})")
    model = d / str(data.get("model_file", MODEL_FILE))
    if not model.is_file():
        raise InputError(f"{where}: {model.name} is missing")
    if data.get("model_sha256") and hashlib.sha256(model.read_bytes()).hexdigest() != data["model_sha256"]:
        raise InputError(f"{where}: {model.name} is not the model {METADATA_FILE} describes (sha256 differs): "
                         f"a write in progress or an interrupted one; run {written_by} again")
    return d, data


def load_artifact(directory: str | os.PathLike) -> ModelArtifact:
    """Read a tune model directory (see read_model_dir)."""
    d, data = read_model_dir(directory)
    if data.get("model_format", "xgboost-json") != "xgboost-json":
        raise InputError(f"{directory}: a {data['model_format']} model, not one of the tune job's (xgboost)")
    known = set(ModelArtifact.__dataclass_fields__) - {"path", "location"}
    missing = {"study", "family", "label", "features", "params"} - set(data)
    if missing:
        raise InputError(f"{directory}/{METADATA_FILE}: missing {sorted(missing)}")
    art = ModelArtifact(**{k: v for k, v in data.items() if k in known})
    art.path = str(d)
    art.location = str(directory)
    return art


def feature_columns(df, artifact_or_features, categorical_maps: dict[str, list[str]] | None = None):
    """Spark columns, one double per feature in model order, with the artifact's encodings.

    Plain SQL expressions (no Python UDF), so the RAPIDS plugin can run them.
    """
    from pyspark.sql import functions as F

    if isinstance(artifact_or_features, ModelArtifact):
        features, maps = artifact_or_features.features, artifact_or_features.categorical_maps
    else:
        features, maps = list(artifact_or_features), categorical_maps or {}
    by_lower = {c.lower(): c for c in df.columns}
    missing = [f for f in features if f.lower() not in by_lower]
    if missing:
        raise InputError(f"the table lacks the model's feature columns {missing}")
    cols = []
    for f in features:
        src = F.col(f"`{by_lower[f.lower()]}`")
        if f in maps:
            # A literal map value -> position; a missing key (unseen value) or a null key gives null.
            codes = F.create_map(*[x for i, v in enumerate(maps[f]) for x in (F.lit(str(v)), F.lit(float(i)))])
            col = codes.getItem(src.cast("string"))
        else:
            col = src.cast("double")
        cols.append(col.alias(f))
    return cols


def _rmtree(p: Path) -> None:
    import shutil

    shutil.rmtree(p, ignore_errors=True)
