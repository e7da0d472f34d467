"""Several nameko services in one process: ``motcua run catalog intake ...`` and ``motcua up
--one-process``, and the demo's stack.

Each service keeps what it has as a process of its own: its service class, its own configuration
(``services/<name>/config.yml``), its container with its worker pools, its HTTP address, broker
connection, database engine (its own schema) and outbox relay. They share the process: one
eventlet hub, one interpreter, one prometheus_client registry. The gRPC gateway never joins them
(grpcio cannot run in an eventlet-patched process).

``/metrics``: the registry is the process's, so without care every service's port would show every
service's series, and Prometheus scraping the five ports would count each series five times. Here
each port shows what that service's process would have shown: the series labelled with its
``service``, the families its own modules (``services/<name>/``) and its database gauges define;
the rest (``process_*``, ``python_*``: the one process's) on the first service's port only.
"""
from __future__ import annotations

import signal
import sys
import time
from importlib import import_module

from apps.registry import SERVICES, ServiceSpec

STOP_SECONDS = 20.0     # within ``motcua up``'s grace (MOTCUA_STOP_GRACE_SECONDS, 30) before it kills


def service_class(spec: ServiceSpec) -> type:
    """The nameko service class of a built service."""
    return next(cls for cls in vars(import_module(spec.module)).values()
                if isinstance(cls, type) and getattr(cls, "name", None) == spec.name)


# --- /metrics per service on a shared registry -----------------------------------------------

def _family_names(collector) -> list[str]:
    return [family.name for family in collector.describe()]


def metric_owners(names: list[str]) -> tuple[dict[str, set], set]:
    """({service: families without a ``service`` label that it defines}, families with one).

    A family is a service's when one of its modules (``services.<name>`` and below) holds it as a
    module-level metric, or its class declares it as a ``DatabaseGauge``."""
    from prometheus_client.metrics import MetricWrapperBase

    from motcua.runtime.observability import DatabaseGauge

    owned: dict[str, set] = {name: set() for name in names}
    labelled: set = set()
    for module_name, module in list(sys.modules.items()):
        if not module_name.startswith(("services.", "motcua.")):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, MetricWrapperBase) and "service" in value._labelnames:
                labelled.update(_family_names(value))
    for name in names:
        prefix = f"services.{name}"
        for module_name, module in list(sys.modules.items()):
            if module_name != prefix and not module_name.startswith(prefix + "."):
                continue
            for value in list(vars(module).values()):
                if isinstance(value, MetricWrapperBase) and "service" not in value._labelnames:
                    owned[name].update(_family_names(value))
        for cls in service_class(SERVICES[name]).__mro__:
            owned[name].update(value.name for value in vars(cls).values() if isinstance(value, DatabaseGauge))
    return owned, labelled


class ServiceMetrics:
    """The part of the process's registry that belongs to one service (a registry for
    ``generate_latest``)."""

    def __init__(self, service: str, owned: dict[str, set], labelled: set, keeps_the_rest: bool):
        self.service, self.owned, self.labelled, self.keeps_the_rest = service, owned, labelled, keeps_the_rest
        self.others = set().union(*(families for name, families in owned.items() if name != service))

    def collect(self):
        from prometheus_client import REGISTRY
        for family in REGISTRY.collect():
            if family.name in self.labelled or any("service" in sample.labels for sample in family.samples):
                family.samples = [s for s in family.samples if s.labels.get("service") == self.service]
                yield family
            elif family.name in self.owned[self.service]:
                yield family
            elif family.name not in self.others and self.keeps_the_rest:
                yield family


def with_own_metrics(service_cls: type, view: ServiceMetrics) -> type:
    """The service class with a ``/metrics`` that shows only ``view``."""
    from nameko.web.handlers import http
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from werkzeug.wrappers import Response

    class Together(service_cls):
        @http("GET", "/metrics")
        def metrics(self, request):
            return Response(generate_latest(view), mimetype=CONTENT_TYPE_LATEST)

    Together.__name__ = Together.__qualname__ = service_cls.__name__
    Together.__module__ = service_cls.__module__
    return Together


# --- start, watch, stop ------------------------------------------------------------------------

class Together:
    """Containers of several services in this (eventlet-patched) process."""

    def __init__(self, names: list[str], environ=None, overrides: dict | None = None):
        for name in names:
            if not SERVICES[name].nameko:
                raise ValueError(f"{name} cannot share a process with nameko services (grpcio under eventlet)")
        self.names, self.environ, self.overrides = list(names), environ, dict(overrides or {})
        self.containers: dict = {}

    def config(self, name: str) -> dict:
        from motcua.runtime.config import load_config
        return {**load_config(SERVICES[name].config_file, self.environ), **self.overrides}

    def start(self, configs: dict[str, dict] | None = None) -> None:
        """Start every container, in the registry's order; ``configs`` replaces each one's config."""
        from nameko.containers import get_container_cls
        classes = {name: service_class(SERVICES[name]) for name in self.names}
        owned, labelled = metric_owners(self.names)
        try:
            for index, name in enumerate(self.names):
                config = (configs or {}).get(name) or self.config(name)
                view = ServiceMetrics(name, owned, labelled, keeps_the_rest=index == 0)
                container = get_container_cls(config)(with_own_metrics(classes[name], view), config)
                container.start()
                self.containers[name] = container
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """Stop every container at once (running workers finish); kill what has not stopped in time."""
        import eventlet
        stoppers = {name: eventlet.spawn(container.stop) for name, container in self.containers.items()}
        deadline = time.monotonic() + timeout
        for name, stopper in stoppers.items():
            try:
                with eventlet.Timeout(max(0.1, deadline - time.monotonic())):
                    stopper.wait()
            except BaseException:        # stuck or failed: killed, never left behind
                stopper.kill()
                self.containers[name].kill()
        self.containers.clear()

    def died(self) -> list[str]:
        """The services whose container has stopped on its own (an error)."""
        return [name for name, container in self.containers.items() if container._died.ready()]


def run(names: list[str]) -> int:
    """``motcua run A B ...``: every named service in this process until SIGTERM or Ctrl-C (exit 0),
    or until one of them fails (the others are stopped, exit 1)."""
    import eventlet

    stop_asked = []

    def asked(*_):
        stop_asked.append(True)      # a flag only: the main loop stops the containers

    together = Together(names)
    signal.signal(signal.SIGTERM, asked)
    signal.signal(signal.SIGINT, asked)
    together.start()
    print(f"motcua run: {', '.join(names)} in one process", file=sys.stderr, flush=True)
    return_code = 0
    while not stop_asked:
        eventlet.sleep(0.2)
        failed = together.died()
        if failed:
            print(f"motcua run: {', '.join(failed)} stopped; stopping the others", file=sys.stderr, flush=True)
            return_code = 1
            break
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    together.stop()
    return return_code
