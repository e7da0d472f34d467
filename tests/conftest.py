"""Test set-up: eventlet first (nameko's pytest plugin no longer patches), then real
PostgreSQL and RabbitMQ. Each test that needs the broker gets its own RabbitMQ vhost
(nameko's ``rabbit_config``); the database is ``motcua_test``, migrated from empty once.

The gateway's tests (``tests/gateway``) drive it with a real grpcio client, which cannot run
in an eventlet-patched process: they run in a second, unpatched pytest session
(``MOTCUA_TESTS_UNPATCHED=1 pytest tests/gateway``, as ``make test`` does), and each session
collects only its own tests."""
import os

import eventlet

UNPATCHED = os.environ.get("MOTCUA_TESTS_UNPATCHED") == "1"
if not UNPATCHED:
    eventlet.monkey_patch()
collect_ignore = ["unit", "integration", "e2e"] if UNPATCHED else ["gateway"]

import sys  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from kombu import Connection, Queue  # noqa: E402
from nameko.testing.utils import find_free_port  # noqa: E402
from sqlalchemy import text  # noqa: E402

from motcua.runtime import broker  # noqa: E402
from apps.registry import SERVICES  # noqa: E402
from motcua.runtime.db import make_engine  # noqa: E402
from motcua.runtime.migrations import upgrade  # noqa: E402
from motcua.runtime.pii import new_settings  # noqa: E402
from tests.fakes import oidc_provider  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# The personal-data keys of every service under test (in-process and real processes): one set per
# session, so what one service seals (intake's events) the others open.
PII_SETTINGS = new_settings("t1")
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL",
                                   "postgresql+psycopg2://motcua@127.0.0.1:5432/motcua_test")


@pytest.fixture(scope="session")
def database_url():
    """The test database, every service's schema dropped and migrated again from empty."""
    engine = make_engine(TEST_DATABASE_URL, pool_size=1)
    with engine.begin() as connection:
        for name in SERVICES:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    engine.dispose()
    for spec in SERVICES.values():
        upgrade(spec.directory / "migrations", TEST_DATABASE_URL)
    return TEST_DATABASE_URL


@pytest.fixture(scope="session")
def engine(database_url):
    engine = make_engine(database_url, pool_size=60)
    yield engine
    engine.dispose()


@pytest.fixture
def service_config(rabbit_config, database_url):
    """A nameko config for a service under test: its own vhost, the test database, a free port;
    officials signed in by the session's OpenID provider (tests/fakes/officials.py)."""
    return {**rabbit_config, "DATABASE_URL": database_url, "OUTBOX_POLL_SECONDS": 0.2,
            "WEB_SERVER_ADDRESS": f"127.0.0.1:{find_free_port()}", **PII_SETTINGS,
            **oidc_provider.provider().settings()}


class EventTap:
    """A queue bound to the events exchange in the test's vhost, to see what was published."""

    def __init__(self, amqp_uri: str, routing_key: str = "#"):
        self.connection = Connection(amqp_uri)
        self.queue = Queue(f"tap-{uuid.uuid4()}", exchange=broker.events_exchange, routing_key=routing_key,
                           durable=False, auto_delete=False)
        channel = self.connection.default_channel
        broker.declare_topology(channel)
        self.queue(channel).declare()

    def drain(self, expect: int = 0, timeout: float = 5.0, settle: float = 0.5) -> list[dict]:
        """Messages published so far; waits for ``expect`` of them, then ``settle`` more seconds."""
        import time
        got, deadline = [], time.monotonic() + timeout
        bound = self.queue(self.connection.default_channel)
        quiet_until = None
        while time.monotonic() < deadline:
            message = bound.get(no_ack=True)
            if message is not None:
                got.append(message.decode())
                continue
            if len(got) >= expect:
                quiet_until = quiet_until or time.monotonic() + settle
                if time.monotonic() >= quiet_until:
                    break
            eventlet.sleep(0.05)
        return got

    def close(self):
        self.connection.release()


@pytest.fixture
def event_tap(rabbit_config):
    taps = []

    def make(routing_key: str = "#") -> EventTap:
        tap = EventTap(rabbit_config["AMQP_URI"], routing_key)
        taps.append(tap)
        return tap

    yield make
    for tap in taps:
        tap.close()


def dead_letters(amqp_uri: str, timeout: float = 5.0, expect: int = 1) -> list:
    """Messages in the dead-letter queue of the vhost (waits for ``expect``)."""
    import time
    got, deadline = [], time.monotonic() + timeout
    with Connection(amqp_uri) as connection:
        channel = connection.default_channel
        broker.declare_topology(channel)
        queue = broker.dead_letter_queue(channel)
        while time.monotonic() < deadline and len(got) < expect:
            message = queue.get(no_ack=True)
            if message is None:
                eventlet.sleep(0.05)
                continue
            got.append(message)
    return got


@pytest.fixture
def cli_env(database_url, rabbit_config):
    """Environment for real processes of the CLI and the services."""
    return {**os.environ, "DATABASE_URL": database_url, "AMQP_URI": rabbit_config["AMQP_URI"],
            "LOG_FORMAT": "json", "PYTHONPATH": str(ROOT), **PII_SETTINGS}


@pytest.fixture
def motcua_cmd():
    return [sys.executable, "-m", "apps.cli"]
