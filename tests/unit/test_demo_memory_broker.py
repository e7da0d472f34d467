"""The memory:// shim of ``motcua demo``: nameko RPC and events in one process, no RabbitMQ."""
import time

import eventlet
import pytest
from kombu.transport import memory
from nameko.containers import ServiceContainer
from nameko.events import EventDispatcher, event_handler
from nameko.rpc import RpcProxy, rpc
from nameko.standalone.rpc import ServiceRpcProxy

from apps.demo import memory_broker

CONFIG = {"AMQP_URI": memory_broker.MEMORY_URI}
received = []


class Echo:
    name = "echo"
    dispatch = EventDispatcher()

    @rpc
    def echo(self, value):
        self.dispatch("echoed", {"value": value})
        return {"echo": value}


class Caller:
    name = "caller"
    echo = RpcProxy("echo")

    @rpc
    def call(self, value):
        return self.echo.echo(value)

    @event_handler("echo", "echoed")
    def on_echoed(self, payload):
        received.append(payload["value"])


@pytest.fixture
def shimmed():
    memory_broker.reset()
    memory_broker.install()
    yield
    memory_broker.uninstall()
    memory_broker.reset()


@pytest.fixture
def containers(shimmed):
    started = [ServiceContainer(cls, CONFIG) for cls in (Echo, Caller)]
    for container in started:
        container.start()
    yield started
    for container in started:
        container.kill()


def test_install_lowers_polling_and_is_idempotent(shimmed):
    memory_broker.install(polling_interval=0.01)
    memory_broker.install(polling_interval=0.01)
    assert memory.Transport.polling_interval == 0.01
    memory_broker.uninstall()
    assert memory.Transport.polling_interval == 1.0


def test_rpc_replies_and_events_work_in_one_process(containers):
    received.clear()
    with ServiceRpcProxy("caller", CONFIG) as caller:
        # service -> service RPC and the standalone proxy's reply both need the content_type fix
        assert caller.call("xin chào") == {"echo": "xin chào"}
        answers = [caller.call(i) for i in range(10)]
    assert answers == [{"echo": i} for i in range(10)]
    # How fast (10 round trips; over 10 s with the 1 s default polling): bench/timings.py memory_rpc.
    # The lowered polling itself is test_install_lowers_polling_and_is_idempotent's.
    deadline = time.monotonic() + 5
    while len(received) < 11 and time.monotonic() < deadline:
        eventlet.sleep(0.01)
    assert sorted(received, key=str) == sorted(["xin chào", *range(10)], key=str)
    assert memory_broker.pending_messages() == 0


def test_pending_messages_counts_queued_messages(shimmed):
    from kombu import Connection, Exchange, Queue
    exchange = Exchange("demo-test", type="topic")
    queue = Queue("demo-test-queue", exchange=exchange, routing_key="a.#")
    with Connection(memory_broker.MEMORY_URI) as connection:
        producer = connection.Producer()
        queue(connection.default_channel).declare()
        for i in range(3):
            producer.publish({"i": i}, exchange=exchange, routing_key="a.b", declare=[queue])
        assert memory_broker.pending_messages() == 3
        message = queue(connection.default_channel).get(no_ack=True)
        assert message.payload == {"i": 0}
        assert memory_broker.pending_messages() == 2
    memory_broker.reset()
    assert memory_broker.pending_messages() == 0


def test_without_the_shim_an_rpc_reply_kills_the_service():
    """What the shim is for: nameko 2.14.1 on memory:// cannot answer an RPC call."""
    memory_broker.reset()
    memory_broker.uninstall()
    container = ServiceContainer(Echo, CONFIG)
    container.start()
    try:
        with ServiceRpcProxy("echo", CONFIG, timeout=5) as echo:
            echo.echo.call_async("x")
            with eventlet.Timeout(5), pytest.raises(KeyError, match="content_type"):
                container.wait()
    finally:
        container.kill()
        memory_broker.reset()


def test_publisher_confirms_are_given_at_once_per_channel(shimmed):
    from kombu import Connection, Exchange, Producer, Queue
    exchange = Exchange("demo-confirms", type="topic")
    queue = Queue("demo-confirms-queue", exchange=exchange, routing_key="#")
    acks, other_acks = [], []
    with Connection(memory_broker.MEMORY_URI) as connection, Connection(memory_broker.MEMORY_URI) as other:
        channel = connection.default_channel
        channel.confirm_select()
        channel.events["basic_ack"].add(lambda tag, multiple: acks.append((tag, multiple)))
        other_channel = other.default_channel
        other_channel.confirm_select()
        other_channel.events["basic_ack"].add(lambda tag, multiple: other_acks.append(tag))
        queue(channel).declare()
        producer = Producer(channel, exchange=exchange)
        for i in range(3):
            producer.publish({"i": i}, routing_key="x")
        assert acks == [(1, False), (2, False), (3, False)]
        assert other_acks == []                       # listeners are the channel's own
        assert memory_broker.pending_messages(["demo-confirms-queue"]) == 3
        assert memory_broker.pending_messages(["no-such-queue"]) == 0
        plain = Connection(memory_broker.MEMORY_URI).default_channel     # not in confirm mode: no acks
        Producer(plain, exchange=exchange).publish({"i": 9}, routing_key="x")
        assert len(acks) == 3


def test_the_outbox_relay_publishes_with_confirms_on_memory(shimmed):
    """The relay as the services run it: rows published, confirmed and marked (no broker needed
    but the shim; the database part is a fake that records what the relay asks)."""
    from motcua.runtime import outbox
    relay = outbox.Relay(engine=None, table=None, amqp_uri=memory_broker.MEMORY_URI, service="demo")
    producer = relay._producer()
    for i in range(5):
        producer.publish({"i": i}, routing_key="dossier.received", retry=False)
        relay._sent += 1
    relay._wait_for_confirms()            # returns at once: every message is confirmed
    assert relay._acked == relay._sent == 5
    relay.close()


def test_a_requeued_message_goes_back_to_its_own_queue_only(shimmed):
    from kombu import Connection, Consumer, Exchange, Queue
    exchange = Exchange("demo-requeue", type="topic")
    mine = Queue("demo-requeue-mine", exchange=exchange, routing_key="dossier.refused")
    theirs = Queue("demo-requeue-theirs", exchange=exchange, routing_key="dossier.*")
    seen = []

    def requeue_once(body, message):
        seen.append(body)
        if len(seen) == 1:
            message.requeue()          # as nameko does for NotYet
        else:
            message.ack()

    with Connection(memory_broker.MEMORY_URI) as connection:
        channel = connection.default_channel
        for queue in (mine, theirs):
            queue(channel).declare()
        connection.Producer().publish({"code": "X"}, exchange=exchange, routing_key="dossier.refused")
        assert memory_broker.pending_messages([mine.name, theirs.name]) == 2
        with Consumer(channel, queues=[mine], callbacks=[requeue_once]):
            connection.drain_events(timeout=1)
            assert memory_broker.pending_messages([theirs.name]) == 1     # not copied there again
            connection.drain_events(timeout=1)
        assert seen == [{"code": "X"}, {"code": "X"}]
        assert memory_broker.pending_messages([mine.name]) == 0
        assert memory_broker.pending_messages([theirs.name]) == 1
