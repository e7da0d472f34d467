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

from nameko.rpc import Rpc as NamekoRpc, RpcConsumer as NamekoRpcConsumer

from motcua.contracts.refusals import Refusal, portable
from motcua.runtime import broker


class RpcConsumer(NamekoRpcConsumer):
    def setup(self):
        super().setup()
        # Read when the queue consumer (re)connects and declares it, after every setup.
        self.queue.queue_arguments = broker.queue_arguments(self.container.config)


class Rpc(NamekoRpc):
    rpc_consumer = RpcConsumer()

    def handle_result(self, message, worker_ctx, result, exc_info):
        if exc_info is not None and isinstance(exc_info[1], Refusal):
            refusal = portable(exc_info[1])
            exc_info = (type(refusal), refusal, exc_info[2])
        return super().handle_result(message, worker_ctx, result, exc_info)


rpc = Rpc.decorator
