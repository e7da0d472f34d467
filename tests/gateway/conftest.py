"""The gateway driven by a real grpcio client against real processes (catalog, intake, routing,
fees and the gateway) on real PostgreSQL and RabbitMQ. This session is not eventlet-patched:
grpcio cannot run in a patched process (see tests/conftest.py)."""
import socket

import pytest
from nameko.testing.utils import find_free_port
from sqlalchemy import text

from tests.e2e.conftest import (ServiceProcess, amqp, catalog_process, clock, process_env, run_cli,  # noqa: F401
                                vhost)

WARD_3, WARD_5 = "000.03.20.H29", "000.05.20.H29"
LAND_REGISTRY, TAX = "000.41.20.H29", "000.42.20.H29"


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


@pytest.fixture(scope="module")
def stack(process_env, catalog_process, engine, clock, tmp_path_factory):
    """The services a unit system reaches through the gateway, and the gateway; time set by ``clock``."""
    truncate(engine, *PLATFORM_TABLES)
    logs = tmp_path_factory.mktemp("stack")
    env = {**process_env, "CLOCK_FILE": str(clock.path)}
    clock("2026-03-02T09:00:00+07:00")
    services = {name: ServiceProcess(name, env, logs).start() for name in ("intake", "routing", "fees")}
    gateway = Gateway(env, logs).start()
    services["gateway"] = gateway
    yield services
    for service in services.values():
        service.stop()


@pytest.fixture(scope="module")
def token(stack, process_env):
    """``token(unit)``: a new token for the unit, issued with ``motcua gateway token issue``."""
    def issue(unit: str, label: str = "test") -> str:
        return run_cli(["gateway", "token", "issue", unit, "--label", label], process_env).stdout.strip()
    return issue
