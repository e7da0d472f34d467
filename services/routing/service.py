"""Inter-agency routing (liên thông): workflows, legal deadlines, overdue detection, apologies.

Agency HTTP API under /api/v1/ (the official signed in: motcua/runtime/auth.py), report II.06a,
the forms Mẫu 04 and 05, RPC for the gateway, the consumers of intake's and fees' events, and the scheduler that detects breaches as they happen.
"""
from __future__ import annotations

import structlog
from prometheus_client import Counter, Histogram
from werkzeug.wrappers import Response

from motcua.contracts.actors import Actor
from motcua.contracts.calendar import default_calendar
from motcua.contracts.remaining import office_hours_of
from motcua.contracts.periods import parse_period
from motcua.runtime.catalogue import CatalogueReadModel, catalogue_consumer
from motcua.runtime.clock import Clock
from motcua.runtime.inbox import event_consumer
from motcua.runtime.keys import key_files
from motcua.runtime.observability import DatabaseGauge, PlatformService
from motcua.runtime.outbox import OutboxRelay
from motcua.runtime.rpc import rpc
from motcua.runtime.timer import configured_timer
from motcua.runtime.web import answer, http, json_body, official, report_unit
from services.routing import domain, forms, handlers, models, reports, store
from services.routing.unit_of_work import SqlUnitOfWork
from services.routing.workflow import DESK

log = structlog.get_logger("motcua.routing")

DOSSIER_BUCKETS = (300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 345600, 604800, 1209600,
                   1814400, 2592000, 5184000)          # 5 minutes … 60 days
SHARE_BUCKETS = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0)

PROCESSING_SECONDS = Histogram("motcua_processing_seconds", "Wall-clock time from receipt to the result, as the "
                               "citizen lives it, per receiving unit.", ["unit"], buckets=DOSSIER_BUCKETS)
LIMIT_SHARE = Histogram("motcua_processing_limit_share", "Share of the legal time limit used (1.0 is the "
                        "deadline), per receiving unit.", ["unit"], buckets=SHARE_BUCKETS)
STEP_SECONDS = Histogram("motcua_step_seconds", "Time an agency held its step, from hand-over to completion.",
                         ["agency"], buckets=DOSSIER_BUCKETS)
RESOLVED = Counter("motcua_dossiers_resolved_total", "Dossiers processed, by class (early, on_time, late).",
                   ["unit", "result"])
STEPS_COMPLETED = Counter("motcua_steps_completed_total", "Steps completed, by agency and class.",
                          ["agency", "result"])
OVERDUE = Counter("motcua_dossiers_overdue_total", "Dossiers that passed their deadline, by the agency at fault.",
                  ["unit", "agency"])
AT_RISK = Counter("motcua_steps_at_risk_total", "Warnings of a step close to its deadline.", ["agency"])
APOLOGIES = Counter("motcua_apologies_total", "Apology letters (Mẫu 04) issued, by agency.", ["agency"])
APOLOGIES_MISSING = Counter("motcua_apologies_missing_total", "Overdue dossiers flagged for having no apology "
                            "after a working day.", ["unit"])

def measure(events, workflows) -> None:
    """The metrics of what a handler emitted (the workflows it loaded give the times)."""
    calendar = default_calendar()
    for event in events:
        p = event.payload
        if event.type == "dossier.processed":
            workflow = workflows[p["code"]]
            received, resolved = workflow.received_at, workflow.resolved_at
            PROCESSING_SECONDS.labels(workflow.unit).observe((resolved - received).total_seconds())
            if workflow.due_date:
                LIMIT_SHARE.labels(workflow.unit).observe(
                    domain.limit_share(received, resolved, workflow.due_date, calendar))
            RESOLVED.labels(workflow.unit, workflow.result_class).inc()
        elif event.type == "dossier.step_completed":
            step = workflows[p["code"]].step(p["step"])
            STEP_SECONDS.labels(p["agency"]).observe((step.completed_at - step.handed_over_at).total_seconds())
            STEPS_COMPLETED.labels(p["agency"], p["result_class"]).inc()
        elif event.type == "dossier.apology_issued":
            APOLOGIES.labels(p["agency"]).inc()
        elif event.type == "dossier.overdue":
            OVERDUE.labels(event.unit, p["agency"]).inc()
        elif event.type == "dossier.at_risk":
            AT_RISK.labels(p["agency"]).inc()
        elif event.type == "dossier.apology_missing":
            APOLOGIES_MISSING.labels(event.unit).inc()


def apologies_given(session, now):
    return store.apologies_by_agency(session)


def running_dossiers(session, now):
    return store.open_and_overdue(session)


class RoutingService(PlatformService):
    name = "routing"
    outbox = OutboxRelay(models.outbox)
    catalog = CatalogueReadModel()
    catalogue_events = catalogue_consumer()
    now = Clock()
    running_gauge = DatabaseGauge("motcua_dossiers_running", "Dossiers being processed, by receiving unit and "
                                  "deadline (within_deadline, overdue); from the database: max over replicas.",
                                  ["unit", "deadline"], running_dossiers)
    apologies_gauge = DatabaseGauge("motcua_apologies_given", "Apology letters (Mẫu 04) on record, by agency at "
                                    "fault (from the database: max over replicas).", ["agency"], apologies_given)

    def _uow(self, read_only: bool = False) -> SqlUnitOfWork:
        return SqlUnitOfWork(
            self.db, self.outbox, read_only=read_only, now=self.now(), calendar=default_calendar(),
            procedure_version=lambda code, version: self.catalog.get_procedure(code, version=version),
            office_hours=lambda unit: office_hours_of(self.catalog.get_unit(unit)),
            unit=self.catalog.get_unit,
            correlation_id=self.correlation_id, signer=key_files(self.config).signer,
            at_risk_working_days=int(self.config.get("AT_RISK_WORKING_DAYS", 1)))

    def _handle(self, message):
        """Handle a command or an event; once committed, the metrics of the events it caused."""
        uow = self._uow(read_only=isinstance(message, handlers.QUESTIONS))
        result = handlers.handle(message, uow)
        measure(uow.emitted, uow.workflows.seen)
        return result

    def _answer(self, request, command, *args, with_body: bool = True):
        def call():
            actor = official(request)
            extra = (json_body(request),) if with_body else ()
            result = self._handle(command(actor, *args, *extra))
            if request.method == "POST" and isinstance(result, dict):
                log.info("agency action done", action=command.__name__, code=result.get("code"),
                         state=result.get("state"))
            return result
        return answer(call)

    # --- agencies' HTTP API --------------------------------------------------------------------

    @http("GET", "/api/v1/dossiers/<string:code>")
    def http_get(self, request, code):
        return self._answer(request, handlers.GetDossier, code, with_body=False)

    @http("GET", "/api/v1/queue")
    def http_queue(self, request):
        return self._answer(request, handlers.Queue, with_body=False)

    @http("POST", "/api/v1/dossiers/<string:code>/steps/<int:step>/acceptance")
    def http_accept(self, request, code, step):
        return self._answer(request, handlers.Accept, code, step)

    @http("POST", "/api/v1/dossiers/<string:code>/steps/<int:step>/completion")
    def http_complete(self, request, code, step):
        return self._answer(request, handlers.Complete, code, step)

    @http("POST", "/api/v1/dossiers/<string:code>/transfer")
    def http_transfer(self, request, code):
        return self._answer(request, handlers.Transfer, code)

    @http("POST", "/api/v1/dossiers/<string:code>/return-to-desk")
    def http_return_to_desk(self, request, code):
        return self._answer(request, handlers.ReturnToDesk, code)

    @http("POST", "/api/v1/dossiers/<string:code>/obligation")
    def http_obligation(self, request, code):
        return self._answer(request, handlers.RequestObligation, code)

    @http("GET", "/api/v1/dossiers/<string:code>/apology/proposal")
    def http_apology_proposal(self, request, code):
        return self._answer(request, handlers.ProposeApology, code, with_body=False)

    @http("POST", "/api/v1/dossiers/<string:code>/apology")
    def http_apologise(self, request, code):
        return self._answer(request, handlers.Apologise, code)

    # --- the forms -----------------------------------------------------------------------------

    def _unit(self, code: str) -> dict:
        unit = self.catalog.get_unit(code) or {"code": code, "name": code, "short_name": code, "parent": None}
        parent = self.catalog.get_unit(unit["parent"]) if unit.get("parent") else None
        return {"code": unit["code"], "name": unit["name"], "short_name": unit["short_name"],
                "parent_name": parent["name"] if parent else None, "address": unit.get("address")}

    def _agency_name(self, code: str) -> str:
        if code == DESK:
            return code
        unit = self.catalog.get_unit(code)
        return unit["name"] if unit else code

    def _form(self, request, code: str, form: str, fmt: str):
        def make(actor):
            data = self._handle(handlers.ReadForms(actor, code))
            view, applicant = data["view"], data["applicant_name"]
            if form == "mau-05":
                data = {"unit": self._unit(view["unit"]), "code": code, "applicant": applicant,
                        "procedure": {"code": view["procedure"]["code"], "name": view["procedure"]["name"]},
                        "received_at": view["received_at"], "due_date": view["due_date"] or view["original_due_date"],
                        "rows": [{**row, "from": self._agency_name(row["from"]), "to": self._agency_name(row["to"])}
                                 for row in view["control_slip"]]}
                if fmt == "json":
                    return data
            else:
                apology = view["apology"]
                if apology is None:
                    raise domain.Conflict("code", f"dossier {code} has no apology letter")
                data = {"unit": self._unit(apology["agency"]), "code": code,
                        "addressee": applicant,
                        "received_at": view["received_at"],
                        "procedure": {"code": view["procedure"]["code"], "name": view["procedure"]["name"]},
                        "original_due_date": apology["original_due_date"], "new_date": apology["new_date"],
                        "reason": apology["reason"], "official": apology["official"], "issued_at": apology["issued_at"]}
            if fmt == "pdf":
                return Response(forms.render_pdf(form, data), mimetype="application/pdf",
                                headers={"Content-Disposition": f'inline; filename="{form}-{code}.pdf"'})
            if fmt == "html":
                return Response(forms.render_html(form, data), mimetype="text/html")
            raise domain.NotFound("format", f"no such format {fmt}")
        return answer(lambda: make(official(request)))

    @http("GET", "/api/v1/dossiers/<string:code>/control-slip.<string:fmt>")
    def http_control_slip(self, request, code, fmt):
        return self._form(request, code, "mau-05", fmt)

    @http("GET", "/api/v1/dossiers/<string:code>/apology.<string:fmt>")
    def http_apology_letter(self, request, code, fmt):
        return self._form(request, code, "mau-04", fmt if fmt != "json" else "none")

    # --- report II.06a -------------------------------------------------------------------------

    @http("GET", "/api/v1/reports/ii06a")
    def http_report(self, request):
        args = request.args

        def report():
            period = parse_period(args.get("from"), args.get("to"))
            fmt = args.get("format", "json")
            if fmt not in ("json", "csv"):
                raise domain.Invalid("format", "must be json or csv")
            with self.db.transaction() as session:
                result = reports.ii06a(session, report_unit(request), period)
            if fmt == "csv":
                return Response(reports.as_csv(result), mimetype="text/csv",
                                headers={"Content-Disposition": f'attachment; filename="ii06a-{period.first}-{period.last}.csv"'})
            return result
        return answer(report)

    @rpc
    def report_ii06a(self, unit: str | None, start: str, end: str) -> dict:
        period = parse_period(start, end)
        with self.db.transaction() as session:
            return reports.ii06a(session, unit, period)

    # --- RPC for the gateway -----------------------------------------------------------------

    @rpc
    def act(self, official: str, agency: str, code: str, action: str, step: int | None = None,
            body: dict | None = None) -> dict:
        """``action``: accept, complete, transfer, return_to_desk, obligation, apologise."""
        actor = Actor(official, agency)
        if action in ("accept", "complete"):
            command = handlers.Accept if action == "accept" else handlers.Complete
            return self._handle(command(actor, code, step, body or {}))
        commands = {"transfer": handlers.Transfer, "return_to_desk": handlers.ReturnToDesk,
                    "obligation": handlers.RequestObligation, "apologise": handlers.Apologise}
        if action not in commands:
            raise domain.Invalid("action", f"must be accept, complete or one of {', '.join(commands)}")
        return self._handle(commands[action](actor, code, body or {}))

    @rpc
    def get_dossier(self, official: str, agency: str, code: str) -> dict:
        return self._handle(handlers.GetDossier(Actor(official, agency), code))

    # --- what intake and fees report -----------------------------------------------------------

    def _apply(self, events) -> None:
        """A batch of events (``motcua.runtime.inbox``) in one unit of work."""
        uow = self._uow()
        handlers.handle_events(events, uow)
        measure(uow.emitted, uow.workflows.seen)

    @event_consumer("dossier.received")
    def on_received(self, events):
        self._apply(events)

    @event_consumer("dossier.supplement_requested")
    def on_supplement_requested(self, events):
        self._apply(events)

    @event_consumer("dossier.supplement_received")
    def on_supplement_received(self, events):
        self._apply(events)

    @event_consumer("dossier.supplement_rejected")
    def on_supplement_rejected(self, events):
        self._apply(events)

    @event_consumer("dossier.withdrawn")
    def on_withdrawn(self, events):
        self._apply(events)

    @event_consumer("dossier.refused")
    def on_refused(self, events):
        self._apply(events)

    @event_consumer("fees.settled")
    def on_fees_settled(self, events):
        self._apply(events)

    @event_consumer("catalog.units_reorganised")
    def on_units_reorganised(self, events):
        self._apply(events)

    # --- the scheduler -------------------------------------------------------------------------

    @configured_timer("SCAN_SECONDS", interval=5)
    def scan(self):
        """Overdue, at risk, apology missing: detected as they happen; each once (row claims)."""
        counts = self._handle(handlers.Scan())
        if any(counts.values()):
            log.info("breaches detected", **counts)
        return counts

    @configured_timer("ROLLUP_FOLD_SECONDS", interval=5)
    def fold_rollups(self):
        """Report II.06a's change rows into its roll-ups (the report reads both, so this only
        keeps the change rows few)."""
        with self.db.transaction() as session:
            return store.fold_rollup_changes(session)
