"""The broker's topology for events, declared the same way by every publisher and consumer."""
from __future__ import annotations

import os

from kombu import Connection, Exchange, Queue

from motcua.contracts.events import DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE, EVENTS_EXCHANGE, UNITS_EXCHANGE

DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672//"

events_exchange = Exchange(EVENTS_EXCHANGE, type="topic", durable=True)
units_exchange = Exchange(UNITS_EXCHANGE, type="topic", durable=True)
dead_letter_exchange = Exchange(DEAD_LETTER_EXCHANGE, type="topic", durable=True)
dead_letter_queue = Queue(DEAD_LETTER_QUEUE, exchange=dead_letter_exchange, routing_key="#", durable=True)


def amqp_uri(config: dict | None = None) -> str:
    return (config or {}).get("AMQP_URI") or os.environ.get("AMQP_URI") or DEFAULT_AMQP_URI


def confirmed_connection(uri: str) -> Connection:
    """A connection whose publishes return only once the broker has taken the message."""
    return Connection(uri, transport_options={"confirm_publish": True}, connect_timeout=5)


def declare_topology(channel) -> None:
    events_exchange(channel).declare()
    units_exchange(channel).declare()
    dead_letter_exchange(channel).declare()
    queue = dead_letter_queue(channel)
    queue.declare()
