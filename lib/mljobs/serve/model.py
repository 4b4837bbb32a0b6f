"""The live model of one server worker: loaded in a background thread at worker start (``/ping``
answers 503 until then), then watched. When the model directory's metadata.json changes (the
tune job replaces the directory by rename), the new artifact is loaded fully beside the old one
and one reference is swapped: a request holds the ``Loaded`` it started with, so requests in
flight finish on the old booster. A torn or bad new model is logged and the old one keeps serving.
"""
from __future__ import annotations

import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mljobs import fs
from mljobs.errors import InputError, error_text
from mljobs.models.artifact import METADATA_FILE, ModelArtifact, load_artifact

WATCH_EVERY_S = 1.0


def log(msg: str) -> None:
    print(f"mljobs.serve[{os.getpid()}]: {msg}", file=sys.stderr, flush=True)


def safe_location(location: str) -> str:
    """The location as it may be logged or shown: any user:password@ of a URI removed."""
    return re.sub(r"(//)[^/@]*@", r"\1", str(location))


def check_model(location: str) -> ModelArtifact:
    """The artifact at ``location``, checked as the server needs it (an InputError if not)."""
    art = load_artifact(location)
    if art.model_format != "xgboost-json":
        raise InputError(f"{safe_location(location)}: a {art.model_format} model; the server serves xgboost models")
    return art


@dataclass(frozen=True)
class Loaded:
    artifact: ModelArtifact
    booster: object
    loaded_at: str
    signature: tuple | None

    def describe(self) -> dict:
        a = self.artifact
        return {"model_sha256": a.model_sha256, "study": a.study, "family": a.family, "objective": a.objective,
                "features": list(a.features), "categorical_features": sorted(a.categorical_maps),
                "label": a.label, "created_at": a.created_at, "loaded_at": self.loaded_at,
                "location": safe_location(a.location), "worker_pid": os.getpid()}


class LiveModel:
    """The model a worker serves now (``current``), its loader and its watcher."""

    def __init__(self, location: str, nthread: int = 1, watch: bool = True, served=None):
        self.location, self.nthread, self.served = str(location), nthread, served
        # A URI is copied down at each load; watching it would mean a listing per second, so a
        # remote model is reloaded by SIGHUP only.
        self.watch = watch and not fs.is_uri(self.location)
        self.current: Loaded | None = None
        self.error: str | None = None
        self._failed: tuple | None = None  # the signature whose load failed: not retried until it changes
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mljobs-model", daemon=True)

    def start(self) -> "LiveModel":
        self._thread.start()
        return self

    def wait(self, timeout: float) -> Loaded | None:
        self.ready.wait(timeout)
        return self.current

    def signature(self) -> tuple | None:
        """What changes when metadata.json is replaced (a new directory gives a new inode)."""
        try:
            st = os.stat(Path(fs.local_of(self.location)) / METADATA_FILE)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def load(self, signature: tuple | None) -> Loaded:
        t0 = time.monotonic()
        art = check_model(self.location)
        booster = art.booster(nthread=self.nthread)
        loaded = Loaded(art, booster, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), signature)
        log(f"{'reloaded' if self.current else 'loaded'} model {art.study!r} sha256 {art.model_sha256[:12]} "
            f"from {safe_location(self.location)} in {time.monotonic() - t0:.2f} s")
        return loaded

    def _try_load(self, signature: tuple | None) -> None:
        try:
            loaded = self.load(signature)
        except Exception as exc:  # a torn or bad model: keep serving the one we have
            text = error_text(exc)
            if text != self.error:
                keeping = f"; still serving sha256 {self.current.artifact.model_sha256[:12]}" if self.current else ""
                log(f"cannot load the model: {text}{keeping}")
            self.error = text
            return
        self.current, self.error = loaded, None  # the one swap: requests in flight keep the old object
        self.ready.set()
        if self.served is not None:
            self.served.set()

    def _run(self) -> None:
        self._try_load(self.signature() if self.watch else None)
        while self.watch or self.current is None:
            time.sleep(WATCH_EVERY_S)
            sig = self.signature()
            if self.current is None or (sig is not None and sig != self.current.signature and sig != self._failed):
                self._try_load(sig)
                self._failed = sig if self.error else None
