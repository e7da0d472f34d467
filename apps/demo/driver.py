"""Drives the plan through the services' HTTP APIs, as the desks, the agencies, the citizens and
the payment gateway would, tick by tick of the simulated clock.

Each tick: the clock moves; the actions due run in plan order (at most one per dossier, so each
sees the effects of the one before); the demo waits for the system to be quiet; routing's scan
runs (overdue, at risk, apology missing) and the system settles again. Nothing reported depends
on the wall clock or on the order in which the services happen to handle their events.
"""
from __future__ import annotations

import heapq
import time as wall
import itertools
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Callable
from urllib.parse import quote

import requests
import requests.adapters
from eventlet.greenpool import GreenPool
import structlog

from motcua.contracts.calendar import TZ, WorkingCalendar, local_date
from apps.demo import plan as planning
from motcua.runtime.logs import mask_text
from apps.demo.plan import Arrival, ProcedureInfo
from apps.demo.stack import GATEWAY_MERCHANT, GATEWAY_SECRET, Stack

log = structlog.get_logger("apps.demo")

OFFICE_TICK = timedelta(minutes=10)
NIGHT_TICK = timedelta(hours=1)

OFFICIAL_NAMES = ("Trần Văn Bình", "Lê Thị Hoa", "Nguyễn Minh Tâm", "Phạm Thị Mai", "Võ Quốc Huy", "Đặng Thu Hà",
                  "Huỳnh Văn Lộc", "Bùi Ngọc Ánh", "Đỗ Thanh Sơn", "Hồ Thị Kim", "Ngô Văn Phát", "Dương Mỹ Linh")


class DemoError(RuntimeError):
    pass


def official(unit: str) -> dict:
    """A named official of a unit: the same name every time (headers as the API wants them)."""
    number = int(unit.split(".")[1])
    return {"X-Official": quote(OFFICIAL_NAMES[number % len(OFFICIAL_NAMES)]), "X-Unit": unit}


def ticks(start: datetime, end: datetime, calendar: WorkingCalendar) -> list[datetime]:
    """Every 10 minutes in office hours (07:30–17:00 of working days), every hour otherwise."""
    moments, at = [], start
    while at < end:
        moments.append(at)
        local = at.astimezone(TZ)
        office = calendar.is_working_day(local.date()) and time(7, 30) <= local.time() < time(17, 0)
        at = at + (OFFICE_TICK if office else NIGHT_TICK)
        if not office:     # never step over the opening of a working day
            local = at.astimezone(TZ)
            opening = datetime.combine(local.date(), time(7, 30), tzinfo=TZ)
            if calendar.is_working_day(local.date()) and at - NIGHT_TICK < opening < at:
                at = opening
    return moments


@dataclass
class Dossier:
    arrival: Arrival
    procedure: ProcedureInfo
    code: str | None = None
    secret: str | None = None
    state: str = "planned"        # planned, submitted, running, processed, returned, stopped, withdrawn, refused
    guided: bool = False
    view: dict | None = None      # routing's latest view
    supplement_asked: bool = False
    supplement_pending: bool = False
    obligation_asked: bool = False
    obligation_pending: bool = False
    overdue_seen: bool = False
    apologised: bool = False
    paid: bool = False
    sequence: itertools.count = field(default_factory=itertools.count)

    @property
    def finished(self) -> bool:
        return self.state in ("returned", "stopped", "withdrawn", "refused")


@dataclass
class Counters:
    guidance_slips: int = 0
    received: int = 0
    submitted_online: int = 0
    desk_refusals: int = 0
    agency_refusals: int = 0
    supplements: int = 0
    obligations: int = 0
    withdrawals: int = 0
    apologies: int = 0
    overdue_detected: int = 0
    payments: dict = field(default_factory=lambda: {"cash": 0, "transfer": 0, "online": 0})
    returned: int = 0


class Driver:
    concurrency = 12

    def __init__(self, stack: Stack, arrivals: list[Arrival], procedures: dict[str, ProcedureInfo],
                 calendar: WorkingCalendar, progress: Callable[[int, int, datetime], None] | None = None):
        self.stack, self.calendar, self.progress = stack, calendar, progress
        self.http = requests.Session()
        self.http.mount("http://", requests.adapters.HTTPAdapter(pool_connections=8, pool_maxsize=self.concurrency))
        self.dossiers = {a.id: Dossier(a, procedures[a.procedure]) for a in arrivals}
        self.queue: list = []
        self.now: datetime | None = None
        self.counters = Counters()
        for arrival in arrivals:
            self._schedule(arrival.at, arrival.id, "arrive")

    # --- scheduling ------------------------------------------------------------------------------

    def _schedule(self, at: datetime, dossier_id: int, action: str, *args) -> None:
        # (time, dossier, its own sequence): the same order on every run, whatever ran side by side
        heapq.heappush(self.queue, (at, dossier_id, next(self.dossiers[dossier_id].sequence), action, args))

    def _later(self, dossier: Dossier, office_hours: float, action: str, *args) -> None:
        self._schedule(planning.office_time(self.now, office_hours, self.calendar), dossier.arrival.id, action, *args)

    def run(self, start: datetime, end: datetime) -> None:
        moments = ticks(start, end, self.calendar) + [end]
        for index, moment in enumerate(moments):
            self.tick(moment)
            if self.progress:
                self.progress(index + 1, len(moments), moment)

    def tick(self, moment: datetime) -> None:
        """The actions due, at most one per dossier (the next waits for the next tick, so that it
        sees the effects of this one), run side by side: each concerns its own dossier, and all
        happen at the same instant of simulated time."""
        self.now = moment
        self.stack.set_clock(moment)
        batch, deferred, acted = [], [], set()
        while self.queue and self.queue[0][0] <= moment:
            item = heapq.heappop(self.queue)
            dossier_id = item[1]
            if dossier_id in acted:
                deferred.append(item)
            elif not self.dossiers[dossier_id].finished or item[3] == "apologise":
                acted.add(dossier_id)
                batch.append(item)
        for item in deferred:
            heapq.heappush(self.queue, item)
        began = wall.perf_counter()
        if batch:
            pool = GreenPool(self.concurrency)
            for _ in pool.imap(self._act, batch):
                pass
        acted_s = wall.perf_counter() - began
        self.stack.quiesce()
        settled_s = wall.perf_counter() - began
        found = self.stack.fire("routing", "scan")
        if found and found.get("overdue"):
            self.stack.quiesce()
            self._look_for_overdue()
        log.info("tick", at=moment.isoformat(), actions=len(batch), acted_s=round(acted_s, 3),
                 settled_s=round(settled_s, 3), total_s=round(wall.perf_counter() - began, 3), found=found)

    def _act(self, item) -> None:
        _, dossier_id, _, action, args = item
        getattr(self, f"_{action}")(self.dossiers[dossier_id], *args)

    # --- HTTP ------------------------------------------------------------------------------------

    def _call(self, method: str, service: str, path: str, *, headers=None, expect=(200, 201), **kwargs) -> dict:
        response = self.http.request(method, self.stack.url(service) + path, headers=headers, timeout=60, **kwargs)
        if response.status_code not in expect:
            raise DemoError(mask_text(f"{method} {service}{path}: {response.status_code} {response.text[:500]}"))
        return response.json() if response.content else {}

    def _routing(self, dossier: Dossier, path: str, agency: str, body: dict | None = None) -> dict:
        dossier.view = self._call("POST", "routing", f"/api/v1/dossiers/{dossier.code}/{path}",
                                  headers=official(agency), json=body or {})
        return dossier.view

    def _refresh(self, dossier: Dossier) -> dict:
        dossier.view = self._call("GET", "routing", f"/api/v1/dossiers/{dossier.code}",
                                  headers=official(dossier.arrival.unit))
        return dossier.view

    def _submission(self, dossier: Dossier, documents) -> dict:
        a = dossier.arrival
        body = {"procedure_code": a.procedure, "applicant": a.citizen.as_applicant(), "channel": a.channel,
                "documents": [dict(d) for d in documents], "sets": dossier.procedure.sets,
                "quantities": {"pages": a.pages, "copies": a.copies}}
        body["notifications"] = {"channels": ["sms"]}     # e-mail is not simulated
        return body

    # --- the desk and the citizen ----------------------------------------------------------------

    def _arrive(self, dossier: Dossier) -> None:
        a = dossier.arrival
        if a.channel == "online":
            body = {**self._submission(dossier, a.documents), "unit": a.unit}
            answer = self._call("POST", "intake", "/api/v1/online-submissions", json=body,
                                headers={"X-Forwarded-For": f"10.{a.id // 65536 % 256}.{a.id // 256 % 256}.{a.id % 256}"})
            dossier.code, dossier.secret, dossier.state = answer["code"], answer["secret"], "submitted"
            self.counters.submitted_online += 1
            self._later(dossier, a.fate.accept_after, "review")
            return
        if a.fate.incomplete_first and not dossier.guided:
            # The desk checks: one document missing, a guidance slip; the citizen comes back.
            body = self._submission(dossier, a.documents[:-1])
            answer = self._call("POST", "intake", "/api/v1/dossiers/check", headers=official(a.unit), json=body)
            if answer.get("complete"):
                raise DemoError(f"a dossier without {a.documents[-1]['name']} was found complete")
            dossier.guided = True
            self.counters.guidance_slips += 1
            self._later(dossier, planning.OFFICE_DAY_HOURS, "arrive")
            return
        answer = self._call("POST", "intake", "/api/v1/dossiers", headers=official(a.unit),
                            json=self._submission(dossier, a.documents))
        dossier.code = answer["code"]
        self._received(dossier)

    def _review(self, dossier: Dossier) -> None:
        """The desk officer looks at an online submission: refuses it or receives it."""
        unit = dossier.arrival.unit
        if dossier.arrival.fate.desk_refusal:
            self._call("POST", "intake", f"/api/v1/dossiers/{dossier.code}/refusal", headers=official(unit),
                       json={"reason": "Hồ sơ không thuộc thẩm quyền giải quyết của đơn vị"})
            dossier.state = "refused"
            self.counters.desk_refusals += 1
            return
        self._call("POST", "intake", f"/api/v1/dossiers/{dossier.code}/acceptance", headers=official(unit), json={})
        self._received(dossier)

    def _received(self, dossier: Dossier) -> None:
        fate = dossier.arrival.fate
        dossier.state = "running"
        self.counters.received += 1
        if fate.payment:
            if fate.payment == "online":     # the citizen pays online, at any hour
                self._schedule(self.now + timedelta(hours=fate.pay_after), dossier.arrival.id, "pay", fate.payment)
            else:
                self._later(dossier, fate.pay_after, "pay", fate.payment)
        self._later(dossier, fate.paces[0].accept_after, "accept", 0)
        if fate.withdraw_after is not None:
            self._later(dossier, fate.withdraw_after, "withdraw")

    def _pay(self, dossier: Dossier, method: str) -> None:
        unit = dossier.arrival.unit
        account = self._call("GET", "fees", f"/api/v1/dossiers/{dossier.code}", headers=official(unit))
        amount = account["outstanding"]
        if amount > 0:
            reference = f"{method.upper()}-{dossier.code}-{len(account['payments']) + 1}"
            if method == "online":
                from services.fees.domain import sign
                params = {"merchant": GATEWAY_MERCHANT, "transaction_id": reference, "order": dossier.code,
                          "amount": str(amount), "currency": "VND", "timestamp": self.now.isoformat()}
                params["signature"] = sign(params, GATEWAY_SECRET)
                self._call("POST", "fees", "/api/v1/gateway/callback", data=params)
            else:
                self._call("POST", "fees", f"/api/v1/dossiers/{dossier.code}/payments", headers=official(unit),
                           json={"method": method, "amount": amount, "reference": reference})
            self.counters.payments[method] += 1
        dossier.paid = True
        if dossier.obligation_pending:        # the obligation is paid: the tax office goes on
            dossier.obligation_pending = False
            self._later(dossier, 0.5, "complete", dossier.view["stage"])

    def _bring_supplement(self, dossier: Dossier, stage: int) -> None:
        intake = self._call("GET", "intake", f"/api/v1/dossiers/{dossier.code}", headers=official(dossier.arrival.unit))
        if intake["status"] != 5:
            raise DemoError(f"{dossier.code}: a supplement was asked but the dossier is in status {intake['status']}")
        documents = intake["supplement"]["documents"]
        self._call("POST", "intake", f"/api/v1/dossiers/{dossier.code}/supplement",
                   headers=official(dossier.arrival.unit), json={"documents": documents})
        dossier.supplement_pending = False
        self._later(dossier, max(dossier.arrival.fate.paces[stage].work * 0.3, 0.2), "complete", stage)

    def _withdraw(self, dossier: Dossier) -> None:
        if dossier.state != "running" or dossier.obligation_pending:
            return
        self._call("POST", "intake", f"/api/v1/dossiers/{dossier.code}/withdrawal",
                   headers=official(dossier.arrival.unit), json={"reason": "Công dân có đơn xin rút hồ sơ"})
        dossier.state = "withdrawn"
        self.counters.withdrawals += 1

    def _collect(self, dossier: Dossier) -> None:
        unit = dossier.arrival.unit
        answer = self.http.post(f"{self.stack.url('intake')}/api/v1/dossiers/{dossier.code}/return",
                                headers=official(unit), json={"collected_by": dossier.arrival.citizen.name}, timeout=60)
        if answer.status_code == 409 and answer.json().get("field") == "fees":
            self._later(dossier, 2.0, "collect")          # not paid yet: comes back later
            return
        if answer.status_code != 200:
            raise DemoError(mask_text(f"POST intake return of {dossier.code}: {answer.status_code} {answer.text[:500]}"))
        dossier.state = "returned"
        self.counters.returned += 1

    # --- the agencies ----------------------------------------------------------------------------

    def _stage_steps(self, dossier: Dossier, stage: int) -> list[dict]:
        return [s for s in dossier.view["steps"] if s["stage"] == stage]

    def _accept(self, dossier: Dossier, stage: int) -> None:
        view = dossier.view or self._refresh(dossier)     # the first stage: routing started it from an event
        if view["state"] != "running":
            return
        for step in self._stage_steps(dossier, stage):
            if step["state"] == "handed_over":
                self._routing(dossier, f"steps/{step['id']}/acceptance", step["agency"])
        self._later(dossier, dossier.arrival.fate.paces[stage].work, "complete", stage)

    def _complete(self, dossier: Dossier, stage: int) -> None:
        fate = dossier.arrival.fate
        view = dossier.view                               # the driver's own last answer from routing
        if view["state"] != "running" or dossier.supplement_pending or dossier.obligation_pending:
            return
        steps = [s for s in self._stage_steps(dossier, stage) if s["state"] == "held"]
        if not steps:
            return
        first = steps[0]
        if fate.supplement_stage == stage and not dossier.supplement_asked:
            dossier.supplement_asked = dossier.supplement_pending = True
            document = planning.SUPPLEMENT_DOCUMENTS[dossier.arrival.id % len(planning.SUPPLEMENT_DOCUMENTS)]
            self._routing(dossier, f"steps/{first['id']}/completion", first["agency"], {
                "result": "needs_supplement", "documents": [dict(document)],
                "reason": "Hồ sơ thiếu giấy tờ cần thiết để thẩm định"})
            self.counters.supplements += 1
            self._later(dossier, fate.supplement_after, "bring_supplement", stage)
            return
        tax = next((s for s in steps if s["agency"] == planning.TAX_AGENCY), None)
        if tax and fate.obligation and not dossier.obligation_asked:
            dossier.obligation_asked = dossier.obligation_pending = True
            self._routing(dossier, "obligation", tax["agency"], {
                "description": "Thuế thu nhập cá nhân và lệ phí trước bạ", "amount": fate.obligation})
            self.counters.obligations += 1
            self._later(dossier, fate.obligation_paid_after, "pay", "transfer")
            return
        if fate.refuse_stage == stage:
            self._routing(dossier, f"steps/{first['id']}/completion", first["agency"], {
                "result": "refuse", "note": "Không đủ điều kiện giải quyết theo quy định"})
            dossier.state = "stopped"
            self.counters.agency_refusals += 1
            return
        for step in steps:
            self._routing(dossier, f"steps/{step['id']}/completion", step["agency"],
                          {"result": "done", "note": "Đã thẩm định, đủ điều kiện"})
        if any(s["state"] != "done" for s in self._stage_steps(dossier, stage)):
            return                                       # a parallel step not yet accepted: its own turn
        if stage + 1 < len(fate.paces):
            self._routing(dossier, "transfer", first["agency"])
            self._later(dossier, fate.paces[stage + 1].accept_after, "accept", stage + 1)
        else:
            self._routing(dossier, "return-to-desk", first["agency"])
            dossier.state = "processed"
            self._later(dossier, fate.collect_after, "collect")

    def _apologise(self, dossier: Dossier) -> None:
        view = self._refresh(dossier)      # an apology is owed even when the result came late since
        if view["apology"] is not None or not view["overdue_agency"]:
            return
        self._routing(dossier, "apology", view["overdue_agency"], {"reason": dossier.arrival.fate.apology_reason})
        dossier.apologised = True
        self.counters.apologies += 1

    def _look_for_overdue(self) -> None:
        """After a scan found overdue dossiers: the agencies at fault learn it and apologise."""
        today = local_date(self.now)
        for dossier in self.dossiers.values():
            if dossier.state != "running" or dossier.overdue_seen:
                continue
            due = dossier.view.get("due_date") if dossier.view else None
            if dossier.view is not None and (due is None or date.fromisoformat(due) >= today):
                continue
            view = self._refresh(dossier)
            if view["overdue_at"]:
                dossier.overdue_seen = True
                self.counters.overdue_detected += 1
                if dossier.arrival.fate.apology_after is not None:
                    self._later(dossier, dossier.arrival.fate.apology_after, "apologise")

    # --- the end ---------------------------------------------------------------------------------

    def final_views(self) -> list[dict]:
        """Routing's view of every dossier it knows, in plan order."""
        views = []
        for dossier in self.dossiers.values():
            if dossier.code and dossier.state not in ("submitted", "refused", "planned"):
                view = self._refresh(dossier)
                views.append({"id": dossier.arrival.id, "demo_state": dossier.state, **view})
        return views
