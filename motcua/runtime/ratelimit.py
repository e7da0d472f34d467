"""A token bucket per client, in memory: a public endpoint answers 429 past its rate.

Each process keeps its own buckets, so with N replicas behind a balancer a client gets
up to N times the rate: set the rate per replica accordingly.
"""
from __future__ import annotations

import time
from typing import Callable


class RateLimiter:
    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 100_000):
        self.rate = per_minute / 60.0
        self.burst = burst
        self.clock = clock
        self.max_clients = max_clients
        self.buckets: dict[str, tuple[float, float]] = {}   # client -> (tokens, at)

    def allow(self, client: str) -> tuple[bool, float]:
        """(allowed, seconds to wait before the next token when refused)."""
        now = self.clock()
        tokens, at = self.buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if len(self.buckets) >= self.max_clients and client not in self.buckets:
            self.buckets.clear()   # bounded memory: forget everyone rather than grow without end
        if tokens >= 1.0:
            self.buckets[client] = (tokens - 1.0, now)
            return True, 0.0
        self.buckets[client] = (tokens, now)
        return False, (1.0 - tokens) / self.rate
