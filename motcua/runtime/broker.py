"""The broker's topology for events, declared the same way by every publisher and consumer.

``AMQP_URI`` may name several nodes of a RabbitMQ cluster, separated by ``;``
(``amqp://u:p@a:5672/v;amqp://u:p@b:5672/v``): kombu connects to the first that answers and, when
its connection drops, to the next (``failover_strategy``, round-robin by default). With
``QUORUM_QUEUES`` on, every durable queue the services consume is declared as a quorum queue
(replicated over the cluster's nodes, ``x-queue-type: quorum``); reply queues stay classic.
"""
from __future__ import annotations

import os
from typing import Mapping

from amqp.exceptions import ChannelError
from kombu import Connection, Exchange, Queue

from motcua.contracts.events import DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE, EVENTS_EXCHANGE, UNITS_EXCHANGE
from motcua.runtime.config import truthy

DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672//"
QUORUM = {"x-queue-type": "quorum"}

events_exchange = Exchange(EVENTS_EXCHANGE, type="topic", durable=True)
units_exchange = Exchange(UNITS_EXCHANGE, type="topic", durable=True)
dead_letter_exchange = Exchange(DEAD_LETTER_EXCHANGE, type="topic", durable=True)
# For reading and purging (neither declares); declared by ``declare_topology`` with its type.
dead_letter_queue = Queue(DEAD_LETTER_QUEUE, exchange=dead_letter_exchange, routing_key="#", durable=True)


def amqp_uri(config: Mapping | None = None) -> str:
    return (config or {}).get("AMQP_URI") or os.environ.get("AMQP_URI") or DEFAULT_AMQP_URI


def node_uris(uri: str) -> list[str]:
    """The URLs of a failover list (kombu's ``;`` separator), in order."""
    return [part.strip() for part in uri.split(";") if part.strip()]


def quorum_queues(config: Mapping | None = None) -> bool:
    """``QUORUM_QUEUES`` from the config, else the environment; off by default."""
    value = (config or {}).get("QUORUM_QUEUES")
    if value is None:
        value = os.environ.get("QUORUM_QUEUES", "")
    return truthy(value)


def queue_arguments(config: Mapping | None = None) -> dict:
    """The arguments of every durable queue a service consumes. Quorum queues are durable, never
    exclusive nor auto-deleted, and take per-consumer prefetch only (nameko's and kombu's default)."""
    return dict(QUORUM) if quorum_queues(config) else {}


def durable_queue(name: str, exchange: Exchange, routing_key: str, config: Mapping | None = None) -> Queue:
    return Queue(name, exchange=exchange, routing_key=routing_key, durable=True,
                 queue_arguments=queue_arguments(config))


class QueueTypeConflict(RuntimeError):
    """A queue exists with another type than the one asked (a classic queue left by a single-node
    install, and ``QUORUM_QUEUES`` switched on): RabbitMQ refuses to redeclare it."""


def check_queue_types(uri: str, queues: list[Queue]) -> None:
    """The quorum queues that exist already are declared again now, before any consumer does: one of
    another type stops the service at start with the queues' names (nameko's consumer would retry
    the refused declaration every second, forever, and the service would never be ready). Queues
    that do not exist are left to the consumers: a refused start creates nothing."""
    quorum = {q.name: q for q in queues if (q.queue_arguments or {}).get("x-queue-type") == "quorum"}
    conflicts = []
    with Connection(uri, connect_timeout=5) as connection:
        channel = connection.channel()
        for name, queue in sorted(quorum.items()):
            bound = queue(channel)
            try:
                bound.queue_declare(passive=True)
            except ChannelError:                # not there (404): the channel closed with it
                channel = connection.channel()
                continue
            try:
                bound.queue_declare()
            except ChannelError as refused:     # PRECONDITION_FAILED, the channel closed with it
                conflicts.append(f"{name} ({refused})")
                channel = connection.channel()
        channel.close()
    if conflicts:
        raise QueueTypeConflict(
            f"QUORUM_QUEUES is on but {len(conflicts)} queue(s) exist with another type: {'; '.join(conflicts)}. "
            "Drain and delete them (or switch QUORUM_QUEUES off): see deploy/README.md, RabbitMQ cluster")


def confirmed_connection(uri: str) -> Connection:
    """A connection whose publishes return only once the broker has taken the message."""
    return Connection(uri, transport_options={"confirm_publish": True}, connect_timeout=5)


def declare_topology(channel, config: Mapping | None = None) -> None:
    events_exchange(channel).declare()
    units_exchange(channel).declare()
    dead_letter_exchange(channel).declare()
    durable_queue(DEAD_LETTER_QUEUE, dead_letter_exchange, "#", config)(channel).declare()
