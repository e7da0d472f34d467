"""The portal sync's rules and sending loop (services/portal) against fakes: the mapping of a status
change to the portal's message, the order per dossier, the backoff, the portal's 429, the rate
limit, the queue's de-duplication and the reconciliation's differences. The portal is a real local
HTTP server (tests/fakes/national_portal.py); the queue and the clocks are in memory."""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
import yaml

from motcua.contracts.events import new_event
from motcua.runtime.ratelimit import RateLimiter
from services.portal.client import PortalClient
from services.portal.domain import (
    DEFAULT_FIELDS_FILE,
    MappingInvalid,
    Policy,
    SyncRow,
    backoff,
    differences,
    held_keys,
    load_mapping,
    next_in_order,
    period,
)
from services.portal.handlers import handle
from services.portal.sync import Syncer
from tests.fakes.national_portal import FakePortal

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)            # 09:00 in Hồ Chí Minh City
WARD_5 = "000.05.20.H29"
FIELDS = load_mapping()


def row(code="000.05.20.H29-260302-0001", seq=1, status=2, **overrides) -> SyncRow:
    values = dict(id=None, code=code, seq=seq, status=status, previous_status=None, channel=1, unit=WARD_5,
                  procedure_code="1.004873", handling_agency=WARD_5, changed_at=T0 + timedelta(minutes=seq),
                  next_attempt_at=T0)
    return SyncRow(**{**values, **overrides})


# --- the mapping ---------------------------------------------------------------------------

def test_a_status_change_is_written_with_the_configured_field_names():
    message = row(seq=3, status=9, channel=2).message(FIELDS)
    assert message["service"] == "DongBoHoSoMC" and message["isUpdating"] is True
    [record] = message["data"]
    assert record == {"MaHoSo": "000.05.20.H29-260302-0001", "MaTTHC": "1.004873", "KenhThucHien": "2",
                      "TrangThaiHoSo": "9", "ThoiDiemXuLy": "20260302090300", "DonViXuLy": WARD_5,
                      "MaDonVi": WARD_5, "SoThuTuTrangThai": 3, "MaDongBo": "000.05.20.H29-260302-0001:3"}


def test_every_portal_field_of_the_shipped_file_is_marked_verify():
    """No field is presented as confirmed: the portal's own rules were not found (see the file)."""
    lines = [line for line in DEFAULT_FIELDS_FILE.read_text(encoding="utf-8").splitlines()
             if ":" in line and not line.lstrip().startswith("#") and line.startswith("    ")]
    assert lines and all("[verify]" in line for line in lines), [line for line in lines if "[verify]" not in line]


def test_a_renamed_field_is_data(tmp_path):
    data = yaml.safe_load(DEFAULT_FIELDS_FILE.read_text(encoding="utf-8"))
    data["send"]["fields"]["status"] = "MaTrangThai"
    path = tmp_path / "fields.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert row().message(load_mapping(path))["data"][0]["MaTrangThai"] == "2"


@pytest.mark.parametrize("change, message", [
    (lambda d: d["send"]["fields"].pop("code"), "send.fields.code"),
    (lambda d: d["send"]["fields"].update(unit="MaHoSo"), "twice"),
    (lambda d: d.pop("query"), "cannot be read"),
])
def test_a_broken_fields_file_is_refused_naming_what(tmp_path, change, message):
    data = yaml.safe_load(DEFAULT_FIELDS_FILE.read_text(encoding="utf-8"))
    change(data)
    path = tmp_path / "fields.yml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(MappingInvalid, match=message):
        load_mapping(path)


# --- order and backoff ---------------------------------------------------------------------

def test_only_a_dossiers_first_unsent_change_goes_and_only_after_the_one_before_it():
    a1, a2, a3 = row(seq=1), row(seq=2, status=4), row(seq=3, status=9)
    b2 = row(code="B", seq=2, status=4)                      # B's first change has not arrived yet
    assert next_in_order([a3, a2, a1, b2]) == [a1]
    a1.state = "sent"
    assert next_in_order([a1, a2, a3, b2]) == [a2]
    b1 = row(code="B", seq=1)
    b1.state = "sent"
    assert next_in_order([a1, a2, a3, b1, b2]) == [a2, b2]


def test_backoff_doubles_up_to_its_cap():
    assert [backoff(n, 5, 60) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]


def test_a_failure_is_never_the_end_a_rejection_waits_longest_a_429_waits_what_it_said():
    policy = Policy(backoff_seconds=5, backoff_max_seconds=300)
    r = row(attempts=3)
    [failed] = r.failed("unavailable", "503", T0, policy)
    assert r.state == "pending" and r.next_attempt_at == T0 + timedelta(seconds=20) and failed.retry_in == 20
    r.failed("rejected", "400 bad field", T0, policy)
    assert r.next_attempt_at == T0 + timedelta(seconds=300) and r.last_error.startswith("rejected")
    r.failed("throttled", "429", T0, policy, retry_after=7)
    assert r.next_attempt_at == T0 + timedelta(seconds=7)


# --- the queue: one row per status change --------------------------------------------------

class FakeQueue:
    """The sync queue in memory: the handlers' unit of work, ``store.claim``'s rule, the outcomes."""

    def __init__(self):
        self.rows: list[SyncRow] = []
        self.inbox: set[str] = set()

    # the unit of work of dossier.status_changed (see _uow)
    def first_time(self, event) -> bool:
        if event.id in self.inbox:
            return False
        self.inbox.add(event.id)
        return True

    def add(self, new: SyncRow) -> bool:
        if any((r.code, r.seq) == (new.code, new.seq) for r in self.rows):
            return False
        self.rows.append(replace(new, id=len(self.rows) + 1))
        return True

    def commit(self) -> None:
        pass

    # the sender's
    def claim(self, now, lease_until):
        due = [r for r in next_in_order(self.rows) if r.next_attempt_at <= now]
        for r in due:
            r.attempts += 1
            r.next_attempt_at = lease_until
        return due

    def save_outcome(self, r) -> None:
        pass


def status_event(code, seq, status, minutes=0):
    return new_event("dossier.status_changed", {
        "code": code, "seq": seq, "status": status, "previous_status": None, "channel": 1,
        "procedure_code": "1.004873", "handling_agency": WARD_5,
        "changed_at": (T0 + timedelta(minutes=minutes)).isoformat()}, WARD_5,
        occurred_at=T0 + timedelta(minutes=minutes))


def test_a_change_told_twice_is_queued_once():
    queue = FakeQueue()
    first = status_event("A", 1, 2)
    handle("dossier.status_changed", [first, status_event("A", 2, 4, 5)], _uow(queue))
    # the same event redelivered, and another event telling the same change (A, seq 1)
    handle("dossier.status_changed", [first, status_event("A", 1, 2)], _uow(queue))
    assert [(r.code, r.seq, r.status) for r in queue.rows] == [("A", 1, 2), ("A", 2, 4)]


def _uow(queue: FakeQueue):
    """The handlers' unit of work over the fake queue (``uow.rows.add``, ``uow.first_time``)."""
    class U:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        first_time = staticmethod(queue.first_time)
        rows = type("Rows", (), {"add": staticmethod(queue.add)})
        commit = staticmethod(queue.commit)
    return U()


# --- the sending loop against a real (local) portal ----------------------------------------

class Clocks:
    """The service's clock and the monotonic one, moved by the sender's own sleeps."""

    def __init__(self):
        self.instant, self.mono, self.slept = T0 + timedelta(hours=1), 1000.0, 0.0

    def now(self):
        return self.instant

    def monotonic(self):
        return self.mono

    def sleep(self, seconds):
        self.advance(seconds)
        self.slept += seconds

    def advance(self, seconds):
        self.instant += timedelta(seconds=seconds)
        self.mono += seconds


@pytest.fixture
def portal():
    fake = FakePortal().start()
    yield fake
    fake.stop()


POLICY = Policy(2, 16, 60)


def syncer(queue, portal, clocks, rate_per_second=1000.0, policy=POLICY):
    limiter = RateLimiter(per_minute=rate_per_second * 60, burst=1, clock=clocks.monotonic)
    return Syncer(claim=queue.claim, client=PortalClient(portal.url, FIELDS, timeout=5), outcomes=queue,
                  now=clocks.now, policy=policy, limiter=limiter, sleep=clocks.sleep, monotonic=clocks.monotonic)


def run_until_sent(queue, sender, clocks, rounds=200):
    for _ in range(rounds):
        if all(r.state == "sent" for r in queue.rows):
            return
        sender.round(FIELDS)
        clocks.advance(1)
    raise AssertionError(f"not all sent: {[(r.code, r.seq, r.state, r.last_error) for r in queue.rows]}")


def test_an_outage_delays_the_changes_with_growing_waits_and_they_arrive_in_order(portal):
    queue, clocks = FakeQueue(), Clocks()
    for code in ("A", "B"):
        for seq, status in enumerate((2, 4, 9, 10), start=1):
            queue.add(row(code=code, seq=seq, status=status))
    sender = syncer(queue, portal, clocks)
    sender.round(FIELDS)                                         # A1 and B1 accepted
    portal.state.control({"fail_for": 3600, "status": 503})    # the portal's clock is real: an hour
    waits, a2 = [], queue.rows[1]
    for _ in range(5):
        clocks.instant = max(r.next_attempt_at for r in queue.rows if r.seq == 2)    # both due
        sender.round(FIELDS)
        waits.append(round((a2.next_attempt_at - clocks.instant).total_seconds()))
    assert waits == [2, 4, 8, 16, 16]                           # doubling, capped
    assert all(r.state == "pending" for r in queue.rows if r.seq > 1)
    portal.state.control({"fail_for": 0})
    clocks.instant += timedelta(seconds=16)
    run_until_sent(queue, sender, clocks)
    accepted = [a["record"] for a in portal.state.attempts if a["answer"] == 200]
    for code in ("A", "B"):
        assert [r["TrangThaiHoSo"] for r in accepted if r["MaHoSo"] == code] == ["2", "4", "9", "10"]
    failures = [a for a in portal.state.attempts if a["answer"] == 503]
    assert len(failures) == 10 and {a["record"]["TrangThaiHoSo"] for a in failures} == {"4"}


def test_connection_refused_is_retried(portal):
    queue, clocks = FakeQueue(), Clocks()
    queue.add(row())
    sender = syncer(queue, portal, clocks)
    port = portal.port
    portal.stop()
    sender.round(FIELDS)
    assert queue.rows[0].state == "pending" and queue.rows[0].last_error.startswith("unreachable")
    again = FakePortal(port).start()
    try:
        clocks.advance(2)
        run_until_sent(queue, sender, clocks)
        assert list(again.state.held) == ["000.05.20.H29-260302-0001:1"]
    finally:
        again.stop()


def test_a_429_pauses_all_sending_for_its_retry_after(portal):
    queue, clocks = FakeQueue(), Clocks()
    for code in ("A", "B", "C"):
        queue.add(row(code=code))
    portal.state.control({"throttle_next": 1, "retry_after": 30})
    sender = syncer(queue, portal, clocks)
    sender.round(FIELDS)
    # A was throttled; B waited the 30 s the portal asked before it was sent, then C.
    assert clocks.slept >= 30
    assert [a["answer"] for a in portal.state.attempts] == [429, 200, 200]
    assert queue.rows[0].next_attempt_at - queue.rows[0].changed_at > timedelta(seconds=30)
    run_until_sent(queue, sender, clocks)
    assert len(portal.state.held) == 3


def test_the_configured_rate_is_honoured(portal):
    queue, clocks = FakeQueue(), Clocks()
    for n in range(10):
        queue.add(row(code=f"D{n}"))
    sender = syncer(queue, portal, clocks, rate_per_second=2)
    sender.round(FIELDS)
    assert len(portal.state.held) == 10 and clocks.slept == pytest.approx(4.5, abs=0.01)   # 9 waits of 0.5 s


def test_a_repeat_after_a_crash_carries_the_same_key_and_the_portal_keeps_one(portal):
    queue, clocks = FakeQueue(), Clocks()
    queue.add(row())
    sender = syncer(queue, portal, clocks)
    sender.round(FIELDS)
    queue.rows[0].state = "pending"                            # as if the record was lost in a crash
    queue.rows[0].next_attempt_at = clocks.now()
    sender.round(FIELDS)
    assert [a.get("duplicate") for a in portal.state.attempts] == [False, True]
    assert len(portal.state.held) == 1


# --- reconciliation ------------------------------------------------------------------------

def test_differences_by_key_and_by_code_and_status():
    sent = [row(seq=1, status=2), row(seq=2, status=4), row(seq=3, status=9), row(code="B", seq=1)]
    held = held_keys([{"MaDongBo": "000.05.20.H29-260302-0001:1"},
                      {"MaHoSo": "000.05.20.H29-260302-0001", "TrangThaiHoSo": "9"},   # no key: by status
                      {"MaDongBo": "B:1"}], FIELDS)
    assert [(r.code, r.seq) for r in differences(sent, held)] == [("000.05.20.H29-260302-0001", 2)]
    assert differences(sent, Counter()) == sorted(sent, key=lambda r: (r.code, r.seq))


def test_a_period_is_local_days():
    start, end = period(date(2026, 3, 2), date(2026, 3, 2))
    assert start.isoformat() == "2026-03-02T00:00:00+07:00" and (end - start) == timedelta(days=1)
    with pytest.raises(ValueError):
        period(date(2026, 3, 3), date(2026, 3, 2))


def test_the_portal_is_asked_for_a_period_with_the_configured_names(portal):
    queue, clocks = FakeQueue(), Clocks()
    queue.add(row())
    queue.add(row(code="OTHER", changed_at=T0 + timedelta(days=3)))
    sender = syncer(queue, portal, clocks)
    run_until_sent(queue, sender, clocks)
    held = PortalClient(portal.url, FIELDS).held(date(2026, 3, 2), date(2026, 3, 2))
    assert [r["MaHoSo"] for r in held] == ["000.05.20.H29-260302-0001"]
