"""The clock, as a parameter: every rule that depends on "now" gets it from here.

In production it is the system clock. A test (or a simulation) moves time for real
processes by pointing ``CLOCK_FILE`` at a file holding an ISO instant; each reading of
the clock reads the file, so the test moves time by rewriting it.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from nameko.extensions import DependencyProvider

Now = Callable[[], datetime]


def system_now() -> datetime:
    return datetime.now(timezone.utc)


def file_clock(path: str | Path) -> Now:
    path = Path(path)

    def now() -> datetime:
        instant = datetime.fromisoformat(path.read_text(encoding="utf-8").strip())
        if instant.tzinfo is None:
            raise ValueError(f"{path}: the clock needs an instant with a time zone, got {instant}")
        return instant.astimezone(timezone.utc)

    return now


def clock_from_config(config: dict) -> Now:
    path = (config or {}).get("CLOCK_FILE")
    return file_clock(path) if path else system_now


class Clock(DependencyProvider):
    """nameko dependency: ``self.now()`` is the current instant (UTC)."""

    def setup(self) -> None:
        self.now = clock_from_config(self.container.config)

    def get_dependency(self, worker_ctx) -> Now:
        return self.now
