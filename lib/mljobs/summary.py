"""Progress lines on stderr and the one JSON summary line every job ends with."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


class Progress:
    """Timestamped progress messages, on stderr so stdout keeps the JSON summary clean."""

    def __init__(self, job: str, stream=None):
        self.job = job
        self.stream = stream or sys.stderr
        self.t0 = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def __call__(self, message: str) -> None:
        print(f"[{self.job} {self.elapsed():7.1f}s] {message}", file=self.stream, flush=True)


def emit_summary(summary: dict[str, Any], path: str | Path | None = None) -> str:
    """Print the summary as one JSON line on stdout and, when asked, write it to a file."""
    line = json.dumps(summary, sort_keys=True, default=str)
    if path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(line + "\n")
    print(line, flush=True)
    return line
