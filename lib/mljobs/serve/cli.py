"""``python -m mljobs.serve [serve] [--model DIR|URI] [--host H] [--port P] [--workers N] [--threads N]``.

``serve`` as the first argument is accepted because SageMaker starts a container with
``docker run IMAGE serve``; the model defaults to ``$SM_MODEL_DIR``, else ``/opt/ml/model``
(where SageMaker unpacks model.tar.gz). Arguments and the model are checked before gunicorn
starts: a bad one is one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import os
import sys

from mljobs.errors import MljobsError, error_text

DEFAULT_MODEL_DIR = "/opt/ml/model"


def cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise MljobsError(message)


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"must be between 1 and 64, got {n}")
    return n


def _port(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 1 and 65535, got {n}")
    return n


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m mljobs.serve", description="HTTP server for a tune model (SageMaker's contract).")
    p.add_argument("command", nargs="?", choices=["serve"], help="accepted and ignored (docker run IMAGE serve)")
    p.add_argument("--model", help=f"model directory or URI (default: $SM_MODEL_DIR, else {DEFAULT_MODEL_DIR})")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container; default %(default)s)")
    p.add_argument("--port", type=_port, default=8080, help="default %(default)s (SageMaker's)")
    p.add_argument("--workers", type=_count, default=cpus(), help="worker processes (default: the CPUs, %(default)s)")
    p.add_argument("--threads", type=_count, default=4,
                   help="request threads per worker (default %(default)s: gthread workers; 1: sync workers)")
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    args = parser().parse_args(argv)
    args.model = args.model or os.environ.get("SM_MODEL_DIR") or DEFAULT_MODEL_DIR
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_args(argv)
        from mljobs.serve.model import check_model

        check_model(args.model)
    except MljobsError as exc:
        print(f"mljobs.serve: error: {error_text(exc)}", file=sys.stderr)
        return 2
    from mljobs.serve.server import serve

    serve(args.model, args.host, args.port, args.workers, args.threads)
    return 0
