"""Options of the sql job."""
from __future__ import annotations

from dataclasses import dataclass

from mljobs.config import JobConfig
from mljobs.errors import MljobsError


@dataclass
class SqlConfig(JobConfig):
    query: str
    limit: int = 100
    truncate: int = 40

    def validate(self) -> None:
        if not str(self.query or "").strip():
            raise MljobsError("empty query")
        if not isinstance(self.limit, int) or self.limit <= 0:
            raise MljobsError("--limit must be positive")
        if not isinstance(self.truncate, int) or self.truncate < 0:
            raise MljobsError("--truncate must be >= 0")
