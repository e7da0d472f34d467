"""The reception desk (Bộ phận tiếp nhận và trả kết quả): thin entry points over ``handlers``.

Desk HTTP API under /api/v1/ (the official signed in: motcua/runtime/auth.py),
the public status lookup, RPC for the other services and the gateway, and the consumers of
what routing and fees report.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import structlog
from jinja2 import Environment, FileSystemLoader, select_autoescape
from prometheus_client import Counter
from werkzeug.wrappers import Response

from motcua.contracts.actors import Actor
from motcua.contracts.calendar import default_calendar, local_date
from motcua.contracts.periods import parse_period
from motcua.contracts.refusals import Conflict, Forbidden, Invalid, Refusal
from motcua.runtime.catalogue import CatalogueReadModel, catalogue_consumer
from motcua.runtime.clock import Clock
from motcua.runtime.inbox import event_consumer
from motcua.runtime.observability import DatabaseGauge, PlatformService, error_response
from motcua.runtime.outbox import OutboxRelay
from motcua.runtime.pii import PiiKeys
from motcua.runtime.ratelimit import RateLimiter
from motcua.runtime.rpc import rpc
from motcua.runtime.web import answer, http, json_body, official, retry_later
from services.intake import forms, handlers, models, page_dates, printing, store
from services.intake.unit_of_work import SqlDossierRepository, SqlUnitOfWork
from services.intake.views import summary

RECEIVED = Counter("motcua_dossiers_received_total", "Dossiers received at a desk, by unit and channel.",
                   ["unit", "channel"])
REFUSED = Counter("motcua_dossiers_refused_total", "Dossiers refused at a desk (Mẫu 03).", ["unit"])
SUPPLEMENTS = Counter("motcua_supplement_requests_total", "Supplement requests (Mẫu 02), by who asked.",
                      ["unit", "requested_by"])
WITHDRAWN = Counter("motcua_dossiers_withdrawn_total", "Dossiers withdrawn by the applicant.", ["unit"])
RETURNED = Counter("motcua_dossiers_returned_total", "Results returned, by class (early, on_time, late).",
                   ["unit", "result"])
INCOMPLETE = Counter("motcua_dossiers_incomplete_total", "Checks that found a dossier incomplete (guidance slip).",
                     ["unit"])

log = structlog.get_logger("motcua.intake")
PAGES = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                    autoescape=select_autoescape(["html"]))
PAGES.filters.update(page_dates.FILTERS)  # the status page's dates as a Vietnamese reader writes them


def open_dossiers(session, now):
    return [(unit, status, count) for unit, status, count in store.open_counts(session)]


class IntakeService(PlatformService):
    name = "intake"
    outbox = OutboxRelay(models.outbox)
    pii = PiiKeys()
    catalog = CatalogueReadModel()
    catalogue_events = catalogue_consumer()
    now = Clock()
    open_gauge = DatabaseGauge("motcua_dossiers_open", "Dossiers not yet returned nor closed, by unit and status "
                               "(from the database: max over replicas).", ["unit", "status"], open_dossiers)
    status_limiter = RateLimiter(per_minute=30, burst=10)

    # --- plumbing ------------------------------------------------------------------------

    def _uow(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.db, catalogue=_Catalogue(self.catalog), calendar=default_calendar(),
                             emit=self.outbox, pii=self.pii, correlation_id=self.correlation_id,
                             lines_per_volume=int(self.config.get("BOOK_LINES_PER_VOLUME", 1000)))

    def _handle(self, type_: str, actor: Actor | None = None, code: str | None = None, body=None, event=None):
        """Run one command through its handler in one transaction; then count what it caused."""
        uow = self._uow()
        result = handlers.handle(handlers.Command(type_, self.now(), actor, code, body, event), uow)
        count(uow.events)
        return result

    def _call(self, use_case, *args):
        """A query that is not a command of the dossier (lists, the book): one read-only transaction."""
        with self.db.transaction() as session:
            return use_case(session, self.now(), *args)

    def _answer(self, request, type_: str, code: str | None = None, *, status: int = 200, with_body: bool = True):
        def call():
            actor = official(request)
            try:
                result = self._handle(type_, actor, code, json_body(request) if with_body else None)
            except handlers.Incomplete:
                INCOMPLETE.labels(actor.unit).inc()
                raise
            if request.method == "POST" and isinstance(result, dict):
                log.info("desk action done", action=type_, code=result.get("code"),
                         unit=result.get("unit"), status=result.get("status"))
            return result
        return answer(call, status=status)

    def _query(self, request, query):
        return answer(lambda: self._call(query, official(request)))

    # --- the desk's HTTP API -------------------------------------------------------------

    @http("POST", "/api/v1/dossiers/check")
    def http_check(self, request):
        return self._answer(request, "check")

    @http("POST", "/api/v1/dossiers")
    def http_receive(self, request):
        return self._answer(request, "receive", status=201)

    @http("POST", "/api/v1/dossiers/<string:code>/acceptance")
    def http_accept(self, request, code):
        return self._answer(request, "accept", code, with_body=False)

    @http("POST", "/api/v1/dossiers/<string:code>/refusal")
    def http_refuse(self, request, code):
        return self._answer(request, "refuse", code)

    @http("POST", "/api/v1/dossiers/<string:code>/supplement-request")
    def http_request_supplement(self, request, code):
        return self._answer(request, "request_supplement", code)

    @http("POST", "/api/v1/dossiers/<string:code>/supplement")
    def http_receive_supplement(self, request, code):
        return self._answer(request, "receive_supplement", code)

    @http("POST", "/api/v1/dossiers/<string:code>/withdrawal")
    def http_withdraw(self, request, code):
        return self._answer(request, "withdraw", code)

    @http("POST", "/api/v1/dossiers/<string:code>/return")
    def http_return(self, request, code):
        return self._answer(request, "return", code)

    @http("GET", "/api/v1/dossiers/<string:code>")
    def http_get(self, request, code):
        return self._answer(request, "get", code, with_body=False)

    @http("GET", "/api/v1/dossiers")
    def http_search(self, request):
        def search(session, now, actor):
            query = request.args.get("q", "").strip()
            if not query:
                raise Invalid("q", "is required: a dossier code, a citizen ID number, a phone number or a name")
            return {"dossiers": [summary(row) for row in store.search(session, actor.unit, query, self.pii)]}
        return self._query(request, search)

    @http("GET", "/api/v1/due")
    def http_due(self, request):
        def due(session, now, actor):
            today = local_date(now)
            due_today, overdue = store.due(session, actor.unit, today)
            return {"date": today.isoformat(), "due_today": [summary(r) for r in due_today],
                    "overdue": [summary(r) for r in overdue]}
        return self._query(request, due)

    @http("GET", "/api/v1/tracking-book")
    def http_tracking_book(self, request):
        args = request.args

        def book(session, now, actor):
            fmt = args.get("format", "json")
            if fmt not in ("json", "html", "pdf"):
                raise Invalid("format", "must be json, html or pdf")
            if fmt == "json":
                return tracking_book(session, now, actor, args.get("unit"), args.get("from"), args.get("to"),
                                     self.catalog.get_unit)
            unit, rows, first, last = book_rows(session, actor, args.get("unit"), args.get("from"), args.get("to"),
                                                self.catalog.get_unit)
            data = printing.tracking_book(rows, *self._unit_and_parent(unit), first, last, self._agency_name)
            return self._document("mau-06", data, fmt, f"so-theo-doi-{unit}-{first}-{last}")
        return self._query(request, book)

    # --- the forms -----------------------------------------------------------------------

    def _unit_and_parent(self, code: str):
        unit = self.catalog.get_unit(code)
        parent = self.catalog.get_unit(unit["parent"]) if unit and unit.get("parent") else None
        return unit, parent

    def _agency_name(self, code: str) -> str:
        unit = self.catalog.get_unit(code)
        return unit["name"] if unit else code

    @staticmethod
    def _document(form: str, data: dict, fmt: str, filename: str) -> Response:
        if fmt == "pdf":
            return Response(forms.render_pdf(form, data), mimetype="application/pdf",
                            headers={"Content-Disposition": f'inline; filename="{filename}.pdf"'})
        return Response(forms.render_html(form, data), mimetype="text/html")

    def _form(self, request, code: str, form: str, fmt: str):
        def make(session, now, actor):
            dossier = handlers.load_for_reading(_Reading(session, self.pii), actor, code)
            unit, parent = self._unit_and_parent(dossier.unit)
            if form == "mau-01":
                if dossier.book_line is None:
                    raise Conflict("status", "the dossier has not been received: no receipt")
                data = printing.receipt(dossier, unit, parent, self._status_url(request, dossier))
            elif form == "mau-02":
                if dossier.supplement is None:
                    raise Conflict("supplement", "no supplement was requested for this dossier")
                data = printing.supplement_request(dossier, unit, parent)
            else:
                if dossier.refusal is None:
                    raise Conflict("status", "the dossier was not refused")
                data = printing.refusal(dossier, unit, parent)
            return self._document(form, data, fmt, f"{form}-{code}")
        return self._query(request, make)

    def _status_url(self, request, row) -> str:
        base = self.config.get("PUBLIC_URL") or request.host_url.rstrip("/")
        return f"{base.rstrip('/')}/tra-cuu?{urlencode({'code': row.code, 'secret': row.secret})}"

    @http("GET", "/api/v1/dossiers/<string:code>/receipt.<string:fmt>")
    def http_receipt(self, request, code, fmt):
        return self._form(request, code, "mau-01", fmt) if fmt in ("pdf", "html") else error_response(404, "no such form")

    @http("GET", "/api/v1/dossiers/<string:code>/supplement-request.<string:fmt>")
    def http_supplement_form(self, request, code, fmt):
        return self._form(request, code, "mau-02", fmt) if fmt in ("pdf", "html") else error_response(404, "no such form")

    @http("GET", "/api/v1/dossiers/<string:code>/refusal.<string:fmt>")
    def http_refusal_form(self, request, code, fmt):
        return self._form(request, code, "mau-03", fmt) if fmt in ("pdf", "html") else error_response(404, "no such form")

    # --- citizens --------------------------------------------------------------------------

    def _limited(self, request) -> Response | None:
        client = request.remote_addr or "?"
        if self.config.get("TRUST_FORWARDED_FOR"):   # only behind a proxy that sets it
            client = request.headers.get("X-Forwarded-For", "").split(",")[0].strip() or client
        allowed, wait = self.status_limiter.allow(client)
        if allowed:
            return None
        return retry_later(error_response(429, f"too many requests: try again in {int(wait) + 1} s", "rate"), wait)

    @http("GET", "/api/v1/status/<string:code>")
    def http_status(self, request, code):
        return self._limited(request) or answer(
            lambda: self._handle("public_status", code=code, body=request.args.get("secret", "")))

    @http("POST", "/api/v1/online-submissions")
    def http_submit_online(self, request):
        """The citizens' portal: a dossier submitted online waits for a desk officer (status 1)."""
        def submit():
            dossier = self._handle("submit_online", body=json_body(request))
            return {"code": dossier["code"], "status": dossier["status"], "status_text": dossier["status_text"],
                    "secret": dossier["secret"]}
        return self._limited(request) or answer(submit, status=201)

    # --- RPC (the gateway, the other services) ----------------------------------------------

    @rpc
    def receive(self, official: str, unit: str, dossier: dict) -> dict:
        return self._handle("receive", Actor(official, unit), body=dossier)

    @rpc
    def check(self, official: str, unit: str, dossier: dict) -> dict:
        return self._handle("check", Actor(official, unit), body=dossier)

    @rpc
    def get_dossier(self, official: str, unit: str, code: str) -> dict:
        return self._handle("get", Actor(official, unit), code)

    @rpc
    def tracking_book(self, official: str, unit: str, start: str | None = None, end: str | None = None) -> dict:
        """The lines of the unit's tracking book (Mẫu 06) received between two dates."""
        return self._call(tracking_book, Actor(official, unit), unit, start, end, self.catalog.get_unit)

    @rpc
    def act(self, official: str, unit: str, code: str, action: str, body: dict | None = None) -> dict:
        """``action``: accept, refuse, request_supplement, receive_supplement, withdraw, return."""
        actions = ("refuse", "request_supplement", "receive_supplement", "withdraw", "return")
        if action == "accept":
            return self._handle("accept", Actor(official, unit), code)
        if action not in actions:
            raise Invalid("action", f"must be accept or one of {', '.join(actions)}")
        return self._handle(action, Actor(official, unit), code, body or {})

    # --- what routing and fees report: one consumer per event type of HANDLERS (below) --------

    def _consume(self, events) -> None:
        """A batch of events (``motcua.runtime.inbox``) in one unit of work."""
        uow = self._uow()
        now = self.now()
        handlers.handle_events([handlers.Command(event.type, now, event=event) for event in events], uow)
        count(uow.events)

    # --- the public status page (the QR code on the receipt points here) ---------------------

    @http("GET", "/tra-cuu")
    def page_status(self, request):
        refused = self._limited(request)
        if refused:
            return refused
        code, secret = request.args.get("code", ""), request.args.get("secret", "")
        try:
            status = self._handle("public_status", code=code, body=secret)
        except Refusal:
            status = None
        page = PAGES.get_template("status.html").render(status=status, code=code)
        return Response(page, mimetype="text/html", status=200 if status else 404)


def consumer_name(event_type: str) -> str:
    """The method, hence the queue (``intake.<method>``): dossier.step_started -> on_step_started."""
    return "on_" + event_type.removeprefix("dossier.").replace(".", "_")


def _consumer(event_type: str):
    def consume(self, events):
        self._consume(events)
    consume.__name__ = consume.__qualname__ = consumer_name(event_type)
    return consume


for _type in handlers.CONSUMED:
    setattr(IntakeService, consumer_name(_type), event_consumer(_type)(_consumer(_type)))


def count(events) -> None:
    """The desk's counters, from the events a command caused (never from its answer)."""
    for event in events:
        payload = event.payload
        if event.type == "dossier.received":
            RECEIVED.labels(event.unit, payload["channel"]).inc()
        elif event.type == "dossier.refused":
            REFUSED.labels(event.unit).inc()
        elif event.type == "dossier.supplement_requested":
            SUPPLEMENTS.labels(event.unit, "desk" if payload["requested_by"] == "desk" else "agency").inc()
        elif event.type == "dossier.withdrawn":
            WITHDRAWN.labels(event.unit).inc()
        elif event.type == "dossier.returned":
            RETURNED.labels(event.unit, payload["result_class"]).inc()


class _Reading:
    """A repository for reading only, in a query's transaction."""

    def __init__(self, session, pii):
        self.dossiers = SqlDossierRepository(session, pii)


class _Catalogue:
    """The catalogue as the handlers see it (units remembered for the command)."""

    def __init__(self, proxy):
        self.proxy, self.units = proxy, {}

    def unit(self, code: str) -> dict | None:
        if code not in self.units:
            self.units[code] = self.proxy.get_unit(code)
        return self.units[code]

    def procedure_in_force(self, code: str, at) -> dict | None:
        return self.proxy.get_procedure(code, at=at.isoformat())


def book_rows(session, actor: Actor, unit: str | None, start, end, unit_of=lambda code: None) -> tuple:
    """The book's lines of ``unit`` (default: the official's own) between two dates; also the book
    of a desk a reorganisation merged into the official's (``unit_of``: the catalogue's entry)."""
    unit = unit or actor.unit
    if unit != actor.unit and not actor.district_wide and (unit_of(unit) or {}).get("successor") != actor.unit:
        raise Forbidden("unit", f"an official of {actor.unit} cannot read the book of {unit}")
    period = parse_period(start, end)
    return unit, store.tracking_book(session, unit, period.begin, period.end), period.first, period.last


def tracking_book(session, now, actor: Actor, unit: str | None, start, end, unit_of=lambda code: None) -> dict:
    unit, rows, first, last = book_rows(session, actor, unit, start, end, unit_of)
    return {"unit": unit, "from": first.isoformat(), "to": last.isoformat(),
            "lines": [dict(summary(r), line=r.book_line, volume=r.book_volume) for r in rows]}
