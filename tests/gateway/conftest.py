"""The gateway driven by a real grpcio client against real processes (catalog, intake, routing,
fees and the gateway) on real PostgreSQL and RabbitMQ. This session is not eventlet-patched:
grpcio cannot run in a patched process (see tests/conftest.py)."""
import socket

import pytest
from nameko.testing.utils import find_free_port
from sqlalchemy import text


from tests.fakes.unit_keys import KEYS_FROM, UnitKeys  # noqa: F401
from tests.e2e.conftest import (ServiceProcess, amqp, catalog_process, clock, process_env, run_cli,  # noqa: F401
                                vhost)

WARD_3, WARD_5 = "000.03.20.H29", "000.05.20.H29"
LAND_REGISTRY, TAX = "000.41.20.H29", "000.42.20.H29"
DISTRICT = "000.00.20.H29"


def pytest_collection_modifyitems(items):
    if socket.socket.__module__.startswith("eventlet"):
        raise pytest.UsageError("tests/gateway must run unpatched: MOTCUA_TESTS_UNPATCHED=1 pytest tests/gateway")


def truncate(engine, *tables: str) -> None:
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {', '.join(tables)} CASCADE"))


PLATFORM_TABLES = (
    "intake.dossiers", "intake.dossier_history", "intake.tracking_book_counters", "intake.dossier_code_counters",
    "intake.outbox", "intake.processed_events", "routing.workflows", "routing.steps", "routing.handovers",
    "routing.actions", "routing.outbox", "routing.processed_events", "gateway.credentials", "gateway.audit_log",
    "gateway.unit_events", "gateway.feed", "gateway.feed_heads", "fees.accounts", "fees.charges", "fees.payments",
    "fees.refunds", "fees.receipts", "fees.receipt_counters", "fees.outbox", "fees.processed_events")


class Gateway(ServiceProcess):
    """``motcua run gateway`` on free ports (gRPC and HTTP)."""

    def __init__(self, env: dict, log_dir, **config):
        self.grpc_port = find_free_port()
        super().__init__("gateway", {**env, "GATEWAY_GRPC_ADDRESS": f"127.0.0.1:{self.grpc_port}",
                                     "GATEWAY_FEED_POLL_SECONDS": "0.1",
                                     **{f"GATEWAY_{k.upper()}": str(v) for k, v in config.items()}}, log_dir)
        self.target = f"127.0.0.1:{self.grpc_port}"


class Token(str):
    """A unit's token, knowing its unit and signing key: ``client_for`` signs with them."""
    unit: str
    key_id: str | None = None
    signing_key = None


@pytest.fixture(scope="module")
def unit_keys(tmp_path_factory) -> UnitKeys:
    return UnitKeys(tmp_path_factory.mktemp("keys"), (DISTRICT, WARD_3, WARD_5, LAND_REGISTRY, TAX))


@pytest.fixture(scope="module")
def stack(process_env, catalog_process, engine, clock, tmp_path_factory, unit_keys):
    """The services a unit system reaches through the gateway, and the gateway; time set by ``clock``."""
    truncate(engine, *PLATFORM_TABLES)
    logs = tmp_path_factory.mktemp("stack")
    env = {**process_env, "CLOCK_FILE": str(clock.path), **unit_keys.env}
    clock("2026-03-02T09:00:00+07:00")
    services = {name: ServiceProcess(name, env, logs).start() for name in ("intake", "routing", "fees")}
    gateway = Gateway(env, logs).start()
    services["gateway"] = gateway
    yield services
    for service in services.values():
        service.stop()


@pytest.fixture(scope="module")
def token(stack, process_env, unit_keys):
    """``token(unit)``: a new token for the unit, issued with ``motcua gateway token issue``, which
    knows the unit's test key."""
    def issue(unit: str, label: str = "test") -> Token:
        issued = Token(run_cli(["gateway", "token", "issue", unit, "--label", label], process_env).stdout.strip())
        issued.unit, issued.key_id, issued.signing_key = unit, unit_keys.key_ids.get(unit), unit_keys.private.get(unit)
        return issued
    return issue
