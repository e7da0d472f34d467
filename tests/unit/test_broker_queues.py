"""Queue types and node lists from the settings: no broker needed."""
from nameko.containers import ServiceContainer

from motcua.runtime import broker
from motcua.runtime.inbox import EventConsumer, event_consumer
from motcua.runtime.rpc import Rpc, rpc

NOT_STARTED = {"AMQP_URI": "memory://"}      # nameko reads the URI on binding, never connects


class Desk:
    name = "desk"

    @rpc
    def ping(self):
        return "pong"

    @event_consumer("dossier.received")
    def on_received(self, events):
        pass


def declared_queues(config):
    container = ServiceContainer(Desk, config)
    found = {}
    for entrypoint in container.entrypoints:
        entrypoint.setup()
        if isinstance(entrypoint, Rpc):
            entrypoint.rpc_consumer.setup()      # the container sets up every extension; here by hand
            queue = entrypoint.rpc_consumer.queue
        else:
            queue = entrypoint.queue
        found[queue.name] = queue
    return found


def test_quorum_queues_is_off_unless_switched_on(monkeypatch):
    monkeypatch.delenv("QUORUM_QUEUES", raising=False)
    assert broker.queue_arguments({}) == {}
    assert broker.queue_arguments({"QUORUM_QUEUES": False}) == {}
    assert broker.queue_arguments({"QUORUM_QUEUES": "true"}) == {"x-queue-type": "quorum"}
    monkeypatch.setenv("QUORUM_QUEUES", "1")
    assert broker.queue_arguments(None) == {"x-queue-type": "quorum"}
    assert broker.queue_arguments({"QUORUM_QUEUES": "off"}) == {}       # the config wins over the environment


def test_every_queue_a_service_consumes_is_quorum_when_switched_on(monkeypatch):
    monkeypatch.delenv("QUORUM_QUEUES", raising=False)
    queues = declared_queues({**NOT_STARTED, "QUORUM_QUEUES": True})
    assert set(queues) == {"rpc-desk", "desk.on_received"}
    for queue in queues.values():
        assert queue.queue_arguments == {"x-queue-type": "quorum"}
        assert queue.durable and not queue.auto_delete and not queue.exclusive


def test_classic_queues_by_default(monkeypatch):
    monkeypatch.delenv("QUORUM_QUEUES", raising=False)
    for queue in declared_queues(NOT_STARTED).values():
        assert not queue.queue_arguments
        assert queue.durable


def test_the_event_consumer_queue_is_bound_to_its_event_type():
    queue = declared_queues(NOT_STARTED)["desk.on_received"]
    assert queue.routing_key == "dossier.received" and queue.exchange.name == broker.events_exchange.name
    assert isinstance(next(e for e in ServiceContainer(Desk, NOT_STARTED).entrypoints
                           if e.method_name == "on_received"), EventConsumer)


def test_a_failover_list_names_every_node_in_order():
    assert broker.node_uris("amqp://a:5701/v; amqp://b:5702/v;") == ["amqp://a:5701/v", "amqp://b:5702/v"]
    assert broker.node_uris(broker.DEFAULT_AMQP_URI) == [broker.DEFAULT_AMQP_URI]
