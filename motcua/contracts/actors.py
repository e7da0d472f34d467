"""Who acts: an official, for a unit (a desk or an agency); ``unit`` None is the system itself."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    name: str
    unit: str | None = None
