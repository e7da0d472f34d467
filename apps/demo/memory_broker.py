"""kombu's in-memory transport (``memory://``) as nameko's broker, in one process.

Three things stand between the services and ``memory://`` (engineering guide §1); this module
is the whole shim:

- an RPC reply reads ``message.properties['content_type']``, which the in-memory message
  keeps on the message itself, not in its properties: ``KeyError: 'content_type'``;
- every consumer polls its queues once a second (the virtual transport's default), so every
  hop of an RPC or an event waits up to a second. The default is lowered for every memory
  connection, standalone proxies included (they ignore ``TRANSPORT_OPTIONS``);
- publisher confirms: the outbox relay puts its channel in confirm mode and counts the broker's
  ``basic_ack`` events. An in-memory publish is done when it returns, so the channel confirms
  each one at once (the events are kept per channel: the class-level ``events`` is shared);
- a requeued message (``NotYet``, a transient error) is put back by kombu's virtual transport
  into *every* queue its routing key matches, so one requeue on a topic exchange copies the
  message to the other services' queues, and retries multiply. The shim remembers the queue each
  message was delivered from and puts it back there only, as RabbitMQ does.

``install()`` is idempotent. ``pending_messages()`` counts what waits in the in-memory queues
(the demo waits for 0 before it moves the clock); ``reset()`` empties the broker.
"""
from __future__ import annotations

from collections import defaultdict

from kombu.transport import memory, virtual
from nameko import rpc

MEMORY_URI = "memory://"
DEFAULT_POLLING_INTERVAL = 0.005

_original_send_response = rpc.Responder.send_response
_original_basic_publish = memory.Channel.basic_publish
_original_deliver = virtual.Transport._deliver
_original_restore = virtual.Channel._restore
QUEUE_KEY = "x-memory-queue"


def _send_response(self, result, exc_info):
    properties = self.message.properties
    if "content_type" not in properties:
        properties["content_type"] = self.message.content_type
    return _original_send_response(self, result, exc_info)


def _confirm_select(self, nowait=False):
    self.__dict__["events"] = defaultdict(set)     # this channel's own ack/nack listeners
    self._confirmed_tag = 0


def _basic_publish(self, message, exchange, routing_key, **kwargs):
    result = _original_basic_publish(self, message, exchange, routing_key, **kwargs)
    if "_confirmed_tag" in self.__dict__:           # in confirm mode: taken, hence confirmed
        self._confirmed_tag += 1
        for listener in list(self.events["basic_ack"]):
            listener(self._confirmed_tag, False)
    return result


def _deliver(self, message, queue):
    # A copy: a message routed to several queues is one dict in each of them.
    properties = message.get("properties") or {}
    delivery_info = {**(properties.get("delivery_info") or {}), QUEUE_KEY: queue}
    return _original_deliver(self, {**message, "properties": {**properties, "delivery_info": delivery_info}}, queue)


def _restore(self, message):
    queue = message.delivery_info.get(QUEUE_KEY)
    if queue is None:
        return _original_restore(self, message)
    payload = message.serializable()
    payload["redelivered"] = True
    self._put(queue, payload)


def install(polling_interval: float = DEFAULT_POLLING_INTERVAL) -> None:
    """Make nameko and the outbox relay work on ``memory://`` in this process."""
    rpc.Responder.send_response = _send_response
    memory.Transport.polling_interval = polling_interval
    memory.Channel.confirm_select = _confirm_select
    memory.Channel.basic_publish = _basic_publish
    memory.Transport._deliver = _deliver
    memory.Channel._restore = _restore


def uninstall() -> None:
    rpc.Responder.send_response = _original_send_response
    memory.Transport.polling_interval = 1.0
    if hasattr(memory.Channel, "confirm_select"):
        del memory.Channel.confirm_select
    memory.Channel.basic_publish = _original_basic_publish
    for cls, name in ((memory.Transport, "_deliver"), (memory.Channel, "_restore")):
        if name in vars(cls):
            delattr(cls, name)


def is_memory(uri: str) -> bool:
    return uri.split(":", 1)[0] == "memory"


def pending_messages(names=None) -> int:
    """Messages waiting in the in-memory queues ``names`` (default: every queue); delivered,
    unacknowledged ones are not counted."""
    queues = memory.Channel.queues
    chosen = list(queues.values()) if names is None else [queues[n] for n in names if n in queues]
    return sum(queue.qsize() for queue in chosen)


def reset() -> None:
    """Forget every queue, exchange and binding of the in-memory broker."""
    memory.Channel.queues.clear()
    memory.Channel.events.clear()
    memory.Transport.global_state.clear()
