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
    """Write the model file + metadata.json: locally into a temp dir renamed over the old one;
    to a URI as a local stage uploaded model first, metadata.json (with the model's sha256)
    last. ``booster``: any object with ``save_model(path)`` (an xgboost Booster, or a torch
    job's writer)."""
    from mljobs import fs

    if fs.is_uri(directory):
        stage = fs.temp_dir("mljobs-model-") / "model"
        _save_local(stage, booster, artifact)
        fs.upload_tree(None, stage, str(directory), last=(METADATA_FILE,))
        artifact.location = str(directory)
        return str(directory)
    target = _save_local(fs.local_of(directory), booster, artifact)
    artifact.location = str(target)
    return target


def _save_local(target: Path, booster, artifact: ModelArtifact) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    if tmp.exists():
        _rmtree(tmp)
    tmp.mkdir()
    booster.save_model(str(tmp / artifact.model_file))
    artifact.model_sha256 = hashlib.sha256((tmp / artifact.model_file).read_bytes()).hexdigest()
    artifact.created_at = artifact.created_at or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    artifact.versions = artifact.versions or library_versions()
    (tmp / METADATA_FILE).write_text(json.dumps(artifact.to_json(), indent=2, sort_keys=True) + "\n")
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        target.rename(old)
    tmp.rename(target)
    if old is not None:
        _rmtree(old)
    artifact.path = str(target)
    return target


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


def load_artifact(directory: str | os.PathLike) -> ModelArtifact:
    """Read a model directory (local or a URI, copied down first); a clear InputError when it is
    not one or when model.json is not the file its metadata.json describes."""
    from mljobs import fs

    where = str(directory)
    if fs.is_uri(directory):
        try:
            d = fs.download_tree(None, where, fs.temp_dir("mljobs-model-") / "model")
        except InputError:
            raise InputError(f"{where}: not found (the tune job writes the model there with --model-dir)") from None
    else:
        d = fs.local_of(directory)
    meta = d / METADATA_FILE
    if not meta.is_file():
        raise InputError(f"{where}: not a model directory (no {METADATA_FILE}); "
                         "the tune job writes models under <data-dir>/models/<study>")
    try:
        data = json.loads(meta.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}/{METADATA_FILE}: not valid JSON ({exc})") from None
    if data.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{where}/{METADATA_FILE}: format_version {data.get('format_version')} is not supported "
                         f"(expected {FORMAT_VERSION})")
    known = set(ModelArtifact.__dataclass_fields__) - {"path", "location"}
    missing = {"study", "family", "label", "features", "params"} - set(data)
    if missing:
        raise InputError(f"{where}/{METADATA_FILE}: missing {sorted(missing)}")
    art = ModelArtifact(**{k: v for k, v in data.items() if k in known})
    art.path = str(d)
    art.location = where
    model = d / art.model_file
    if not model.is_file():
        raise InputError(f"{where}: {art.model_file} is missing")
    if art.model_sha256 and hashlib.sha256(model.read_bytes()).hexdigest() != art.model_sha256:
        raise InputError(f"{where}: {art.model_file} is not the model {METADATA_FILE} describes (sha256 differs): "
                         "a write in progress or an interrupted one; run the tune job again")
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
