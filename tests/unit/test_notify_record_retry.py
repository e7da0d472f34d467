"""A message the provider accepted is recorded as sent even if the database is out of reach for a
moment (a failover): tried again, not left to go out a second time after its lease."""
from types import SimpleNamespace

import pytest
from sqlalchemy import exc as sa_exc

from services.notify import dispatch
from services.notify.dispatch import Dispatcher


def dispatcher(outcomes: list) -> tuple[Dispatcher, list]:
    d = Dispatcher.__new__(Dispatcher)          # no container: only the recording is exercised
    d.running = True
    calls = []

    def record(message, provider_id, seconds):
        calls.append(message)
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    d._record_sent = record
    return d, calls


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(dispatch.eventlet, "sleep", lambda seconds: None)


M1 = SimpleNamespace(id=1)


def gone():
    return sa_exc.OperationalError("UPDATE", {}, Exception("server closed the connection unexpectedly"))


def test_recorded_once_the_database_is_back():
    d, calls = dispatcher([gone(), gone(), None])
    assert d._record_sent_retrying(M1, "provider-1", 0.1) is True
    assert calls == [M1, M1, M1]


def test_a_bug_is_not_tried_again():
    d, calls = dispatcher([KeyError("state")])
    assert d._record_sent_retrying(M1, "provider-1", 0.1) is False
    assert calls == [M1]


def test_left_to_its_lease_when_the_database_stays_away(monkeypatch):
    monkeypatch.setattr(dispatch, "RECORD_RETRY_SECONDS", 0.0)
    d, calls = dispatcher([gone(), None])
    assert d._record_sent_retrying(M1, "provider-1", 0.1) is False
    assert calls == [M1]
