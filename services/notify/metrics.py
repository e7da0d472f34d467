"""notify's metrics, counted from the events its handlers returned (never from an answer's JSON).
Labels are channels, templates and states: never an address. ``motcua_notify_messages_total``'s
states: sent, failed, delivered, and not_rendered (a digest whose template failed to render)."""
from __future__ import annotations

from prometheus_client import Counter, Histogram

from services.notify.messages import (
    DeliveryReported,
    DigestFailed,
    MessageFailed,
    MessageRetried,
    MessageSent,
)

MESSAGES = Counter("motcua_notify_messages_total", "Messages by channel, template and state reached.",
                   ["channel", "template", "state"])
RETRIES = Counter("motcua_notify_retries_total", "Sending attempts that failed and will be retried.", ["channel"])
DEAD = Counter("motcua_notify_dead_letters_total", "Messages given up on and dead-lettered.", ["channel"])
LATENCY = Histogram("motcua_notify_delivery_seconds", "From queued to accepted by the provider.", ["channel"],
                    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 21600, 43200, 86400))


def count(events: list) -> None:
    for event in events:
        if isinstance(event, MessageSent):
            MESSAGES.labels(event.channel, event.template, "sent").inc()
            LATENCY.labels(event.channel).observe(event.waited_seconds)
        elif isinstance(event, MessageRetried):
            RETRIES.labels(event.channel).inc()
        elif isinstance(event, MessageFailed):
            MESSAGES.labels(event.channel, event.template, "failed").inc()
            DEAD.labels(event.channel).inc()
        elif isinstance(event, DigestFailed):
            # a unit's digest whose template failed to render: nothing queued, not tried again that day
            MESSAGES.labels(event.channel, "daily_digest", "not_rendered").inc()
        elif isinstance(event, DeliveryReported):
            MESSAGES.labels(event.channel, event.template, event.state).inc()
