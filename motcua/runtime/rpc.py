"""nameko's ``rpc`` entry point, but a refusal reaches the caller as a refusal, and its request queue
takes the project's queue type.

nameko sends an RPC caller the exception's class path and arguments; a caller rebuilds it only
if it knows the class. A service's own refusal classes (the desk's ``Incomplete``...) are sent as
their ``motcua.contracts.refusals`` base, so the gateway and every other service get the field, the reason
and the details back, not an opaque ``RemoteError``.

nameko declares a service's request queue ``rpc-<service>`` itself (``RpcConsumer.setup``: durable,
neither exclusive nor auto-delete) without arguments; with ``QUORUM_QUEUES`` it is a quorum queue.
"""
from __future__ import annotations

from functools import partial

from nameko.exceptions import ContainerBeingKilled
from nameko.rpc import Rpc as NamekoRpc, RpcConsumer as NamekoRpcConsumer

from motcua.contracts.refusals import Refusal, portable
from motcua.runtime import broker, idempotency
from motcua.runtime.db import register_write


class RpcConsumer(NamekoRpcConsumer):
    def setup(self):
        super().setup()
        # Read when the queue consumer (re)connects and declares it, after every setup.
        self.queue.queue_arguments = broker.queue_arguments(self.container.config)


class Rpc(NamekoRpc):
    rpc_consumer = RpcConsumer()

    def handle_message(self, body, message):
        """A call with an idempotency key (the gateway's writes): its stored result given again, or
        its commands joining one transaction that stores the result with the effect."""
        context_data = self.unpack_message_headers(message)
        step = idempotency.rpc_step(self.container, self.method_name, body, context_data)
        if step is None:
            return super().handle_message(body, message)
        if step.write is None:
            exc_info = (type(step.refusal), step.refusal, None) if step.refusal is not None else None
            return self.handle_result(message, None, step.result, exc_info)
        args, kwargs = body.get("args"), body.get("kwargs")
        self.check_signature(args, kwargs)
        try:
            worker_ctx = self.container.spawn_worker(self, args, kwargs, context_data=context_data,
                                                     handle_result=partial(self._handle_write, step, message))
        except ContainerBeingKilled:
            self.rpc_consumer.requeue_message(message)
            return
        register_write(worker_ctx, step.write)      # before it runs: spawn_worker only scheduled it

    def _handle_write(self, step, message, worker_ctx, result, exc_info):
        result, exc_info = idempotency.rpc_result(step, result, exc_info)
        return self.handle_result(message, worker_ctx, result, exc_info)

    def handle_result(self, message, worker_ctx, result, exc_info):
        if exc_info is not None and isinstance(exc_info[1], Refusal):
            refusal = portable(exc_info[1])
            exc_info = (type(refusal), refusal, exc_info[2])
        return super().handle_result(message, worker_ctx, result, exc_info)


rpc = Rpc.decorator
