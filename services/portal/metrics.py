"""The portal sync's metrics, counted from what its handlers returned. Labels are units and
reasons, never a dossier. The pending gauges are read from the database (service.py)."""
from __future__ import annotations

from prometheus_client import Counter, Histogram

from services.portal.domain import Failed, Sent

# From a status change to the portal's acceptance: seconds when all is well, hours in an outage.
LAG = Histogram("motcua_portal_sync_lag_seconds", "From a dossier's status change to the national portal "
                "accepting it, by receiving unit.", ["unit"],
                buckets=(1, 2, 5, 10, 30, 60, 300, 900, 1800, 3600, 10800, 21600, 43200, 86400, 259200))
SENT = Counter("motcua_portal_sync_sent_total", "Status changes the national portal accepted, by unit and "
               "kind (first: its first acceptance; resend: again, after a reconciliation found it missing).",
               ["unit", "kind"])
FAILURES = Counter("motcua_portal_sync_failures_total", "Attempts to send a status change that failed, by unit "
                   "and reason (throttled: 429; unavailable: 5xx or 408; unreachable: no answer; rejected: "
                   "another 4xx). Each is tried again later.", ["unit", "reason"])


def count(events: list) -> None:
    for event in events:
        if isinstance(event, Sent):
            SENT.labels(event.unit, "resend" if event.resent else "first").inc()
            if not event.resent:
                LAG.labels(event.unit).observe(event.lag_seconds)
        elif isinstance(event, Failed):
            FAILURES.labels(event.unit, event.reason).inc()
