"""Routing's use cases through ``services.routing.handlers`` against in-memory fakes of the
repository and unit of work: no PostgreSQL, no broker, milliseconds each."""
from __future__ import annotations

import copy
import itertools
from datetime import datetime
from types import SimpleNamespace

import pytest

from motcua.contracts.actors import Actor
from motcua.contracts.calendar import default_calendar
from motcua.contracts.events import new_event
from motcua.contracts.refusals import Conflict, Forbidden, Invalid, NotFound
from services.routing import handlers
from services.routing.handlers import (Accept, Apologise, Complete, GetDossier, ProposeApology, Queue, ReadForms,
                                       RequestObligation, ReturnToDesk, Scan, Transfer, UnknownDossier, handle)
from services.routing.unit_of_work import UnitOfWork
from services.routing.workflow import DESK

CAL = default_calendar()
DISTRICT = "000.00.20.H29"
LAND, TAX = "000.41.20.H29", "000.42.20.H29"
CODE = "000.00.20.H29-260302-0001"
PROCEDURE = {"name": "Chuyển nhượng quyền sử dụng đất", "field": "Đất đai",
             "steps": [{"agency": LAND, "days": 3}, {"agency": TAX, "days": 3}, {"agency": LAND, "days": 4}]}
REGISTRY, TAX_OFFICER, CLERK = Actor("Lê Văn Đức", LAND), Actor("Phạm Thị Mai", TAX), Actor("Trần Văn Bình", DISTRICT)


def at(text: str) -> datetime:
    return datetime.fromisoformat(f"2026-03-{text}+07:00")


# --- the fakes ---------------------------------------------------------------------------------

class FakeRepository:
    """Workflows in a dict; what a unit of work saved becomes visible only when it commits."""

    def __init__(self):
        self.committed: dict = {}
        self.pending: dict = {}
        self.seen: dict = {}
        self.ids = itertools.count(1)
        self.loads = 0
        self.batch_saves: list[list[str]] = []     # the codes of each ``save_all``

    def get(self, code, *, for_update=True):
        self.loads += 1
        stored = self.committed.get(code)
        if stored is None:
            return None
        self.seen[code] = copy.deepcopy(stored)
        return self.seen[code]

    def add(self, workflow):
        self.seen[workflow.code] = workflow

    def save(self, workflow):
        for row in (*workflow.steps, *workflow.handovers, *workflow.actions):
            if row.id is None:
                row.id = next(self.ids)
        self.pending[workflow.code] = copy.deepcopy(workflow)

    def save_all(self, workflows):
        self.batch_saves.append([workflow.code for workflow in workflows])
        for workflow in workflows:
            self.save(workflow)

    def scan_candidates(self, today, warn_until, overdue_before):
        return sorted(self.committed)      # every workflow a candidate: the aggregate decides

    def lock_for_scan(self, codes):
        self.loads += 1          # one read for the batch
        batch = {code: copy.deepcopy(self.committed[code]) for code in codes}
        self.seen.update(batch)
        return list(batch.values())

    def running_at(self, units):
        return sorted(code for code, w in self.committed.items() if w.state == "running" and (
            w.unit in units or any(s.agency in units and s.state in ("pending", "handed_over", "held")
                                   for s in w.steps)))

    def queue(self, agency):
        return sorted((SimpleNamespace(code=w.code, id=s.id, state=s.state, procedure_name=w.procedure_name,
                                       unit=w.unit, due_date=s.due_date)
                       for w in self.committed.values() for s in w.steps
                       if s.agency == agency and s.open), key=lambda r: (r.due_date, r.id))


class FakeUnitOfWork(UnitOfWork):
    def __init__(self, now: datetime, procedures=None):
        super().__init__(now=now, calendar=CAL, correlation_id="corr-1",
                         procedure_version=lambda code, version: (procedures or {("1.013831", 1): PROCEDURE})
                         .get((code, version)))
        self.workflows = FakeRepository()
        self.outbox: list = []
        self.handled: set = set()
        self.commits = 0

    def __enter__(self):
        self.emitted, self.workflows.pending, self.workflows.loads = [], {}, 0
        self._seen_now: set = set()
        self._committed_events = 0
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.commit()

    def commit(self):
        """Committed: the changes, the outbox rows and the inbox ids together; then a new transaction."""
        self.workflows.committed.update(self.workflows.pending)
        self.outbox += self.emitted[self._committed_events:]
        self._committed_events = len(self.emitted)
        self.handled |= self._seen_now
        self.commits += 1
        self.workflows.pending, self._seen_now = {}, set()

    def first_time(self, event):
        if event.id in self.handled:
            return False
        self._seen_now.add(event.id)
        return True

    def _publish(self, event):
        pass      # kept in ``emitted``; moved to ``outbox`` on commit

    def stored(self, code=CODE):
        return self.workflows.committed[code]


def received(code=CODE, received_at="02T09:00:00", version=1, time_limit="10 working days"):
    return new_event("dossier.received", {
        "code": code, "procedure_code": "1.013831", "procedure_version": version, "channel": "in_person",
        "received_at": at(received_at).isoformat(), "appointment_date": "2026-03-16", "time_limit": time_limit,
        "handling_agency": LAND, "applicant": {"name": "Nguyễn Văn An"}, "quantities": {}, "secret": "x"},
        DISTRICT)


def run(uow, message, now: str | None = None):
    if now:
        uow.now = at(now)
    return handle(message, uow)


@pytest.fixture
def uow():
    uow = FakeUnitOfWork(at("02T09:00:05"))
    run(uow, received())
    return uow


def types(events):
    return [e.type for e in events]


def step_id(uow, agency, stage):
    return next(s.id for s in uow.stored().steps if s.agency == agency and s.stage == stage)


def finish_stage(uow, actor, stage, now):
    sid = step_id(uow, actor.unit, stage)
    run(uow, Accept(actor, CODE, sid), now)
    return run(uow, Complete(actor, CODE, sid, {"result": "done"}), now)


def nothing_changed(uow, before, outbox_before):
    return uow.stored().view() == before and len(uow.outbox) == outbox_before


# --- start -------------------------------------------------------------------------------------

def test_dossier_received_starts_the_workflow_and_hands_over_its_first_stage(uow):
    workflow = uow.stored()
    assert (workflow.state, workflow.stage, workflow.due_date.isoformat()) == ("running", 0, "2026-03-16")
    assert [(s.stage, s.agency, s.state) for s in workflow.steps] == [
        (0, LAND, "handed_over"), (1, TAX, "pending"), (2, LAND, "pending")]
    assert workflow.steps[0].due_date.isoformat() == "2026-03-05"          # 3 working days from Monday
    assert types(uow.outbox) == ["dossier.transferred"]
    assert uow.outbox[0].payload == {"code": CODE, "from_agency": DESK, "to_agencies": [LAND],
                                     "transferred_at": "2026-03-02T09:00:00+07:00"}
    assert uow.outbox[0].correlation_id == "corr-1"
    assert workflow.view()["control_slip"] == [{"from": DESK, "to": LAND, "at": "2026-03-02T09:00:00+07:00",
                                                "giver": DESK, "receiver": None, "result": "on_time", "notes": ""}]


def test_a_redelivered_dossier_received_is_skipped(uow):
    event = received(code="000.00.20.H29-260302-0002")
    run(uow, event)
    assert run(uow, event) is None
    assert types(uow.outbox) == ["dossier.transferred"] * 2


def test_an_unknown_procedure_version_changes_nothing(uow):
    with pytest.raises(LookupError):
        run(uow, received(code="000.00.20.H29-260302-0003", version=9))
    assert list(uow.workflows.committed) == [CODE]


def test_events_about_a_dossier_routing_does_not_hold():
    uow = FakeUnitOfWork(at("02T10:00:00"))
    with pytest.raises(UnknownDossier):
        run(uow, new_event("dossier.withdrawn", {"code": CODE, "reason": "x", "withdrawn_at": at("02T10:00:00")
                                                 .isoformat()}, DISTRICT))
    never = new_event("dossier.refused", {"code": CODE, "reason": "thiếu", "official": "A",
                                          "refused_at": at("02T10:00:00").isoformat(), "received": False}, DISTRICT)
    assert run(uow, never) is None and uow.workflows.committed == {} and uow.commits == 1


# --- agency actions ----------------------------------------------------------------------------

def test_accept_holds_the_step_and_signs_the_control_slip(uow):
    sid = step_id(uow, LAND, 0)
    view = run(uow, Accept(REGISTRY, CODE, sid), "02T10:00:00")
    assert view["steps"][0]["state"] == "held" and view["steps"][0]["accepted_by"] == REGISTRY.name
    assert view["control_slip"][0]["receiver"] == REGISTRY.name
    assert uow.outbox[-1].type == "dossier.step_started"
    assert uow.outbox[-1].payload == {"code": CODE, "agency": LAND, "step": sid,
                                      "started_at": "2026-03-02T10:00:00+07:00", "due_date": "2026-03-05"}
    assert view == uow.stored().view(uow.now, uow.calendar, uow.office_hours)            # the answer is the saved aggregate
    assert uow.workflows.loads == 1               # one read of the workflow and its rows


@pytest.mark.parametrize("actor, step, error, field", [
    (TAX_OFFICER, "first", Forbidden, "step"),          # not the holder
    (TAX_OFFICER, "second", Conflict, "step"),          # pending: not handed over yet
    (REGISTRY, 999, NotFound, "step"),
    (REGISTRY, "1", Invalid, "step"),
])
def test_bad_acceptances_are_refused_and_change_nothing(uow, actor, step, error, field):
    before, outbox = uow.stored().view(), len(uow.outbox)
    step = {"first": step_id(uow, LAND, 0), "second": step_id(uow, TAX, 1)}.get(step, step)
    with pytest.raises(error) as refused:
        run(uow, Accept(actor, CODE, step), "02T10:00:00")
    assert refused.value.field == field
    assert nothing_changed(uow, before, outbox)


def test_an_unknown_dossier_is_not_found(uow):
    with pytest.raises(NotFound) as refused:
        run(uow, Accept(REGISTRY, "nope", 1))
    assert refused.value.field == "code"


def test_complete_and_transfer_hand_the_next_stage_over(uow):
    finish_stage(uow, REGISTRY, 0, "04T10:00:00")
    assert uow.outbox[-1].type == "dossier.step_completed"
    assert uow.outbox[-1].payload["result_class"] == "early"               # due on the 5th
    view = run(uow, Transfer(REGISTRY, CODE, {"note": "đủ  hồ sơ"}), "04T11:00:00")
    assert (view["stage"], [s["state"] for s in view["steps"]]) == (1, ["done", "handed_over", "pending"])
    assert uow.outbox[-1].payload == {"code": CODE, "from_agency": LAND, "to_agencies": [TAX],
                                      "transferred_at": "2026-03-04T11:00:00+07:00"}
    assert view["control_slip"][-1] == {"from": LAND, "to": TAX, "at": "2026-03-04T11:00:00+07:00",
                                        "giver": REGISTRY.name, "receiver": None, "result": "early",
                                        "notes": "đủ hồ sơ"}
    assert view["steps"][1]["due_date"] == "2026-03-09"


def test_a_transfer_before_the_stage_is_done_is_refused(uow):
    run(uow, Accept(REGISTRY, CODE, step_id(uow, LAND, 0)), "02T10:00:00")
    before, outbox = uow.stored().view(), len(uow.outbox)
    with pytest.raises(Conflict, match="not done"):
        run(uow, Transfer(REGISTRY, CODE))
    with pytest.raises(Forbidden):
        run(uow, Transfer(TAX_OFFICER, CODE))
    with pytest.raises(Conflict, match="not done"):
        run(uow, ReturnToDesk(REGISTRY, CODE))
    assert nothing_changed(uow, before, outbox)


def _to_last_stage(uow):
    finish_stage(uow, REGISTRY, 0, "03T10:00:00")
    run(uow, Transfer(REGISTRY, CODE))
    finish_stage(uow, TAX_OFFICER, 1, "05T10:00:00")
    run(uow, Transfer(TAX_OFFICER, CODE))
    finish_stage(uow, REGISTRY, 2, "10T10:00:00")


def test_return_to_desk_processes_the_dossier(uow):
    _to_last_stage(uow)
    with pytest.raises(Conflict, match="return it to the desk"):
        run(uow, Transfer(REGISTRY, CODE))
    view = run(uow, ReturnToDesk(REGISTRY, CODE, {"note": "xong"}), "10T11:00:00")
    assert (view["state"], view["result_class"], view["resolved_at"]) == \
        ("processed", "early", "2026-03-10T11:00:00+07:00")
    assert uow.outbox[-1].type == "dossier.processed"
    assert uow.outbox[-1].payload == {"code": CODE, "agency": LAND, "result": "done",
                                      "processed_at": "2026-03-10T11:00:00+07:00", "note": "xong"}
    assert view["control_slip"][-1]["to"] == DESK
    with pytest.raises(Conflict, match="already returned"):
        run(uow, ReturnToDesk(REGISTRY, CODE))


def test_a_refusal_by_an_agency_stops_the_dossier(uow):
    sid = step_id(uow, LAND, 0)
    run(uow, Accept(REGISTRY, CODE, sid), "02T10:00:00")
    view = run(uow, Complete(REGISTRY, CODE, sid, {"result": "refuse", "note": "sai thửa"}), "09T10:00:00")
    assert view["state"] == "stopped" and view["steps"][0]["result_class"] == "late"
    assert types(uow.outbox[-2:]) == ["dossier.step_completed", "dossier.processed"]
    assert uow.outbox[-1].payload["result"] == "stopped" and uow.outbox[-1].payload["note"] == "sai thửa"
    with pytest.raises(Conflict, match="stopped"):
        run(uow, Accept(REGISTRY, CODE, sid))


@pytest.mark.parametrize("body, field", [
    ({"result": "maybe"}, "result"), ({}, "result"), ({"result": 3}, "result"), ([], "body"),
    ({"result": "needs_supplement", "reason": "x"}, "documents"),
    ({"result": "needs_supplement", "documents": [{"name": "Sổ đỏ", "form": "original"}]}, "reason"),
    ({"result": "needs_supplement", "documents": ["Sổ đỏ"], "reason": "x"}, "documents[0]"),
    ({"result": "needs_supplement", "documents": [{"name": "Sổ đỏ", "form": "scan"}], "reason": "x"}, "documents[0].form"),
])
def test_bad_completions_name_the_field_and_change_nothing(uow, body, field):
    sid = step_id(uow, LAND, 0)
    run(uow, Accept(REGISTRY, CODE, sid), "02T10:00:00")
    before, outbox = uow.stored().view(), len(uow.outbox)
    with pytest.raises(Invalid) as refused:
        run(uow, Complete(REGISTRY, CODE, sid, body))
    assert refused.value.field == field
    assert nothing_changed(uow, before, outbox)


def test_needs_supplement_asks_intake_and_keeps_the_step(uow):
    sid = step_id(uow, LAND, 0)
    run(uow, Accept(REGISTRY, CODE, sid), "02T10:00:00")
    view = run(uow, Complete(REGISTRY, CODE, sid, {"result": "needs_supplement",
                                                  "documents": [{"name": "Sổ đỏ", "form": "original"}],
                                                  "reason": "thiếu bản chính"}), "03T10:00:00")
    assert view["steps"][0]["state"] == "held"
    assert uow.outbox[-1].type == "dossier.supplement_needed"
    assert uow.outbox[-1].payload["documents"] == [{"name": "Sổ đỏ", "form": "original", "count": 1}] and uow.outbox[-1].payload["official"] == REGISTRY.name


def test_supplement_requested_and_received_stop_and_restart_the_clock(uow):
    requested = new_event("dossier.supplement_requested", {
        "code": CODE, "requested_by": "desk", "documents": ["Sổ đỏ"], "reason": "thiếu",
        "requested_at": at("03T09:00:00").isoformat(), "number": "1"}, DISTRICT)
    run(uow, requested, "03T09:00:01")
    view = uow.stored().view()
    assert view["clock_stopped"] and view["due_date"] is None and view["steps"][0]["due_date"] is None
    run(uow, new_event("dossier.supplement_received", {
        "code": CODE, "received_at": at("05T09:00:00").isoformat(), "previous_appointment_date": "2026-03-16",
        "appointment_date": "2026-03-18"}, DISTRICT), "05T09:00:01")
    view = uow.stored().view()
    assert not view["clock_stopped"]
    assert (view["due_date"], view["steps"][0]["due_date"]) == ("2026-03-18", "2026-03-09")   # two days later
    assert [a["action"] for a in view["actions"]][-2:] == ["clock_stopped", "clock_restarted"]
    moves = [e.payload for e in uow.outbox if e.type == "dossier.deadline_changed"]
    assert [(m["previous_due_date"], m["due_date"], m["reason"]) for m in moves] == [
        ("2026-03-16", None, "supplement"), (None, "2026-03-18", "supplement")]


def test_a_supplement_received_before_its_request_still_counts_the_stop(uow):
    run(uow, new_event("dossier.supplement_received", {
        "code": CODE, "received_at": at("05T09:00:00").isoformat(), "previous_appointment_date": "2026-03-16",
        "appointment_date": "2026-03-18"}, DISTRICT), "05T09:00:01")
    run(uow, new_event("dossier.supplement_requested", {
        "code": CODE, "requested_by": "desk", "documents": ["Sổ đỏ"], "reason": "thiếu",
        "requested_at": at("03T09:00:00").isoformat(), "number": "1"}, DISTRICT), "05T09:00:02")
    assert uow.stored().view()["due_date"] == "2026-03-18"


def test_an_obligation_stops_the_clock_until_fees_are_settled(uow):
    sid = step_id(uow, LAND, 0)
    run(uow, Accept(REGISTRY, CODE, sid), "02T10:00:00")
    with pytest.raises(Invalid) as refused:
        run(uow, RequestObligation(REGISTRY, CODE, {"description": "Lệ phí trước bạ", "amount": -1}))
    assert refused.value.field == "amount"
    with pytest.raises(Forbidden):
        run(uow, RequestObligation(TAX_OFFICER, CODE, {"description": "Thuế", "amount": 1000}))
    view = run(uow, RequestObligation(REGISTRY, CODE, {"description": "Lệ phí trước bạ", "amount": 500_000}),
               "03T10:00:00")
    assert view["clock_stopped"] and view["due_date"] is None
    assert [e.type for e in uow.outbox[-2:]] == ["dossier.obligation_requested", "dossier.deadline_changed"]
    assert uow.outbox[-2].payload["amount"] == 500_000
    assert uow.outbox[-1].payload == {"code": CODE, "due_date": None, "previous_due_date": "2026-03-16",
                                      "reason": "obligation", "changed_at": at("03T10:00:00").isoformat()}
    with pytest.raises(Conflict, match="waiting"):
        run(uow, RequestObligation(REGISTRY, CODE, {"description": "Lệ phí", "amount": 1}))
    run(uow, new_event("fees.settled", {"code": CODE, "settled_at": at("04T10:00:00").isoformat()}, DISTRICT),
        "04T10:00:01")
    assert uow.stored().view()["due_date"] == "2026-03-17"                  # one working day later
    # The desk and notify hear the one deadline from routing: the appointment moves with it.
    assert uow.outbox[-1].type == "dossier.deadline_changed"
    assert (uow.outbox[-1].payload["due_date"], uow.outbox[-1].payload["reason"]) == ("2026-03-17", "obligation")


def test_a_withdrawal_stops_every_unfinished_step(uow):
    run(uow, new_event("dossier.withdrawn", {"code": CODE, "reason": "không làm nữa",
                                             "withdrawn_at": at("03T10:00:00").isoformat()}, DISTRICT), "03T10:00:01")
    view = uow.stored().view()
    assert view["state"] == "withdrawn" and view["resolved_at"] == "2026-03-03T10:00:00+07:00"
    assert {s["state"] for s in view["steps"]} == {"stopped"}
    assert view["actions"][-1]["action"] == "withdrawn"


# --- the scheduler and the apology -------------------------------------------------------------

def test_the_scan_warns_at_risk_then_flags_overdue_once_then_apology_missing(uow):
    run(uow, Accept(REGISTRY, CODE, step_id(uow, LAND, 0)), "02T10:00:00")
    assert run(uow, Scan(), "03T09:00:00") == {"overdue": 0, "step_overdue": 0, "at_risk": 0, "apology_missing": 0}
    assert run(uow, Scan(), "04T09:00:00")["at_risk"] == 1                 # due tomorrow
    assert uow.outbox[-1].type == "dossier.at_risk" and uow.outbox[-1].payload["due_date"] == "2026-03-05"
    assert run(uow, Scan(), "04T09:30:00")["at_risk"] == 0                 # warned once
    counts = run(uow, Scan(), "06T09:00:00")
    assert counts["step_overdue"] == 1 and counts["overdue"] == 0         # the step, not the dossier
    assert run(uow, Scan(), "17T09:00:00")["overdue"] == 1
    overdue = uow.outbox[-1]
    assert overdue.type == "dossier.overdue"
    assert overdue.payload == {"code": CODE, "agency": LAND, "due_date": "2026-03-16",
                               "detected_at": "2026-03-17T09:00:00+07:00"}
    assert uow.stored().overdue_agency == LAND
    assert run(uow, Scan(), "17T15:00:00") == {"overdue": 0, "step_overdue": 0, "at_risk": 0, "apology_missing": 0}
    assert run(uow, Scan(), "18T09:00:00")["apology_missing"] == 1          # a working day without apology
    assert uow.outbox[-1].payload["overdue_since"] == "2026-03-17T09:00:00+07:00"
    assert run(uow, Scan(), "19T09:00:00")["apology_missing"] == 0


def test_a_scan_round_flags_a_burst_batch_by_batch_each_batch_committed_each_breach_once(uow):
    for n in range(2, 6):                                   # five dossiers, all due on the 16th
        run(uow, received(code=f"000.00.20.H29-260302-000{n}"))
    commits = uow.commits
    counts = run(uow, Scan(batch=2), "17T09:00:00")
    assert counts["overdue"] == 5
    assert uow.commits - commits == 3                       # 2 + 2 + 1: three transactions
    codes = sorted(uow.workflows.committed)
    assert uow.workflows.batch_saves == [codes[0:2], codes[2:4], codes[4:5]]      # one save of each batch
    overdue = [e.payload["code"] for e in uow.outbox if e.type == "dossier.overdue"]
    assert sorted(overdue) == sorted(uow.workflows.committed) and len(set(overdue)) == 5
    assert run(uow, Scan(batch=2), "17T09:00:05")["overdue"] == 0


def test_a_scan_round_with_candidates_that_have_nothing_to_flag_flags_nothing(uow):
    run(uow, received(code="000.00.20.H29-260302-0002"))
    commits = uow.commits
    assert run(uow, Scan(batch=1), "03T09:00:00") == {"overdue": 0, "step_overdue": 0, "at_risk": 0,
                                                      "apology_missing": 0}
    assert uow.commits - commits == 2                       # a batch of one each
    assert not [e for e in uow.outbox if e.type.startswith("dossier.") and "overdue" in e.type]


def test_the_apology_of_the_agency_at_fault(uow):
    run(uow, Accept(REGISTRY, CODE, step_id(uow, LAND, 0)), "02T10:00:00")
    with pytest.raises(Conflict, match="not overdue"):
        run(uow, Apologise(REGISTRY, CODE, {"reason": "quá tải"}))
    run(uow, Scan(), "17T09:00:00")
    proposal = run(uow, ProposeApology(REGISTRY, CODE))
    assert proposal == {"code": CODE, "agency_at_fault": LAND, "due_date": "2026-03-16",
                        "proposed_new_date": "2026-03-31"}                  # 3 + 3 + 4 working days left
    with pytest.raises(Forbidden):
        run(uow, Apologise(TAX_OFFICER, CODE, {"reason": "quá tải"}))
    with pytest.raises(Invalid) as refused:
        run(uow, Apologise(REGISTRY, CODE, {"reason": "quá tải", "new_date": "2026-03-21"}))   # a Saturday
    assert refused.value.field == "new_date"
    view = run(uow, Apologise(REGISTRY, CODE, {"reason": "quá tải"}), "17T10:00:00")
    assert view["apology"]["new_date"] == "2026-03-31" and view["apology"]["agency"] == LAND
    assert uow.outbox[-1].type == "dossier.apology_issued"
    assert uow.outbox[-1].payload["original_due_date"] == "2026-03-16"
    with pytest.raises(Conflict, match="already has"):
        run(uow, Apologise(REGISTRY, CODE, {"reason": "lần nữa"}))
    assert run(uow, Scan(), "19T09:00:00")["apology_missing"] == 0


def test_a_processed_dossier_is_not_flagged_overdue(uow):
    _to_last_stage(uow)
    run(uow, ReturnToDesk(REGISTRY, CODE), "10T11:00:00")
    assert run(uow, Scan(), "20T09:00:00") == {"overdue": 0, "step_overdue": 0, "at_risk": 0, "apology_missing": 0}


# --- reading -----------------------------------------------------------------------------------

def test_reading_is_for_the_desk_and_the_agencies_on_the_route(uow):
    assert run(uow, GetDossier(CLERK, CODE)) == uow.stored().view(uow.now, uow.calendar, uow.office_hours)
    assert run(uow, ReadForms(TAX_OFFICER, CODE))["applicant_name"] == "Nguyễn Văn An"
    with pytest.raises(Forbidden):
        run(uow, GetDossier(Actor("X", "000.99.20.H29"), CODE))


def test_the_queue_of_an_agency(uow):
    queue = run(uow, Queue(REGISTRY), "06T09:00:00")
    assert queue == {"agency": LAND, "steps": [{"code": CODE, "step": step_id(uow, LAND, 0), "state": "handed_over",
                                                "procedure": PROCEDURE["name"], "unit": DISTRICT,
                                                "due_date": "2026-03-05", "overdue": True}]}
    assert run(uow, Queue(TAX_OFFICER))["steps"] == []


def test_every_command_and_event_has_its_handler():
    assert set(handlers.EVENTS) == {"dossier.received", "dossier.supplement_requested", "dossier.supplement_received",
                                    "dossier.supplement_rejected", "fees.settled", "dossier.withdrawn",
                                    "dossier.refused", "catalog.units_reorganised"}
    with pytest.raises(Invalid):
        handle(object(), FakeUnitOfWork(at("02T09:00:00")))


def test_the_time_left_is_read_in_each_units_own_office_hours(uow):
    """The dossier's against the receiving desk's hours, an open step's against its agency's; none
    for steps not handed over yet; "tạm dừng" while the clock is stopped; none once processed."""
    from motcua.contracts.remaining import DEFAULT_OFFICE_HOURS, STOPPED_TEXT, OfficeHours
    hours = {LAND: OfficeHours.parse("07:00-11:00, 13:30-17:30")}
    uow.office_hours = lambda unit: hours.get(unit, DEFAULT_OFFICE_HOURS)
    view = run(uow, GetDossier(CLERK, CODE), "05T17:15:00")           # Thursday 5 March, 17:15
    first = view["steps"][0]
    assert view["due_date"] == "2026-03-16" and first["due_date"] == "2026-03-05"
    assert view["remaining"] == "còn 7 ngày làm việc"                  # the desk closed at 17:00
    assert first["remaining"] == "còn 15 phút làm việc"                # the land office closes at 17:30
    assert [s["remaining"] for s in view["steps"][1:]] == [None, None]   # pending: no deadline yet
    view = run(uow, GetDossier(TAX_OFFICER, CODE), "09T09:00:00")     # Monday: Friday and 7:00-9:00 late
    assert view["steps"][0]["remaining"] == "quá hạn 1 ngày 2 giờ"
    run(uow, new_event("dossier.supplement_requested", {
        "code": CODE, "requested_by": "desk", "documents": ["Sổ đỏ"], "reason": "thiếu",
        "requested_at": at("09T09:10:00").isoformat(), "number": "1"}, DISTRICT), "09T09:10:01")
    view = run(uow, GetDossier(CLERK, CODE), "10T09:00:00")
    assert view["remaining"] == STOPPED_TEXT and view["steps"][0]["remaining"] == STOPPED_TEXT


def test_a_processed_dossier_has_no_time_left(uow):
    _to_last_stage(uow)
    view = run(uow, ReturnToDesk(REGISTRY, CODE), "10T11:00:00")
    assert view["state"] == "processed" and view["remaining"] is None
    assert {s["remaining"] for s in view["steps"]} == {None}


# --- a reorganisation ----------------------------------------------------------------------------

def test_a_reorganisation_moves_a_running_workflow_with_its_deadlines_once(uow):
    from motcua.contracts.reorganisations import Reorganisation, Transfer as Moved

    successor, new_land = "000.60.20.H29", "000.45.20.H29"
    finish_stage(uow, REGISTRY, 0, "03T10:00:00")               # LAND's first step done, TAX's handed over
    run(uow, Transfer(REGISTRY, CODE, {}), "03T11:00:00")
    before = copy.deepcopy(uow.stored())
    reorganisation = Reorganisation("test", at("04T00:00:00").date(),
                                    (Moved((DISTRICT,), successor), Moved((LAND,), new_land)))
    event = new_event("catalog.units_reorganised", reorganisation.payload(), DISTRICT)
    run(uow, event, "04T08:00:00")
    assert run(uow, event) is None                               # a redelivery changes nothing
    workflow = uow.stored()
    assert (workflow.code, workflow.unit, workflow.due_date) == (CODE, successor, before.due_date)
    # The finished step stays with the agency that did it; the pending one moves; deadlines stay.
    assert [(s.agency, s.state, s.due_date) for s in workflow.steps] == [
        (LAND, "done", before.steps[0].due_date), (TAX, "handed_over", before.steps[1].due_date),
        (new_land, "pending", None)]
    assert [a.action for a in workflow.actions[len(before.actions):]] == ["unit_reorganised", "step_reorganised"]
    assert workflow.actions[-2].note == {"from": DISTRICT, "to": successor, "reorganisation": "test"}
    # The successor's officials read it; the next stage goes to the new agency.
    run(uow, GetDossier(Actor("Ngô Văn Tư", successor), CODE))
    finish_stage(uow, TAX_OFFICER, 1, "05T10:00:00")
    run(uow, Transfer(TAX_OFFICER, CODE, {}), "05T11:00:00")
    assert uow.stored().steps[2].state == "handed_over" and uow.stored().steps[2].agency == new_land


def test_a_reorganisation_moves_an_open_step_with_a_row_of_the_control_slip(uow):
    from motcua.contracts.reorganisations import Reorganisation, Transfer as Moved

    new_land = "000.45.20.H29"
    reorganisation = Reorganisation("test", at("04T00:00:00").date(), (Moved((LAND,), new_land),))
    run(uow, new_event("catalog.units_reorganised", reorganisation.payload(), DISTRICT), "04T08:00:00")
    workflow = uow.stored()
    assert workflow.unit == DISTRICT and workflow.steps[0].agency == new_land
    assert workflow.view()["control_slip"][-1]["from"] == LAND
    assert workflow.view()["control_slip"][-1]["to"] == new_land


def test_a_dossier_that_arrives_after_its_units_were_dissolved_starts_at_the_successors():
    """Routing was behind across the effective date: catalog.units_reorganised came first, then
    dossier.received of a dossier received at the old desk the day before. The catalogue entries
    say where its units went; the workflow starts there, the moves recorded as the event does."""
    successor, new_land = "000.60.20.H29", "000.45.20.H29"
    uow = FakeUnitOfWork(at("04T08:00:00"))
    entries = {DISTRICT: {"code": DISTRICT, "dissolved_on": "2026-03-04", "successor": successor},
               LAND: {"code": LAND, "dissolved_on": "2026-03-04", "successor": new_land},
               TAX: {"code": TAX}}
    uow.unit = entries.get
    run(uow, received(received_at="03T16:00:00"))
    workflow = uow.stored()
    assert workflow.code == CODE and workflow.unit == successor
    assert [s.agency for s in workflow.steps] == [new_land, TAX, new_land]
    assert [a.action for a in workflow.actions][-3:] == ["unit_reorganised", "step_reorganised", "step_reorganised"]
    assert workflow.view()["control_slip"][-1]["to"] == new_land           # the open step's hand-over


def test_a_unit_dissolved_later_or_not_at_all_moves_nothing_on_receipt():
    uow = FakeUnitOfWork(at("03T08:00:00"))
    uow.unit = {DISTRICT: {"code": DISTRICT, "dissolved_on": "2026-03-04", "successor": "000.60.20.H29"}}.get
    run(uow, received())
    assert uow.stored().unit == DISTRICT and uow.stored().steps[0].agency == LAND
    assert "unit_reorganised" not in [a.action for a in uow.stored().actions]
