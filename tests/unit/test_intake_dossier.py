"""The Dossier aggregate's rules as properties (hypothesis): one supplement request over any
sequence of actions, the 15:00 rule of same-day procedures, the result class on return."""
from __future__ import annotations

import copy
from datetime import date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from motcua.contracts.actors import Actor
from motcua.contracts.calendar import TZ, local_date
from motcua.contracts.refusals import Refusal
from motcua.contracts.vocabulary import Status
from services.intake import domain
from services.intake.dossier import TRANSITIONS, BookLine, Dossier
from tests.unit.intake_fakes import (
    CALENDAR,
    DOCUMENTS,
    JUSTICE,
    PROCEDURES,
    UNITS,
    WARD_5,
)

DESK = Actor("Trần Văn Bình", WARD_5)
AGENCY = Actor("Phạm Văn Cường", JUSTICE)
START = datetime(2026, 3, 2, 9, 0, tzinfo=TZ)
ASKED = [domain.Presented("Tờ khai có chữ ký", "original", 1)]


def submission(procedure_code="1.004873", channel="in_person") -> domain.Submission:
    applicant = domain.parse_applicant({"name": "Nguyễn Thị Lan", "id_number": "079203001234",
                                        "address": "12 Lê Đức Thọ", "phone": "0903123456"})
    return domain.Submission(UNITS[WARD_5], copy.deepcopy(PROCEDURES[procedure_code]), applicant, channel,
                             domain.parse_documents(DOCUMENTS), 1, {"pages": 1, "copies": 1}, [],
                             {"channels": ["sms"], "optional": True})


def received(now=START, procedure_code="1.004873") -> Dossier:
    return Dossier.receive_at_desk(f"{WARD_5}-260302-0001", submission(procedure_code), DESK, now, "ABCD-EFGH",
                                   CALENDAR, BookLine(2026, 1))


def submitted(now=START) -> Dossier:
    return Dossier.submit_online(f"{WARD_5}-260302-0001", submission(channel="online"), Actor("citizen"), now,
                                 "ABCD-EFGH")


# --- any sequence of actions ---------------------------------------------------------------------------

ACTIONS = ("accept", "refuse", "desk_supplement", "agency_supplement", "receive_supplement", "withdraw",
           "start_step", "request_obligation", "fees_charged", "fees_paid", "processed_done", "processed_stopped",
           "return", "apology")
# Half of the draws around the supplement, so that sequences reach a second request often.
actions = st.one_of(st.sampled_from(("accept", "desk_supplement", "agency_supplement", "receive_supplement")),
                    st.sampled_from(ACTIONS))


def act(dossier: Dossier, action: str, now: datetime) -> list:
    if action == "accept":
        return dossier.accept(DESK, now, CALENDAR, BookLine(2026, 2))
    if action == "refuse":
        return dossier.refuse(DESK, "Không đủ điều kiện", now)
    if action == "desk_supplement":
        return dossier.request_supplement(DESK, "Thiếu chữ ký", ASKED, now, desk_name="UBND Phường 5")
    if action == "agency_supplement":
        return dossier.agency_asks_supplement(AGENCY, "Thiếu chữ ký", ASKED, now, desk_name="UBND Phường 5",
                                              agency=UNITS[JUSTICE])
    if action == "receive_supplement":
        return dossier.receive_supplement(DESK, ASKED, now)
    if action == "withdraw":
        return dossier.withdraw(DESK, "Không còn nhu cầu", now)
    if action == "start_step":
        return dossier.start_step(AGENCY, 1, now, now)
    if action == "request_obligation":
        return dossier.request_obligation(AGENCY, "Thuế", now)
    if action in ("fees_charged", "fees_paid"):
        return dossier.fees_reported(action.replace("_", "."), {"amount": 10000}, now)
    if action.startswith("processed_"):
        return dossier.processed(AGENCY, action.removeprefix("processed_"), None, now, now)
    if action == "return":
        return dossier.return_result(DESK, "Nguyễn Thị Lan", now)
    return dossier.apology_issued(AGENCY, local_date(now) + timedelta(days=10), "Chậm", now)


@settings(max_examples=300, deadline=None)
@given(online=st.booleans(), steps=st.lists(st.tuples(actions, st.integers(1, 72)), max_size=25))
def test_property_one_supplement_request_whatever_happens(online, steps):
    dossier = submitted() if online else received()
    now, emitted, initial = START, [], list(dossier.events)
    for action, hours in steps:
        now += timedelta(hours=hours)
        before = (dossier.row(), list(dossier.history), list(dossier.events))
        try:
            events = act(dossier, action, now)
        except Refusal:
            # A refused action changes nothing at all.
            assert (dossier.row(), dossier.history, dossier.events) == before
            continue
        emitted.extend(events)
    requests = [e for e in emitted if e.type == "dossier.supplement_requested"]
    assert len(requests) <= 1
    assert len([h for h in dossier.history if h.action == "request_supplement"]) <= 1
    assert dossier.events == initial + emitted      # what the methods returned is what the dossier keeps
    # The history is one chain of statuses ending where the dossier is.
    for earlier, later in zip(dossier.history, dossier.history[1:]):
        assert later.status_from == earlier.status_to
    assert dossier.history[-1].status_to == dossier.status
    assert dossier.history[0].status_from is None
    assert dossier.history[0].status_to == (Status.SUBMITTED_ONLINE if online else Status.RECEIVED)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(actions, max_size=20), data=st.data())
def test_property_every_status_change_is_one_the_table_allows(steps, data):
    dossier = received()
    now = START
    for action in steps:
        now += timedelta(hours=data.draw(st.integers(1, 48)))
        status = dossier.status
        try:
            act(dossier, action, now)
        except Refusal:
            continue
        if dossier.status == status:
            continue
        moved = {"accept": "accept", "refuse": "refuse", "desk_supplement": "request_supplement",
                 "agency_supplement": "request_supplement", "receive_supplement": "receive_supplement",
                 "withdraw": "withdraw", "start_step": "start_step", "request_obligation": "request_obligation",
                 "fees_paid": "settle_obligation", "processed_done": "processed", "processed_stopped": "processed",
                 "return": "return"}[action]
        allowed, target = TRANSITIONS[moved]
        assert status in allowed
        assert target is None or dossier.status == target


def test_the_supplement_request_after_the_supplement_names_its_date():
    dossier = received()
    dossier.request_supplement(DESK, "x", ASKED, START + timedelta(hours=1), desk_name="Phường 5")
    dossier.receive_supplement(DESK, ASKED, START + timedelta(days=1))
    with pytest.raises(Refusal) as caught:
        dossier.request_supplement(DESK, "y", ASKED, START + timedelta(days=2), desk_name="Phường 5")
    assert caught.value.field == "supplement" and "2026-03-02" in caught.value.reason
    rejected = dossier.agency_asks_supplement(AGENCY, "z", ASKED, START + timedelta(days=2), desk_name="Phường 5",
                                              agency=UNITS[JUSTICE])
    assert [e.type for e in rejected] == ["dossier.supplement_rejected"]
    assert rejected[0].payload["reason"] == caught.value.reason


# --- the 15:00 rule -------------------------------------------------------------------------------------

instants = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 30)).map(
    lambda naive: naive.replace(tzinfo=TZ))


@settings(max_examples=300, deadline=None)
@given(moment=instants)
def test_property_same_day_procedures_follow_the_1500_rule(moment):
    due = received(moment, procedure_code="1.001193").appointment_date
    day = moment.date()
    cutoff = moment.replace(hour=15, minute=0, second=0, microsecond=0)
    if CALENDAR.is_working_day(day) and moment <= cutoff:
        assert due == day
    else:
        assert due == CALENDAR.next_working_day(day)
    assert CALENDAR.is_working_day(due)


@pytest.mark.parametrize("hh, mm, ss, due", [(15, 0, 0, date(2026, 3, 2)), (15, 0, 1, date(2026, 3, 3)),
                                             (7, 0, 0, date(2026, 3, 2)), (23, 59, 0, date(2026, 3, 3))])
def test_the_1500_rule_at_its_edge(hh, mm, ss, due):
    assert received(datetime(2026, 3, 2, hh, mm, ss, tzinfo=TZ), "1.001193").appointment_date == due


# --- the result class -------------------------------------------------------------------------------------

def returned(received_at: datetime, returned_at: datetime) -> Dossier:
    dossier = received(received_at, procedure_code="1.001193")     # free: nothing to settle
    dossier.processed(AGENCY, "done", None, received_at, received_at)
    dossier.return_result(DESK, "Lan", returned_at)
    return dossier


@settings(max_examples=300, deadline=None)
@given(received_at=instants, later=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=20)))
def test_property_the_result_class_matches_the_appointment_date(received_at, later):
    dossier = returned(received_at, received_at + later)
    returned_on = local_date(dossier.returned_at)
    expected = ("early" if returned_on < dossier.appointment_date
                else "on_time" if returned_on == dossier.appointment_date else "late")
    assert dossier.result_class == expected
    assert dossier.events[-1].payload["result_class"] == expected
    assert dossier.events[-1].payload["appointment_date"] == dossier.appointment_date.isoformat()


@settings(max_examples=200, deadline=None)
@given(received_at=instants, first=st.timedeltas(max_value=timedelta(days=10), min_value=timedelta(0)),
       more=st.timedeltas(max_value=timedelta(days=10), min_value=timedelta(0)))
def test_property_a_later_return_is_never_a_better_class(received_at, first, more):
    rank = {"early": 0, "on_time": 1, "late": 2}
    sooner = returned(received_at, received_at + first).result_class
    later = returned(received_at, received_at + first + more).result_class
    assert rank[sooner] <= rank[later]
