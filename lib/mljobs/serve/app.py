"""The WSGI app: SageMaker's inference routes (``GET /ping``, ``POST /invocations``) plus
``GET /models`` (alias ``/metadata``). Bad input is a 4xx with a JSON message, never a 500."""
from __future__ import annotations

import traceback
from urllib.parse import parse_qs

from mljobs.models.inference import EncodingError, encode_columns, score_matrix
from mljobs.serve.http import HttpError, json_body, media_type, negotiate, status_line
from mljobs.serve.model import LiveModel, log
from mljobs.serve.payload import ACCEPTS, CSV, JSON, check_content_type, decode, parse_threshold, render

MAX_BODY = 6 * 1024 * 1024  # SageMaker's real-time payload limit
WAIT_FOR_MODEL_S = 30.0  # a request arriving while a fresh worker loads waits this long before a 503
CUSTOM_ATTRIBUTES = "HTTP_X_AMZN_SAGEMAKER_CUSTOM_ATTRIBUTES"
ROUTES = {"/ping": "GET", "/invocations": "POST", "/models": "GET", "/metadata": "GET"}


def make_app(location: str, nthread: int = 1, watch: bool = True, served=None) -> "ServeApp":
    """The app of one worker: its model starts loading now, in the background (``served``: an
    event shared by the workers, set once any of them has its model)."""
    return ServeApp(LiveModel(location, nthread, watch, served).start(), served)


class ServeApp:
    def __init__(self, model: LiveModel, served=None):
        self.model, self.served = model, served

    def __call__(self, environ, start_response):
        headers: list[tuple[str, str]] = []
        try:
            code, (ctype, body) = self.dispatch(environ)
        except HttpError as exc:
            code, (ctype, body), headers = exc.status, json_body({"error": exc.message, "status": exc.status}), \
                exc.headers
        except Exception as exc:  # a fault of ours, not of the request: logged with its stack
            log(f"error on {environ.get('PATH_INFO')}: {exc!r}\n{traceback.format_exc()}")
            code, (ctype, body) = 500, json_body({"error": f"internal error: {type(exc).__name__}", "status": 500})
        start_response(status_line(code), [("Content-Type", ctype), ("Content-Length", str(len(body))), *headers])
        return [body]

    def dispatch(self, environ) -> tuple[int, tuple[str, bytes]]:
        path, method = environ.get("PATH_INFO") or "/", environ.get("REQUEST_METHOD", "GET")
        allowed = ROUTES.get(path.rstrip("/") or "/")
        if allowed is None:
            raise HttpError(404, f"no route {path[:100]!r}; routes: {', '.join(ROUTES)}")
        if method != allowed:
            raise HttpError(405, f"{path} takes {allowed}, not {method[:20]}", [("Allow", allowed)])
        if path.startswith("/invocations"):
            return 200, self.invocations(environ)
        loaded = self.model.current
        if path.startswith("/ping"):
            if loaded is None and self.served is not None and self.served.is_set():
                loaded = self.model.wait(WAIT_FOR_MODEL_S)  # another worker answered 200 already
            if loaded is None:
                return 503, json_body({"status": "loading", "error": self.model.error})
            return 200, json_body({"status": "ok", **loaded.describe()})
        if loaded is None:
            raise HttpError(503, f"the model is not loaded yet{': ' + self.model.error if self.model.error else ''}")
        return 200, json_body({"models": [loaded.describe()]})

    def invocations(self, environ) -> tuple[str, bytes]:
        ctype = media_type(environ.get("CONTENT_TYPE"))
        size = request_size(environ)
        check_content_type(ctype)
        accept = negotiate(environ.get("HTTP_ACCEPT"), ACCEPTS, CSV if ctype == CSV else JSON)
        threshold = request_threshold(environ)
        body = read_body(environ, size)
        loaded = self.model.wait(WAIT_FOR_MODEL_S)  # the model of this request, whatever swaps meanwhile
        if loaded is None:
            raise HttpError(503, f"the model is not loaded{': ' + self.model.error if self.model.error else ''}")
        art = loaded.artifact
        columns = decode(ctype, body, art.features, list(art.categorical_maps))
        try:
            x = encode_columns(columns, art.features, art.categorical_maps)
        except EncodingError as exc:
            raise HttpError(400, str(exc)) from None
        _, probability = score_matrix(loaded.booster, x, art.objective)
        return render(accept, probability, threshold)


def request_size(environ) -> int | None:
    """Content-Length, refused over the limit before anything is read (None: chunked)."""
    text = (environ.get("CONTENT_LENGTH") or "").strip()
    if not text:
        return None
    try:
        size = int(text)
    except ValueError:
        raise HttpError(400, f"bad Content-Length {text[:40]!r}") from None
    if size > MAX_BODY:
        raise HttpError(413, f"the body is {size} bytes, over the limit of {MAX_BODY} (6 MiB)",
                        [("Connection", "close")])
    return size


def read_body(environ, size: int | None) -> bytes:
    stream = environ["wsgi.input"]
    body = stream.read(size) if size is not None else stream.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise HttpError(413, f"the body is over the limit of {MAX_BODY} bytes (6 MiB)", [("Connection", "close")])
    if not body.strip():
        raise HttpError(400, "empty body: send rows to score")
    return body


def request_threshold(environ) -> float | None:
    """``?threshold=X``, else ``threshold=X`` in SageMaker's CustomAttributes header (the only
    per-request options an endpoint forwards); None: probabilities only."""
    query = parse_qs(environ.get("QUERY_STRING") or "", keep_blank_values=True)
    unknown = sorted(set(query) - {"threshold"})
    if unknown:
        raise HttpError(400, f"unknown query parameters {unknown[:5]}; the one option is threshold")
    if "threshold" in query:
        return parse_threshold(query["threshold"][-1])
    for item in (environ.get(CUSTOM_ATTRIBUTES) or "").replace(";", ",").split(","):
        key, _, value = item.partition("=")
        if key.strip() == "threshold":
            return parse_threshold(value.strip())
    return None
