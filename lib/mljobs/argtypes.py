"""argparse ``type=`` converters shared by the jobs and dataset CLIs.

Each raises ``argparse.ArgumentTypeError`` so argparse reports the flag name
and the bad value before any work starts.
"""
from __future__ import annotations

import argparse


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value != value:
        raise argparse.ArgumentTypeError("NaN is not allowed")
    return value


def positive_int(text: str) -> int:
    value = _int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {value}")
    return value


def positive_float(text: str) -> float:
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def unit_interval(text: str) -> float:
    """A fraction in [0, 1]."""
    value = _float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def frame_size(text: str) -> tuple[int, int]:
    """'640x360' -> (640, 360): a frame size, width x height, each 2..16384 pixels."""
    parts = str(text).lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x360, got {text!r}")
    width, height = (int(p) for p in parts)
    if not (2 <= width <= 16384 and 2 <= height <= 16384):
        raise argparse.ArgumentTypeError(f"each side must be 2..16384 pixels, got {text!r}")
    return width, height
