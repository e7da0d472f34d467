"""The service container: desk requests and messages get worker pools of their own.

nameko runs every worker of a service on one pool of ``max_workers``. Under load the desks'
HTTP requests (each in its own green thread, all waiting for a slot) then starve the one
green thread that hands out events and RPC calls: the throughput benchmark saw routing take
13 s to hear of a received dossier while the desks polled it for that very dossier. Here HTTP
requests run on a pool of ``HTTP_MAX_WORKERS`` (default ``max_workers``) and everything else
(events, RPC, timers) on the pool of ``max_workers``, whose size is also the broker's prefetch.
``/metrics`` and ``/health`` have a small pool of their own: a health check that waits behind the
desks' requests would time out and get a busy service restarted.
"""
from __future__ import annotations

from eventlet import GreenPool
from kombu import Queue
from nameko.containers import ServiceContainer
from nameko.web.handlers import HttpRequestHandler

from motcua.runtime import broker
from motcua.runtime.observability import PLATFORM_ENDPOINTS

CONTAINER_CLASS_PATH = "motcua.runtime.container.PlatformContainer"    # as the services' config.yml name it
PLATFORM_WORKERS = 4


class WorkerPools:
    """Stands in for the container's single ``GreenPool`` (nameko uses ``spawn`` and ``waitall``)."""

    def __init__(self, messages: int, requests: int, platform: int = PLATFORM_WORKERS):
        self.messages = GreenPool(size=messages)
        self.requests = GreenPool(size=requests)
        self.platform = GreenPool(size=platform)

    def pool_for(self, entrypoint) -> GreenPool:
        if not isinstance(entrypoint, HttpRequestHandler):
            return self.messages
        return self.platform if entrypoint.method_name in PLATFORM_ENDPOINTS else self.requests

    def spawn(self, run_worker, worker_ctx, *args):
        return self.pool_for(worker_ctx.entrypoint).spawn(run_worker, worker_ctx, *args)

    def waitall(self) -> None:
        for pool in (self.requests, self.platform, self.messages):
            pool.waitall()

    def running(self) -> int:
        return self.requests.running() + self.platform.running() + self.messages.running()


class PlatformContainer(ServiceContainer):
    def __init__(self, service_cls, config):
        super().__init__(service_cls, config)
        requests = int(config.get("HTTP_MAX_WORKERS") or self.max_workers)
        self._worker_pool = WorkerPools(messages=self.max_workers, requests=requests)

    def start(self):
        """nameko's ``start`` (every extension set up, then started), with the queue types checked
        in between, once every queue is known and before any consumer declares one."""
        self.started = True
        self.extensions.all.setup()
        if broker.quorum_queues(self.config):
            queues = [ext.queue for ext in self.extensions if isinstance(getattr(ext, "queue", None), Queue)]
            broker.check_queue_types(broker.amqp_uri(self.config), queues)
        self.extensions.all.start()
