"""The timings the tests no longer assert (issue 16): measured here and printed, never a pass/fail.

    .venv/bin/python -m bench.timings                       # all three; RabbitMQ on 127.0.0.1 for the last
    .venv/bin/python -m bench.timings due_date memory_rpc   # some of them
    AMQP_URI=amqp://guest:guest@rabbit:5672// .venv/bin/python -m bench.timings rpc_under_flood

- ``due_date``: µs per ``due_date`` call (15 working days across Tết, one clock stop), min and
  median of ``--rounds`` rounds of 2,000 calls (was ``per_call < 0.001`` in tests/unit/test_calendar.py).
- ``memory_rpc``: seconds of 10 RPC round trips through two services on the demo's ``memory://``
  shim (was ``elapsed < 5`` in tests/unit/test_demo_memory_broker.py; with kombu's default 1 s
  polling it takes over 10 s).
- ``rpc_under_flood``: seconds an RPC call and a ``/health`` request take while desk requests
  queue on the platform container (2 workers, 8 requests of 1 s), and the RPC call's on nameko's
  own container for contrast (was ``elapsed < 0.8`` in tests/integration/test_container_pools.py).
  Its service has a name of its own (``bench-desk-<random>``): nothing else's queues are touched.
- ``single_event``: seconds from publishing one event to its effect committed, by a consumer with
  nothing else queued (the test service of tests/integration/platform_service.py, its schema
  ``platform_test`` made again in ``DATABASE_URL``, default the test database; was ``waited < 1.0``
  in tests/integration/test_event_batches.py).
Each bench deletes the queues its service declared on the broker, and the schema it made.
"""
from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import argparse  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402

AMQP_URI = os.environ.get("AMQP_URI", "amqp://guest:guest@127.0.0.1:5672//")
DATABASE_URL = os.environ.get("DATABASE_URL") or os.environ.get(
    "TEST_DATABASE_URL", "postgresql+psycopg2://motcua@127.0.0.1:5432/motcua_test")
ICT = timezone(timedelta(hours=7))


def due_date(rounds: int) -> None:
    from motcua.contracts.calendar import ClockStop, WorkingCalendar, due_date as compute, parse_time_limit
    calendar, limit = WorkingCalendar(), parse_time_limit("15 working days")
    received = datetime(2026, 2, 13, 10, tzinfo=ICT)
    stops = [ClockStop(datetime(2026, 2, 24, 9, tzinfo=ICT), datetime(2026, 3, 2, 9, tzinfo=ICT))]
    per_call = []
    for _ in range(rounds):
        begin = time.perf_counter()
        for _ in range(2000):
            compute(received, limit, calendar, stops)
        per_call.append((time.perf_counter() - begin) / 2000 * 1e6)
    print(f"due_date: {min(per_call):.1f} µs a call (min), {statistics.median(per_call):.1f} µs (median) "
          f"of {rounds} rounds of 2,000")


def memory_rpc(rounds: int) -> None:
    from nameko.containers import ServiceContainer
    from nameko.rpc import RpcProxy, rpc
    from nameko.standalone.rpc import ServiceRpcProxy
    from apps.demo import memory_broker

    class Echo:
        name = "echo"

        @rpc
        def echo(self, value):
            return value

    class Caller:
        name = "caller"
        echo = RpcProxy("echo")

        @rpc
        def call(self, value):
            return self.echo.echo(value)

    config = {"AMQP_URI": memory_broker.MEMORY_URI}
    memory_broker.reset()
    memory_broker.install()
    containers = [ServiceContainer(cls, config) for cls in (Echo, Caller)]
    try:
        for container in containers:
            container.start()
        seconds = []
        with ServiceRpcProxy("caller", config) as caller:
            caller.call("warm")
            for _ in range(rounds):
                started = time.monotonic()
                for i in range(10):
                    caller.call(i)
                seconds.append(time.monotonic() - started)
    finally:
        for container in containers:
            container.kill()
        memory_broker.uninstall()
        memory_broker.reset()
    print(f"memory_rpc: 10 round trips of two hops in {min(seconds):.3f} s (min), "
          f"{statistics.median(seconds):.3f} s (median) of {rounds} rounds")


SLOW, FLOOD = 1.0, 8


def delete_queues(*names: str) -> None:
    """The durable queues a bench's service declared on the broker: gone with it."""
    from kombu import Connection, Queue
    with Connection(AMQP_URI) as connection:
        for name in names:
            Queue(name)(connection.default_channel).delete()


def rpc_under_flood(rounds: int) -> None:
    import requests
    from nameko.containers import ServiceContainer
    from nameko.rpc import rpc
    from nameko.standalone.rpc import ServiceRpcProxy
    from nameko.testing.utils import find_free_port
    from nameko.web.handlers import http
    from motcua.runtime.container import CONTAINER_CLASS_PATH, PlatformContainer

    class Desk:
        name = f"bench-desk-{uuid.uuid4().hex[:8]}"

        @http("GET", "/slow")
        def slow(self, request):
            eventlet.sleep(SLOW)
            return "done"

        @http("GET", "/health")
        def health(self, request):
            return "ok"

        @rpc
        def ping(self):
            return "pong"

    def measure(container_path: str | None) -> tuple[float, float]:
        address = f"127.0.0.1:{find_free_port()}"
        config = {"AMQP_URI": AMQP_URI, "max_workers": 2, "HTTP_MAX_WORKERS": 2, "WEB_SERVER_ADDRESS": address}
        cls = PlatformContainer if container_path else ServiceContainer
        container = cls(Desk, config)
        pool = container._worker_pool.requests if container_path else container._worker_pool
        container.start()
        try:
            with ServiceRpcProxy(Desk.name, config, timeout=30) as desk:
                desk.ping()
                fired = [eventlet.spawn(requests.get, f"http://{address}/slow", timeout=30) for _ in range(FLOOD)]
                deadline = time.monotonic() + 10
                while pool.waiting() < FLOOD - 2 and time.monotonic() < deadline:
                    eventlet.sleep(0.01)
                started = time.monotonic()
                desk.ping()
                ping = time.monotonic() - started
                started = time.monotonic()
                requests.get(f"http://{address}/health", timeout=30)
                health = time.monotonic() - started
                for thread in fired:
                    thread.wait()
        finally:
            container.kill()
        return ping, health

    try:
        for label, path in (("platform container", CONTAINER_CLASS_PATH), ("nameko's own container", None)):
            pings, healths = zip(*(measure(path) for _ in range(rounds)))
            print(f"rpc_under_flood, {label}: RPC ping {statistics.median(pings):.3f} s, /health "
                  f"{statistics.median(healths):.3f} s (median of {rounds}) with {FLOOD - 2} desk requests waiting")
    finally:
        delete_queues(f"rpc-{Desk.name}")


def single_event(rounds: int) -> None:
    from nameko.containers import ServiceContainer
    from nameko.testing.utils import find_free_port
    from sqlalchemy import func, select, text
    from motcua.contracts.events import new_event
    from motcua.runtime.db import make_engine
    from tests.integration import platform_service as ps
    from tests.integration.test_platform import publish_raw

    engine = make_engine(DATABASE_URL, pool_size=2)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS platform_test CASCADE"))
        connection.execute(text("CREATE SCHEMA platform_test"))
    ps.metadata.create_all(engine)
    container = ServiceContainer(ps.PlatformTestService, {
        "AMQP_URI": AMQP_URI, "DATABASE_URL": DATABASE_URL, "WEB_SERVER_ADDRESS": f"127.0.0.1:{find_free_port()}"})
    container.start()
    seconds = []
    try:
        for n in range(rounds + 1):
            note = f"bench-{uuid.uuid4()}"
            started = time.monotonic()
            publish_raw(AMQP_URI, new_event("test.noted", {"note": note}, ps.UNIT).to_json(), "test.noted")
            while True:
                with engine.connect() as connection:
                    if connection.execute(select(func.count()).select_from(ps.effects)
                                          .where(ps.effects.c.note == f"handled:{note}")).scalar():
                        break
                eventlet.sleep(0.005)
            if n:                                   # the first warms the connections
                seconds.append(time.monotonic() - started)
    finally:
        container.stop()
        delete_queues("platform_test.on_noted", "platform_test.on_explode", "rpc-platform_test")
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA IF EXISTS platform_test CASCADE"))
        engine.dispose()
    print(f"single_event: {statistics.median(seconds):.3f} s from publish to effect committed (median), "
          f"{max(seconds):.3f} s (max) of {rounds}")


BENCHES = {"due_date": due_date, "memory_rpc": memory_rpc, "rpc_under_flood": rpc_under_flood,
           "single_event": single_event}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benches", nargs="*", metavar="BENCH", help=", ".join(BENCHES) + " (default: all)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    unknown = [name for name in args.benches if name not in BENCHES]
    if unknown:
        parser.error(f"no bench {', '.join(unknown)}: choose among {', '.join(BENCHES)}")
    for name in args.benches or BENCHES:
        BENCHES[name](args.rounds)


if __name__ == "__main__":
    main()
