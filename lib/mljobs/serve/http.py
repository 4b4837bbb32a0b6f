"""The HTTP pieces the app needs: an error with its status, media types, Accept negotiation."""
from __future__ import annotations

import json

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
           411: "Length Required", 413: "Content Too Large", 415: "Unsupported Media Type",
           500: "Internal Server Error", 503: "Service Unavailable"}


class HttpError(Exception):
    """A request the server refuses: the status and a message naming the problem."""

    def __init__(self, status: int, message: str, headers: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or []


def status_line(code: int) -> str:
    return f"{code} {REASONS.get(code, '')}".strip()


def json_body(doc) -> tuple[str, bytes]:
    return "application/json", (json.dumps(doc) + "\n").encode()


def media_type(header: str | None) -> str:
    """``text/csv; charset=utf-8`` -> ``text/csv``."""
    return (header or "").split(";", 1)[0].strip().lower()


def negotiate(accept: str | None, offered: tuple[str, ...], default: str) -> str:
    """The offered type the Accept header prefers (q-values honoured, wildcards allowed)."""
    if not accept or not accept.strip():
        return default
    choices = []
    for i, part in enumerate(accept.split(",")):
        kind, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        for p in params:
            if p.replace(" ", "").lower().startswith("q="):
                try:
                    q = float(p.split("=", 1)[1])
                except ValueError:
                    q = 0.0
        choices.append((-q, i, kind.lower()))
    for neg_q, _, kind in sorted(choices):
        if neg_q >= 0:
            break
        if kind in ("*/*", "*"):
            return default
        if kind.endswith("/*"):
            for o in (default, *offered):
                if o.startswith(kind[:-1]):
                    return o
        if kind in offered:
            return kind
    raise HttpError(406, f"cannot answer in {accept[:100]!r}; Accept one of {', '.join(offered)}")
