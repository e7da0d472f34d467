"""Metrics, correlation ids and the platform's HTTP endpoints, for every service.

``Observability`` is one nameko dependency that, for every worker: carries the correlation
id (from nameko's context data, an ``X-Correlation-ID`` header, or a new one), binds it
into every log line, times the entry point and counts its outcome. ``PlatformService``
gives each service ``/metrics`` and ``/health`` on its HTTP port.
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any

import structlog
from kombu import Connection
from nameko.dependency_providers import Config
from nameko.extensions import DependencyProvider
from nameko.web.handlers import http
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from werkzeug.wrappers import Response

from motcua.runtime import broker, openapi
from motcua.runtime.clock import clock_from_config
from motcua.runtime.db import Database

CORRELATION_KEY = "correlation_id"
CORRELATION_HEADER = "X-Correlation-ID"

# Entry points answer in milliseconds to seconds; dossiers live for days (see the
# processing-time histograms of the services for those).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

ENTRYPOINT_SECONDS = Histogram(
    "motcua_entrypoint_duration_seconds", "Time a service entry point took to answer.",
    ["service", "entrypoint", "kind"], buckets=LATENCY_BUCKETS,
)
ENTRYPOINT_CALLS = Counter(
    "motcua_entrypoint_calls_total", "Calls of a service entry point by outcome (ok or error).",
    ["service", "entrypoint", "kind", "outcome"],
)
ENTRYPOINTS_IN_FLIGHT = Gauge(
    "motcua_entrypoints_in_flight", "Workers running now.", ["service"],
)

# The platform's own endpoints (Prometheus and health checks): not timed, and served on a pool of
# their own (motcua/runtime/container.py) so that a flood of desk requests cannot make them time out.
PLATFORM_ENDPOINTS = frozenset({"metrics", "health"})


_KINDS = {"HttpRequestHandler": "http", "Rpc": "rpc", "EventConsumer": "event", "Timer": "timer"}


def entrypoint_kind(entrypoint: Any) -> str:
    """By the nearest known class: a subclass (the platform's HTTP entry point with its 503) keeps
    its kind, so metric labels do not change with the class that implements them."""
    for cls in type(entrypoint).__mro__:
        if cls.__name__ in _KINDS:
            return _KINDS[cls.__name__]
    return type(entrypoint).__name__.lower()


class Observability(DependencyProvider):
    """Times, counts and correlates every worker of the service."""

    def worker_setup(self, worker_ctx) -> None:
        correlation_id = worker_ctx.data.get(CORRELATION_KEY)
        if not correlation_id and worker_ctx.args:
            request = worker_ctx.args[0]
            headers = getattr(request, "headers", None)
            if headers is not None:
                correlation_id = headers.get(CORRELATION_HEADER)
        correlation_id = (correlation_id or str(uuid.uuid4()))[:100]
        # Outgoing RPC calls and events of this worker carry it on.
        worker_ctx.data[CORRELATION_KEY] = correlation_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            service=worker_ctx.service_name,
            entrypoint=worker_ctx.entrypoint.method_name,
            correlation_id=correlation_id,
        )
        worker_ctx.data["_started"] = time.perf_counter()
        ENTRYPOINTS_IN_FLIGHT.labels(worker_ctx.service_name).inc()

    def worker_result(self, worker_ctx, result=None, exc_info=None) -> None:
        ENTRYPOINTS_IN_FLIGHT.labels(worker_ctx.service_name).dec()
        method = worker_ctx.entrypoint.method_name
        if method in PLATFORM_ENDPOINTS:
            return
        kind = entrypoint_kind(worker_ctx.entrypoint)
        elapsed = time.perf_counter() - worker_ctx.data.pop("_started", time.perf_counter())
        failed = exc_info is not None or (
            isinstance(result, Response) and result.status_code >= 500)
        ENTRYPOINT_SECONDS.labels(worker_ctx.service_name, method, kind).observe(elapsed)
        ENTRYPOINT_CALLS.labels(worker_ctx.service_name, method, kind, "error" if failed else "ok").inc()
        # Both outcomes exist from the first call, so that an error rate is 0, not "no data".
        ENTRYPOINT_CALLS.labels(worker_ctx.service_name, method, kind, "ok" if failed else "error")
        if exc_info is not None:
            structlog.get_logger("motcua.worker").error(
                "entrypoint failed", kind=kind, duration_s=round(elapsed, 4), exc_info=exc_info)

    def worker_teardown(self, worker_ctx) -> None:
        structlog.contextvars.clear_contextvars()

    def get_dependency(self, worker_ctx) -> str:
        """The worker's correlation id, for events it writes to the outbox."""
        return worker_ctx.data.get(CORRELATION_KEY, "")


class DatabaseGauge(DependencyProvider):
    """A gauge read from the database at each scrape, so that it is right whatever the number
    of replicas (each one reports the same figure: aggregate with ``max``, never ``sum``).

    ``query(session, now)`` returns rows of label values followed by the value; ``now`` is the
    service's clock (``motcua.runtime.clock``), so that a gauge like "overdue" follows a moved clock.
    """

    def __init__(self, name: str, documentation: str, labels: list[str], query):
        self.name, self.documentation, self.labels, self.query = name, documentation, labels, query

    def start(self) -> None:
        database = next(d for d in self.container.dependencies if isinstance(d, Database))
        self.sessions = database.sessions
        self.now = clock_from_config(self.container.config)
        try:
            REGISTRY.register(self)
        except ValueError:  # a twin container in the same process (tests) already reports it
            pass

    def stop(self) -> None:
        try:
            REGISTRY.unregister(self)
        except KeyError:
            pass

    kill = stop

    def describe(self):
        return [GaugeMetricFamily(self.name, self.documentation, labels=self.labels)]

    def collect(self):
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labels)
        with self.sessions() as session:
            for *labels, value in self.query(session, self.now()):
                family.add_metric([str(label) for label in labels], float(value))
        yield family


# --- HTTP helpers --------------------------------------------------------------------------

def json_response(data: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(data, ensure_ascii=False, default=str), status=status,
                    headers=headers, mimetype="application/json")


def error_response(status: int, message: str, field: str | None = None) -> Response:
    body: dict = {"error": message}
    if field:
        body["field"] = field
    return json_response(body, status=status)


def broker_reachable(amqp_uri: str, timeout: float = 2.0) -> None:
    """Reachable if one node of the list answers (kombu moves to the next at once, and pauses only
    after a round of them all)."""
    nodes = len(broker.node_uris(amqp_uri))
    with Connection(amqp_uri, connect_timeout=timeout) as connection:
        connection.ensure_connection(max_retries=nodes, timeout=timeout * nodes)


def health_report(service: str, ping_database, amqp_uri: str) -> dict:
    """``/health``'s answer: the database and the broker each ``ok`` or the error's class."""
    checks = {}
    for name, check in (("database", ping_database), ("broker", lambda: broker_reachable(amqp_uri))):
        try:
            check()
            checks[name] = "ok"
        except Exception as exc:  # any failure means unhealthy; say which
            checks[name] = f"error: {type(exc).__name__}"
    healthy = all(value == "ok" for value in checks.values())
    return {"status": "ok" if healthy else "unhealthy", "service": service, **checks}


class PlatformService:
    """Base of every service: a database, observability, /metrics and /health."""

    db = Database()
    config = Config()
    correlation_id = Observability()

    @http("GET", "/metrics")
    def metrics(self, request):
        return Response(generate_latest(REGISTRY), mimetype=CONTENT_TYPE_LATEST)

    @http("GET", "/openapi.json")
    def openapi(self, request):
        document = openapi.document(type(self))
        if document is None:
            return error_response(404, f"{self.name} has no OpenAPI document")
        return json_response(document)

    @http("GET", "/health")
    def health(self, request):
        body = health_report(self.name, self.db.ping, self.config["AMQP_URI"])
        return json_response(body, status=200 if body["status"] == "ok" else 503)
