"""Which handler errors put an event back (try again later) rather than dead-letter it."""
from nameko.exceptions import RemoteError
from sqlalchemy import exc as sa_exc

from motcua.runtime.inbox import transient


def test_the_database_or_broker_out_of_reach_is_transient_here_or_behind_an_rpc_call():
    assert transient(sa_exc.OperationalError("SELECT 1", {}, Exception("too many connections")))
    assert transient(ConnectionResetError())
    # The catalogue ran out of connections while routing asked it a question (throughput benchmark).
    assert transient(RemoteError("OperationalError", "FATAL: remaining connection slots are reserved"))
    assert transient(RemoteError("TimeoutError", "QueuePool limit reached"))


def test_a_refusal_or_a_bug_is_not_transient():
    assert not transient(ValueError("intake does not handle x"))
    assert not transient(RemoteError("Conflict", "status: cannot start step"))
    assert not transient(RemoteError("KeyError", "'code'"))
