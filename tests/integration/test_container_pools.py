"""The platform's container: a flood of slow desk requests must not starve events and RPC
(the throughput benchmark saw routing hear of a dossier 13 s late while the desks polled it)."""
import time

import eventlet
import pytest
import requests
from nameko.containers import ServiceContainer, WorkerContext
from nameko.events import event_handler
from nameko.rpc import rpc
from nameko.standalone.rpc import ServiceRpcProxy
from nameko.testing.utils import find_free_port
from nameko.timer import timer
from nameko.web.handlers import http

from motcua.runtime.container import CONTAINER_CLASS_PATH, PlatformContainer, WorkerPools

SLOW = 1.0      # seconds a desk request takes
FLOOD = 8       # desk requests at once: on 2 workers a backlog of 4 s


class Desk:
    name = "desk"

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

    @event_handler("desk", "poked")
    def on_poked(self, payload):
        """Never fired: here to have an event entrypoint to place on a pool."""

    @timer(interval=3600)
    def tick(self):
        """Never fired in a test: here to have a timer entrypoint to place on a pool."""


class Window:
    """Desk requests only: no consumer of messages whose own stopping outlasts a request."""
    name = "window"
    slow = Desk.slow


@pytest.fixture
def desk_config(rabbit_config):
    """Two workers for messages, two for desk requests."""
    return {**rabbit_config, "max_workers": 2, "HTTP_MAX_WORKERS": 2,
            "WEB_SERVER_ADDRESS": f"127.0.0.1:{find_free_port()}"}


@pytest.fixture
def flood():
    """Fires slow desk requests from green threads; those still waiting die with the test."""
    fired = []

    def fire(config, count=FLOOD):
        url = f"http://{config['WEB_SERVER_ADDRESS']}/slow"
        threads = [eventlet.spawn(requests.get, url, timeout=30) for _ in range(count)]
        fired.extend(threads)
        return threads

    yield fire
    for thread in fired:
        thread.kill()


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        eventlet.sleep(0.01)


def ping_under_flood(config, flood, http_pool):
    """Seconds the RPC ping takes once all but two desk requests wait for a worker (how fast it is
    answered is bench/timings.py's; a test checks only that it was answered before the backlog drained)."""
    with ServiceRpcProxy("desk", config, timeout=30) as desk:
        assert desk.ping() == "pong"         # the proxy's reply queue is ready before the clock starts
        fired = flood(config)
        wait_until(lambda: http_pool.waiting() == FLOOD - 2)
        started = time.monotonic()
        assert desk.ping() == "pong"
        return time.monotonic() - started, fired


def test_rpc_is_answered_at_once_while_desk_requests_queue(container_factory, desk_config, flood):
    """Desk requests queue on their own pool; the RPC call finds a messages worker free."""
    container = container_factory(Desk, {**desk_config, "SERVICE_CONTAINER_CLS": CONTAINER_CLASS_PATH})
    container.start()
    assert isinstance(container, PlatformContainer)
    started = time.monotonic()
    _, fired = ping_under_flood(desk_config, flood, container._worker_pool.requests)
    assert container._worker_pool.requests.waiting() > 0      # answered while the backlog still waited
    assert [thread.wait().text for thread in fired] == ["done"] * FLOOD
    # the backlog was real: the desk requests ran two at a time
    assert time.monotonic() - started >= FLOOD / 2 * SLOW * 0.9


def test_health_is_answered_at_once_while_desk_requests_queue(container_factory, desk_config, flood):
    """A health check waiting behind the desks would time out and get a busy service restarted."""
    container = container_factory(Desk, {**desk_config, "SERVICE_CONTAINER_CLS": CONTAINER_CLASS_PATH})
    container.start()
    fired = flood(desk_config)
    wait_until(lambda: container._worker_pool.requests.waiting() == FLOOD - 2)
    answer = requests.get(f"http://{desk_config['WEB_SERVER_ADDRESS']}/health", timeout=10)
    assert (answer.status_code, answer.text) == (200, "ok")
    assert container._worker_pool.requests.waiting() > 0      # the backlog was still there
    assert [thread.wait().text for thread in fired] == ["done"] * FLOOD


def test_on_nameko_s_own_container_rpc_waits_behind_the_desk_requests(container_factory, desk_config, flood):
    """The contrast: one pool for all, and the RPC call takes its turn after the queued requests."""
    container = container_factory(Desk, desk_config)
    container.start()
    assert type(container) is ServiceContainer
    elapsed, fired = ping_under_flood(desk_config, flood, container._worker_pool)
    assert elapsed > 2.0          # six queued requests ahead of it, two at a time
    assert [thread.wait().text for thread in fired] == ["done"] * FLOOD


def test_stopping_waits_for_a_desk_request_in_flight(container_factory, desk_config, flood):
    """``stop`` waits for the workers of both pools: a request in flight still gets its answer."""
    container = container_factory(Window, {**desk_config, "SERVICE_CONTAINER_CLS": CONTAINER_CLASS_PATH})
    container.start()
    [request] = flood(desk_config, count=1)
    wait_until(lambda: container._worker_pool.requests.running() == 1)
    container.stop()
    assert request.wait().text == "done"


# --- the pools themselves ------------------------------------------------------------------

NOT_STARTED = {"AMQP_URI": "memory://", "max_workers": 2}      # nameko reads the URI on binding, never connects


def entrypoint(container, method_name):
    return next(e for e in container.entrypoints if e.method_name == method_name)


def test_desk_requests_go_to_the_requests_pool_and_all_else_to_the_messages_pool():
    container = PlatformContainer(Desk, NOT_STARTED)
    pools = container._worker_pool
    assert pools.pool_for(entrypoint(container, "slow")) is pools.requests
    assert pools.pool_for(entrypoint(container, "health")) is pools.platform
    for method_name in ("ping", "on_poked", "tick"):
        assert pools.pool_for(entrypoint(container, method_name)) is pools.messages


def test_http_max_workers_sizes_the_requests_pool_and_defaults_to_max_workers():
    sized = PlatformContainer(Desk, {**NOT_STARTED, "max_workers": 3, "HTTP_MAX_WORKERS": 7})._worker_pool
    assert (sized.messages.size, sized.requests.size) == (3, 7)
    default = PlatformContainer(Desk, {**NOT_STARTED, "max_workers": 3})._worker_pool
    assert (default.messages.size, default.requests.size) == (3, 3)


@pytest.mark.parametrize("request_seconds, message_seconds", [(0.3, 0.1), (0.1, 0.3)])
def test_waitall_waits_for_the_workers_of_both_pools(request_seconds, message_seconds):
    """Whichever pool's worker finishes last, ``waitall`` returns only after it."""
    container = PlatformContainer(Desk, NOT_STARTED)
    pools = WorkerPools(messages=1, requests=1)
    finished = []

    def work(worker_ctx, seconds):
        eventlet.sleep(seconds)
        finished.append(worker_ctx.entrypoint.method_name)

    for method_name, seconds in (("slow", request_seconds), ("ping", message_seconds)):
        worker_ctx = WorkerContext(container, Desk(), entrypoint(container, method_name))
        pools.spawn(work, worker_ctx, seconds)
    assert pools.running() == 2
    pools.waitall()
    assert sorted(finished) == ["ping", "slow"] and pools.running() == 0
