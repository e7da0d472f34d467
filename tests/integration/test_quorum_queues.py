"""QUORUM_QUEUES on a single RabbitMQ node (a quorum queue works on one node too): the service's
queues are quorum queues and RPC and events go through them; a classic queue of the same name left
by an earlier install stops the service at start with the broker's reason (see deploy/README.md,
"RabbitMQ cluster", for the migration)."""
import pytest
from kombu import Connection, Producer
from nameko.standalone.rpc import ServiceRpcProxy
from nameko.testing.services import entrypoint_waiter

from motcua.contracts.events import new_event
from motcua.runtime import broker
from motcua.runtime.container import CONTAINER_CLASS_PATH
from motcua.runtime.inbox import event_consumer
from motcua.runtime.rpc import rpc
from tests.integration import platform_service as ps   # registers the test.noted event type

NOTES: list[str] = []


class Quorate:
    name = "quorate"

    @rpc
    def ping(self):
        return "pong"

    @event_consumer("test.noted")
    def on_noted(self, events):
        NOTES.extend(event.payload["note"] for event in events)


def test_rpc_and_events_go_through_quorum_queues(container_factory, rabbit_config, rabbit_manager):
    config = {**rabbit_config, "QUORUM_QUEUES": True, "SERVICE_CONTAINER_CLS": CONTAINER_CLASS_PATH}
    container = container_factory(Quorate, config)
    container.start()
    with ServiceRpcProxy("quorate", config) as proxy:
        assert proxy.ping() == "pong"
    with entrypoint_waiter(container, "on_noted"):
        with broker.confirmed_connection(config["AMQP_URI"]) as connection:
            Producer(connection.default_channel, exchange=broker.events_exchange).publish(
                new_event("test.noted", {"note": "quorate"}, ps.UNIT).to_json(), routing_key="test.noted",
                content_type="application/json", content_encoding="utf-8")
    assert NOTES == ["quorate"]
    types = {q["name"]: q.get("type") for q in rabbit_manager.get_queues(rabbit_config["vhost"])}
    assert types["rpc-quorate"] == types["quorate.on_noted"] == "quorum"
    reply_queues = [name for name in types if name.startswith("rpc.reply-")]
    assert reply_queues and all(types[name] == "classic" for name in reply_queues)


def test_a_classic_queue_of_the_same_name_stops_the_service_with_the_reason(container_factory, rabbit_config,
                                                                          rabbit_manager):
    with Connection(rabbit_config["AMQP_URI"]) as connection:      # as an install before the switch left it
        broker.durable_queue("quorate.on_noted", broker.events_exchange, "test.noted")(
            connection.default_channel).declare()
    container = container_factory(Quorate, {**rabbit_config, "QUORUM_QUEUES": True,
                                            "SERVICE_CONTAINER_CLS": CONTAINER_CLASS_PATH})
    with pytest.raises(broker.QueueTypeConflict, match=r"quorate\.on_noted .*inequivalent arg 'x-queue-type'"):
        container.start()
    queues = {q["name"]: q.get("type") for q in rabbit_manager.get_queues(rabbit_config["vhost"])}
    assert queues == {"quorate.on_noted": "classic"}, "a refused start creates nothing"
