"""The pure pieces of the throughput benchmark: percentiles, rates over time windows, and the
exactly-once accounting. No I/O here: ``bench/throughput.py`` gathers the figures, these
functions judge them (and ``tests/unit/test_bench_stats.py`` tests them).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0–100) with linear interpolation between closest ranks (numpy's
    default, "linear"); None for no values."""
    data = sorted(values)
    if not data:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be between 0 and 100, got {q}")
    if len(data) == 1:
        return float(data[0])
    rank = (len(data) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    if low == high:
        return float(data[low])
    return data[low] + (data[high] - data[low]) * (rank - low)


def summary(values: Iterable[float], scale: float = 1.0, digits: int = 2) -> dict:
    """count, p50, p90, p99, max (each value multiplied by ``scale``, e.g. 1000 for ms)."""
    data = sorted(values)
    if not data:
        return {"count": 0, "p50": None, "p90": None, "p99": None, "max": None}
    def r(v):
        return round(v * scale, digits)
    return {"count": len(data), "p50": r(percentile(data, 50)), "p90": r(percentile(data, 90)),
            "p99": r(percentile(data, 99)), "max": r(data[-1])}


def rate_in_window(instants: Iterable[float], start: float, end: float) -> float:
    """Events per second among ``instants`` that fall in [start, end)."""
    if end <= start:
        raise ValueError("the window is empty")
    return sum(1 for t in instants if start <= t < end) / (end - start)


def per_second(instants: Iterable[float], origin: float, seconds: int) -> list[int]:
    """How many of ``instants`` fall in each whole second [origin + i, origin + i + 1)."""
    counts = [0] * max(seconds, 0)
    for t in instants:
        i = math.floor(t - origin)
        if 0 <= i < len(counts):
            counts[i] += 1
    return counts


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus's ``histogram_quantile`` over cumulative bucket counts {upper bound: count}
    (``inf`` included): linear within the bucket, the highest finite bound if it falls in +Inf."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] == 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return previous_bound
            if count == previous_count:
                return bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / (count - previous_count)
        previous_bound, previous_count = bound, count
    return previous_bound


@dataclass
class Tally:
    """How many of the expected items arrived once, not at all, or more than once; and
    unexpected items (present but never expected)."""
    expected: int = 0
    once: int = 0
    missing: int = 0
    duplicated: int = 0
    unexpected: int = 0
    examples: list = field(default_factory=list)

    @property
    def exactly_once(self) -> bool:
        return self.expected == self.once and not (self.missing or self.duplicated or self.unexpected)

    def as_dict(self) -> dict:
        return {"expected": self.expected, "once": self.once, "missing": self.missing,
                "duplicated": self.duplicated, "unexpected": self.unexpected,
                "exactly_once": self.exactly_once, "examples": self.examples[:5]}


def tally(expected: Iterable, seen: Iterable) -> Tally:
    """Compare what should be there, once each, with what is (a multiset)."""
    want = set(expected)
    counts = Counter(seen)
    result = Tally(expected=len(want))
    for item in want:
        n = counts.get(item, 0)
        if n == 1:
            result.once += 1
        elif n == 0:
            result.missing += 1
            result.examples.append({"item": str(item), "count": 0})
        else:
            result.duplicated += 1
            result.examples.append({"item": str(item), "count": n})
    for item, n in counts.items():
        if item not in want:
            result.unexpected += 1
            result.examples.append({"item": str(item), "count": n, "unexpected": True})
    return result


def expected_deliveries(events: Iterable[tuple], consumers: Mapping[str, Iterable[str]]) -> dict[str, set]:
    """Each service's expected deliveries: {service: {event id}} for ``events`` given as
    (event id, type) and ``consumers`` as {event type: services that consume it}."""
    out: dict[str, set] = {}
    for services in consumers.values():
        for service in services:
            out.setdefault(service, set())
    for event_id, event_type in events:
        for service in consumers.get(event_type, ()):
            out[service].add(event_id)
    return out


def exactly_once_report(codes: Iterable[str], rows: Mapping[str, Iterable[str]],
                        deliveries: Mapping[str, set], processed: Mapping[str, Iterable]) -> dict:
    """The whole verdict.

    ``rows``: {check name: dossier codes of the rows found (one per row)}, e.g. intake's dossiers,
    routing's workflows, fees' accounts and payments, notify's dossiers: each code once.
    ``deliveries``: {service: expected event ids}; ``processed``: {service: event ids in its
    processed-events table (one per row)} restricted to the events of the run.
    """
    code_set = set(codes)
    checks = {name: tally(code_set, [c for c in found if c in code_set]).as_dict() for name, found in rows.items()}
    events = {service: tally(want, processed.get(service, ())).as_dict() for service, want in deliveries.items()}
    ok = all(c["exactly_once"] for c in checks.values()) and all(e["exactly_once"] for e in events.values())
    return {"dossiers": len(code_set), "rows": checks, "events": events, "exactly_once": ok}


def ratio(ours: float | None, baseline: float | None) -> float | None:
    if not ours or not baseline:
        return None
    return round(ours / baseline, 4)


def steady_from(warmup: float, life_seconds: Iterable[float], load_seconds: float) -> float:
    """Seconds into a phase where its steady window starts: after ``warmup`` and after the p90
    duration of a life, at most half-way through the load. Before that the pipeline is still
    filling (a life that takes 15 s completes nothing in its first 15 s); counting those seconds
    would understate the rate the system keeps up."""
    filled = summary(life_seconds, digits=3)["p90"] or 0.0
    return min(max(warmup, filled), load_seconds / 2)
