"""The dossier aggregate: one dossier's life cycle at the desk, free of I/O.

Its methods enforce the national state machine and the rules of law (one supplement request in the
whole processing, the 15:00 rule of same-day procedures through the appointment date, clock stops,
the result class on return) and return the events they cause; the unit of work saves the changed
row, the new history entries and those events together.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from typing import Mapping, Sequence

from motcua.contracts.actors import Actor
from motcua.contracts.calendar import (
    TZ,
    WorkingCalendar,
    classify,
    due_date,
    local_date,
    parse_time_limit,
)
from motcua.contracts.events import Envelope, new_event
from motcua.contracts.refusals import Conflict, Invalid
from motcua.contracts.text import fold
from motcua.contracts.vocabulary import CHANNELS, STATUS_VI, Status
from services.intake import domain

# action -> (statuses it is allowed in, the status it leads to; None: depends on the event)
TRANSITIONS: dict[str, tuple[frozenset[Status], Status | None]] = {
    "accept": (frozenset({Status.SUBMITTED_ONLINE}), Status.RECEIVED),
    "refuse": (frozenset({Status.SUBMITTED_ONLINE, Status.RECEIVED}), Status.REFUSED),
    "request_supplement": (frozenset({Status.RECEIVED, Status.PROCESSING, Status.OBLIGATION_REQUESTED}),
                           Status.SUPPLEMENT_REQUESTED),
    "receive_supplement": (frozenset({Status.SUPPLEMENT_REQUESTED}), None),
    "withdraw": (frozenset({Status.SUBMITTED_ONLINE, Status.RECEIVED, Status.PROCESSING,
                            Status.SUPPLEMENT_REQUESTED, Status.OBLIGATION_REQUESTED}), Status.WITHDRAWN),
    "start_step": (frozenset({Status.RECEIVED, Status.PROCESSING}), Status.PROCESSING),
    "request_obligation": (frozenset({Status.RECEIVED, Status.PROCESSING}), Status.OBLIGATION_REQUESTED),
    "settle_obligation": (frozenset({Status.OBLIGATION_REQUESTED}), Status.PROCESSING),
    "processed": (frozenset({Status.RECEIVED, Status.PROCESSING, Status.OBLIGATION_REQUESTED}), None),
    "return": (frozenset({Status.PROCESSED}), Status.RETURNED),
}
ACTION_VI = {
    "accept": "tiếp nhận", "refuse": "từ chối", "request_supplement": "yêu cầu bổ sung",
    "receive_supplement": "nhận hồ sơ bổ sung", "withdraw": "rút hồ sơ", "start_step": "chuyển xử lý",
    "request_obligation": "yêu cầu nghĩa vụ tài chính", "settle_obligation": "hoàn thành nghĩa vụ tài chính",
    "processed": "ghi nhận kết quả giải quyết", "return": "trả kết quả",
    "unit_reorganised": "chuyển đơn vị do sắp xếp đơn vị hành chính",
}
# Statuses in which the dossier is closed at the desk: a new appointment date means nothing there.
CLOSED = frozenset({Status.REFUSED, Status.WITHDRAWN, Status.RETURNED})
APOLOGY_REASON = "Thư xin lỗi, hẹn lại ngày trả kết quả (Mẫu 04)"
# Why routing moved the deadline, as the appointment history says it.
DEADLINE_REASONS = {"supplement": "Bổ sung hồ sơ", "obligation": "Thực hiện nghĩa vụ tài chính"}


def require(action: str, status: int) -> Status | None:
    """The status ``action`` leads to from ``status``; Conflict if it is not allowed there."""
    allowed, target = TRANSITIONS[action]
    current = Status(status)
    if current not in allowed:
        raise Conflict("status", f"cannot {action.replace('_', ' ')} ({ACTION_VI[action]}) a dossier in status "
                                 f"{current.value} ({STATUS_VI[current]})")
    return target


def require_supplement_unused(requested_at: datetime | None) -> None:
    """A supplement may be requested at most once in the whole processing of a dossier."""
    if requested_at is not None:
        raise Conflict("supplement", "a supplement was already requested for this dossier on "
                                     f"{local_date(requested_at):%Y-%m-%d}; the law allows one request only")


def processed_status(result: str) -> Status:
    if result == "done":
        return Status.PROCESSED
    if result == "stopped":
        return Status.STOPPED
    raise Invalid("payload.result", f"must be done or stopped, got {result!r}")


def appointment(received_at: datetime, time_limit: str, calendar: WorkingCalendar) -> date | None:
    """The appointment date printed on the receipt: the time limit counted from receipt (a same-day
    procedure received after 15:00 is due the next working day: ``due_date`` applies the rule).
    Routing keeps the deadline from there on, with its clock stops (``dossier.deadline_changed``)."""
    return due_date(received_at, parse_time_limit(time_limit), calendar, [])


def result_class(returned_at: datetime, appointment_date: date) -> str:
    return classify(returned_at, appointment_date)


def iso(instant: datetime | None) -> str | None:
    return instant.astimezone(TZ).isoformat() if instant else None


@dataclass(frozen=True)
class HistoryEntry:
    """Who did what and when (ISO 9001: every step recorded with actor and time)."""
    at: datetime
    actor: str
    actor_unit: str | None
    action: str
    status_from: int | None
    status_to: int
    note: dict


@dataclass(frozen=True)
class BookLine:
    """A line of the unit's tracking book (Mẫu 06), taken from its gapless counter."""
    year: int
    line: int
    lines_per_volume: int = 1000

    @property
    def volume(self) -> int:
        return (self.line - 1) // self.lines_per_volume + 1


@dataclass(eq=False)
class Dossier:
    """One dossier. Its attributes are the columns of ``intake.dossiers``; ``history`` its entries."""
    code: str
    unit: str
    status: int
    channel: str
    procedure_code: str
    procedure_version: int
    procedure: dict
    handling_agency: str
    applicant_name: str
    applicant_key: str
    applicant_id_number: str
    applicant_address: str
    applicant_phone: str
    applicant_email: str | None
    documents: list
    sets: int
    quantities: dict
    fee_conditions: list
    notifications: dict
    secret: str
    submitted_at: datetime
    fees_required: bool
    received_at: datetime | None = None
    received_by: str | None = None
    appointment_date: date | None = None
    appointment_history: list = field(default_factory=list)
    clock_stops: list = field(default_factory=list)
    supplement: dict | None = None
    supplement_requested_at: datetime | None = None
    refusal: dict | None = None
    book_year: int | None = None
    book_volume: int | None = None
    book_line: int | None = None
    book_unit: str | None = None    # whose tracking book holds the line: the receiving desk's, for good
    transferred_at: datetime | None = None
    processed_at: datetime | None = None
    fees_outstanding: int = 0
    fees_settled: bool = False
    fees_charged_seen: bool = False
    returned_at: datetime | None = None
    returned_to: str | None = None
    result_class: str | None = None
    history: list[HistoryEntry] = field(default_factory=list)
    # Events caused since the dossier was loaded, for the unit of work to write to the outbox.
    events: list[Envelope] = field(default_factory=list, repr=False)

    # --- the row -------------------------------------------------------------------------

    @classmethod
    def columns(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name not in ("history", "events"))

    def row(self) -> dict:
        """The column values, copied: a repository compares them with those it loaded."""
        return {name: copy.deepcopy(getattr(self, name)) for name in self.columns()}

    # --- receipt -------------------------------------------------------------------------

    @classmethod
    def _new(cls, code: str, s: domain.Submission, secret: str, now: datetime) -> Dossier:
        procedure, applicant = s.procedure, s.applicant
        return cls(
            code=code, unit=s.unit["code"], status=int(Status.SUBMITTED_ONLINE), channel=s.channel,
            procedure_code=procedure["code"], procedure_version=procedure["version"], procedure=procedure,
            handling_agency=domain.handling_agency(procedure, s.unit["code"]),
            applicant_name=applicant.name, applicant_key=fold(applicant.name),
            applicant_id_number=applicant.id_number, applicant_address=applicant.address,
            applicant_phone=applicant.phone, applicant_email=applicant.email,
            documents=[vars(d) for d in s.documents], sets=s.sets, quantities=s.quantities,
            fee_conditions=s.conditions, notifications=s.notifications, secret=secret, submitted_at=now,
            fees_required=any(item["kind"] != "exemption" for item in procedure.get("fees", [])))

    @classmethod
    def submit_online(cls, code: str, submission: domain.Submission, actor: Actor, now: datetime,
                      secret: str) -> Dossier:
        """Submitted by the citizen online: it waits for a desk officer (status 1)."""
        dossier = cls._new(code, submission, secret, now)
        dossier._record(now, actor, "submit", None, Status.SUBMITTED_ONLINE, {"channel": submission.channel})
        dossier._status_changed(now, None, Status.SUBMITTED_ONLINE)
        dossier._emit("dossier.submitted_online", now, {
            "code": code, "procedure_code": dossier.procedure_code, "procedure_version": dossier.procedure_version,
            "submitted_at": iso(now)})
        return dossier

    @classmethod
    def receive_at_desk(cls, code: str, submission: domain.Submission, actor: Actor, now: datetime, secret: str,
                        calendar: WorkingCalendar, book: BookLine) -> Dossier:
        """Received by a desk officer (status 2), recorded once: it never was waiting online."""
        dossier = cls._new(code, submission, secret, now)
        dossier._receive(actor, now, calendar, book, new=True, note={"channel": submission.channel})
        return dossier

    def accept(self, actor: Actor, now: datetime, calendar: WorkingCalendar, book: BookLine) -> list[Envelope]:
        """An online submission (1) is received by a desk officer (2)."""
        require("accept", self.status)
        return self._receive(actor, now, calendar, book, new=False, note={})

    def _receive(self, actor: Actor, now: datetime, calendar: WorkingCalendar, book: BookLine, *, new: bool,
                 note: dict) -> list[Envelope]:
        """Status 2: the clock starts, the appointment date is set, a line of the tracking book is taken."""
        date_ = appointment(now, self.procedure["time_limit"], calendar)
        self.received_at, self.received_by, self.appointment_date = now, actor.name, date_
        self.book_year, self.book_volume, self.book_line = book.year, book.volume, book.line
        self.book_unit = self.unit
        changed = self._change(now, actor, "receive", Status.RECEIVED,
                               {**note, "appointment_date": date_.isoformat()}, new=new)
        return changed + self._emit("dossier.received", now, {
            "code": self.code, "procedure_code": self.procedure_code, "procedure_version": self.procedure_version,
            "channel": self.channel, "received_at": iso(now), "appointment_date": date_.isoformat(),
            "time_limit": self.procedure["time_limit"], "handling_agency": self.handling_agency,
            "applicant": {"name": self.applicant_name, "phone": self.applicant_phone, "email": self.applicant_email},
            "quantities": self.quantities, "conditions": self.fee_conditions, "secret": self.secret,
            "notifications": self.notifications})

    # --- refusal, supplement, withdrawal, return ----------------------------------------

    def refuse(self, actor: Actor, reason: str, now: datetime) -> list[Envelope]:
        target = require("refuse", self.status)
        was_received = self.status == Status.RECEIVED
        self.refusal = {"reason": reason, "official": actor.name, "refused_at": iso(now)}
        changed = self._change(now, actor, "refuse", target, {"reason": reason})
        return changed + self._emit("dossier.refused", now, {
            "code": self.code, "reason": reason, "official": actor.name, "refused_at": iso(now),
            "received": was_received})

    def request_supplement(self, actor: Actor, reason: str, documents: Sequence[domain.Presented], now: datetime,
                           *, desk_name: str, agency: Mapping | None = None) -> list[Envelope]:
        """The dossier's one supplement request (Mẫu 02), by the desk or, through routing, an agency.

        This method alone owns the rule: at most one request in the whole processing."""
        target = require("request_supplement", self.status)
        require_supplement_unused(self.supplement_requested_at)
        if not documents:
            raise Invalid("documents", "must list at least one document to add")
        self.supplement = {
            "number": "01/PYCBS", "requested_by": agency["code"] if agency else "desk",
            "requested_by_name": agency["name"] if agency else "Bộ phận tiếp nhận và trả kết quả",
            "documents": [vars(d) for d in documents], "reason": reason, "official": actor.name,
            "requested_at": iso(now), "status_before": self.status,
            "contact": f"Bộ phận tiếp nhận và trả kết quả, {desk_name}",
        }
        self.supplement_requested_at = now
        self.clock_stops = [*self.clock_stops, {"start": iso(now), "end": None}]
        changed = self._change(now, actor, "request_supplement", target,
                               {"reason": reason, "requested_by": self.supplement["requested_by"]})
        return changed + self._emit("dossier.supplement_requested", now, {
            "code": self.code, "requested_by": self.supplement["requested_by"],
            "documents": self.supplement["documents"], "reason": reason, "requested_at": iso(now),
            "number": self.supplement["number"]})

    def agency_asks_supplement(self, actor: Actor, reason: str, documents: Sequence[domain.Presented],
                               now: datetime, *, desk_name: str, agency: Mapping) -> list[Envelope]:
        """An agency's request (through routing): made, or, if the law forbids it, rejected back to it."""
        try:
            return self.request_supplement(actor, reason, documents, now, desk_name=desk_name, agency=agency)
        except Conflict as refused:
            self._record(now, actor, "supplement_rejected", self.status, self.status, {"reason": refused.reason})
            return self._emit("dossier.supplement_rejected", now, {
                "code": self.code, "agency": actor.unit, "reason": refused.reason, "rejected_at": iso(now)})

    def receive_supplement(self, actor: Actor, presented: Sequence[domain.Presented],
                           now: datetime) -> list[Envelope]:
        """The citizen brings what was asked: the clock runs again (routing moves the appointment)."""
        require("receive_supplement", self.status)
        still_missing = domain.missing_documents(self.supplement["documents"], presented)
        if still_missing:
            raise Invalid("documents", "the supplement is incomplete: " + "; ".join(m.guidance() for m in still_missing))
        stops = [dict(s) for s in self.clock_stops]
        stops[-1]["end"] = iso(now)
        self.clock_stops = stops
        self.documents = [*self.documents, *[vars(d) for d in presented]]
        # The clock runs again; the new appointment date is routing's to count (it keeps the
        # deadline with every clock stop) and comes back as dossier.deadline_changed.
        changed = self._change(now, actor, "receive_supplement", Status(self.supplement["status_before"]), {})
        return changed + self._emit("dossier.supplement_received", now,
                                    {"code": self.code, "received_at": iso(now)}, version=2)

    def withdraw(self, actor: Actor, reason: str, now: datetime) -> list[Envelope]:
        target = require("withdraw", self.status)
        changed = self._change(now, actor, "withdraw", target, {"reason": reason})
        return changed + self._emit("dossier.withdrawn", now,
                                    {"code": self.code, "reason": reason, "withdrawn_at": iso(now)})

    def return_result(self, actor: Actor, collected_by: str, now: datetime) -> list[Envelope]:
        """Status 10: only once processed (9) and with nothing outstanding at fees."""
        target = require("return", self.status)
        if self.fees_required and not self.fees_settled:
            outstanding = (f"{self.fees_outstanding:,} VND".replace(",", ".") if self.fees_outstanding
                           else "not yet charged")
            raise Conflict("fees", f"fees of dossier {self.code} are not settled ({outstanding})")
        result = result_class(now, self.appointment_date)
        self.returned_at, self.returned_to, self.result_class = now, collected_by, result
        changed = self._change(now, actor, "return", target,
                               {"collected_by": collected_by, "result_class": result})
        return changed + self._emit("dossier.returned", now, {"code": self.code, "returned_at": iso(now),
                                                    "appointment_date": self.appointment_date.isoformat(),
                                                    "result_class": result})

    # --- what routing and fees report ----------------------------------------------------

    def start_step(self, agency: Actor, step: int, started_at: datetime, now: datetime) -> list[Envelope]:
        if self.status in (Status.PROCESSED, Status.RETURNED):
            # Each event type has its own queue: under load a step's start can arrive after the
            # result. The step did start: it goes in the history, the status stays where it is.
            self._record(now, agency, "step_started", self.status, self.status,
                         {"step": step, "arrived_after": "processed"})
            return []
        target = require("start_step", self.status)
        self.transferred_at = self.transferred_at or started_at
        return self._change(now, agency, "step_started", target, {"step": step})

    def request_obligation(self, agency: Actor, description: str, now: datetime) -> list[Envelope]:
        target = require("request_obligation", self.status)
        return self._change(now, agency, "obligation_requested", target, {"description": description})

    def processed(self, agency: Actor, result: str, note: str | None, processed_at: datetime,
                  now: datetime) -> list[Envelope]:
        require("processed", self.status)
        target = processed_status(result)
        self.processed_at = processed_at
        return self._change(now, agency, "processed", target, {"result": result, "note": note})

    def fees_reported(self, event_type: str, payload: Mapping, now: datetime) -> list[Envelope]:
        """Each fees event comes on its own queue, so they may arrive in any order: keep sums (which
        commute) and derive "settled" from them, never from the order of arrival."""
        amount = payload.get("amount", 0)
        change = {"fees.charged": amount, "fees.paid": -amount, "fees.payment_cancelled": amount,
                  "fees.settled": 0}[event_type]
        self.fees_outstanding += change
        self.fees_charged_seen = self.fees_charged_seen or event_type == "fees.charged"
        self.fees_settled = self.fees_charged_seen and self.fees_outstanding == 0
        target = Status(self.status)
        if self.fees_settled and target == Status.OBLIGATION_REQUESTED and event_type != "fees.charged":
            target = Status.PROCESSING          # the obligation is paid: processing goes on
        return self._change(now, Actor("fees", None), event_type.replace(".", "_"), target,
                                   {key: payload[key] for key in ("amount", "method", "receipt_number") if key in payload})

    def deadline_changed(self, due_date: date | None, reason: str, now: datetime) -> list[Envelope]:
        """Routing moved the dossier's deadline (the clock ran again after a supplement or a
        financial obligation): it becomes the appointment date, the earlier one kept in the
        appointment history; never earlier than the date in force, which an apology (Mẫu 04) may
        have set beyond it. While the clock is stopped (no date) the appointment stays as it was."""
        if self.status in CLOSED or self.appointment_date is None or due_date is None:
            return []
        previous = self.appointment_date
        new_date = max(due_date, previous)
        if new_date == previous:
            return []
        self._move_appointment(new_date, now, DEADLINE_REASONS.get(reason, reason))
        self._record(now, Actor("routing", None), "deadline_changed", self.status, self.status,
                     {"reason": reason, "previous_appointment_date": previous.isoformat(),
                      "appointment_date": new_date.isoformat()})
        return []

    def apology_issued(self, agency: Actor, new_date: date, reason: str, now: datetime) -> list[Envelope]:
        """The agency at fault apologised (Mẫu 04) and set a new date: it becomes the appointment date,
        the earlier one kept in the appointment history. A closed dossier keeps its dates."""
        if self.status in CLOSED or self.appointment_date is None or new_date == self.appointment_date:
            return []
        previous = self.appointment_date
        self._move_appointment(new_date, now, APOLOGY_REASON)
        self._record(now, agency, "apology_issued", self.status, self.status,
                     {"reason": reason, "previous_appointment_date": previous.isoformat(),
                      "appointment_date": new_date.isoformat()})
        return []

    # --- reorganisation ----------------------------------------------------------------------

    def move_to(self, successor: str, reorganisation: str, now: datetime) -> list[Envelope]:
        """Its unit merged into ``successor``: the dossier goes on there. Its code keeps the old
        unit's prefix (a code is issued once), its deadline and history stay; the hand-over is
        recorded. A handling agency that was the desk itself follows it."""
        previous = self.unit
        if previous == successor:
            return []
        self.unit = successor
        if self.handling_agency == previous:
            self.handling_agency = successor
        self._record(now, Actor("catalog", None), "unit_reorganised", self.status, self.status,
                     {"from": previous, "to": successor, "reorganisation": reorganisation})
        return []

    # --- inside ----------------------------------------------------------------------------

    def _move_appointment(self, new_date: date, now: datetime, reason: str) -> None:
        self.appointment_history = [*self.appointment_history, {
            "date": self.appointment_date.isoformat(), "replaced_at": iso(now), "reason": reason}]
        self.appointment_date = new_date

    def _change(self, now: datetime, actor: Actor, action: str, status_to: Status, note: dict, *,
                new: bool = False) -> list[Envelope]:
        """The one place a status changes: recorded in the history with where it came from (nowhere
        for a dossier received at the desk: it never waited online)."""
        status_from = None if new else self.status
        self.status = int(status_to)
        self._record(now, actor, action, status_from, status_to, note)
        if status_from == int(status_to):
            return []
        return self._status_changed(now, status_from, status_to)

    def status_changes(self) -> int:
        """How many times the national status changed (its first setting included): the history's
        entries that moved it. A step started by a second agency, a fee paid, a date moved are
        recorded but change nothing here."""
        return sum(1 for e in self.history if e.status_from is None or e.status_from != e.status_to)

    def _status_changed(self, now: datetime, status_from: int | None, status_to: Status) -> list[Envelope]:
        """Every change of the national status, numbered per dossier (``seq``), for the national
        portal's sync (services/portal): one dossier, one sequence, whatever agencies it passes."""
        return self._emit("dossier.status_changed", now, {
            "code": self.code, "seq": self.status_changes(), "status": int(status_to),
            "previous_status": None if status_from is None else int(status_from),
            "channel": CHANNELS[self.channel], "procedure_code": self.procedure_code,
            "handling_agency": self.handling_agency, "changed_at": iso(now)})

    def _record(self, now: datetime, actor: Actor, action: str, status_from: int | None, status_to: int,
                note: dict) -> None:
        self.history.append(HistoryEntry(now, actor.name, actor.unit, action,
                                         None if status_from is None else int(status_from), int(status_to), note))

    def _emit(self, type_: str, now: datetime, payload: dict, version: int = 1) -> list[Envelope]:
        event = new_event(type_, payload, self.unit, occurred_at=now, version=version)
        self.events.append(event)
        return [event]
