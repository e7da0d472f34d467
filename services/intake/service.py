"""The reception desk (Bộ phận tiếp nhận và trả kết quả): thin entry points over ``desk``.

Desk HTTP API under /api/v1/ (the acting official in ``X-Official``, the unit in ``X-Unit``),
the public status lookup, RPC for the other services and the gateway, and the consumers of
what routing and fees report.
"""
from __future__ import annotations

import json
from urllib.parse import urlencode

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from nameko.web.handlers import http
import structlog
from prometheus_client import Counter
from werkzeug.wrappers import Response

from motcua.contracts.calendar import TZ, default_calendar, local_date
from motcua.contracts.periods import parse_period
from motcua.runtime.catalogue import CatalogueReadModel, catalogue_consumer
from motcua.runtime.clock import Clock
from motcua.runtime.inbox import event_consumer, first_time
from motcua.runtime.observability import DatabaseGauge, PlatformService, error_response
from motcua.runtime.outbox import OutboxRelay
from motcua.runtime.ratelimit import RateLimiter
from motcua.runtime.rpc import rpc
from motcua.runtime.web import answer, json_body, official
from services.intake import desk, domain, forms, models, printing, store
from services.intake.desk import Actor

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
def open_dossiers(session, now):
    return [(unit, status, count) for unit, status, count in store.open_counts(session)]


class IntakeService(PlatformService):
    name = "intake"
    outbox = OutboxRelay(models.outbox)
    catalog = CatalogueReadModel()
    catalogue_events = catalogue_consumer()
    now = Clock()
    open_gauge = DatabaseGauge("motcua_dossiers_open", "Dossiers not yet returned nor closed, by unit and status "
                               "(from the database: max over replicas).", ["unit", "status"], open_dossiers)
    status_limiter = RateLimiter(per_minute=30, burst=10)

    # --- plumbing ------------------------------------------------------------------------

    def _context(self, session) -> desk.Context:
        units: dict = {}

        def unit_of(code: str):
            if code not in units:
                units[code] = self.catalog.get_unit(code)
            return units[code]

        return desk.Context(
            session=session, now=self.now(), calendar=default_calendar(),
            procedure_in_force=lambda code, at: self.catalog.get_procedure(code, at=at.isoformat()),
            unit_of=unit_of, emit=self.outbox, correlation_id=self.correlation_id,
            lines_per_volume=int(self.config.get("BOOK_LINES_PER_VOLUME", 1000)))

    def _call(self, use_case, *args):
        """Run a use case in one transaction; DeskError -> nothing changed, the error raised."""
        with self.db.transaction() as session:
            return use_case(self._context(session), *args)

    def _answer(self, request, use_case, *args, status: int = 200, with_body: bool = True):
        def call():
            actor = Actor(*official(request))
            extra = (json_body(request),) if with_body else ()
            try:
                result = self._call(use_case, actor, *args, *extra)
            except desk.Incomplete:
                INCOMPLETE.labels(actor.unit).inc()
                raise
            if request.method == "POST" and isinstance(result, dict):
                log.info("desk action done", action=use_case.__name__, code=result.get("code"),
                         unit=result.get("unit"), status=result.get("status"))
            return result
        return answer(call, status=status)

    # --- the desk's HTTP API -------------------------------------------------------------

    @http("POST", "/api/v1/dossiers/check")
    def http_check(self, request):
        return self._answer(request, desk.check)

    @http("POST", "/api/v1/dossiers")
    def http_receive(self, request):
        response = self._answer(request, desk.receive, status=201)
        if response.status_code == 201:
            dossier = json.loads(response.get_data())
            RECEIVED.labels(dossier["unit"], dossier["channel"]).inc()
        return response

    @http("POST", "/api/v1/dossiers/<string:code>/acceptance")
    def http_accept(self, request, code):
        response = self._answer(request, desk.accept, code, with_body=False)
        if response.status_code == 200:
            dossier = json.loads(response.get_data())
            RECEIVED.labels(dossier["unit"], dossier["channel"]).inc()
        return response

    @http("POST", "/api/v1/dossiers/<string:code>/refusal")
    def http_refuse(self, request, code):
        response = self._answer(request, desk.refuse, code)
        if response.status_code == 200:
            REFUSED.labels(json.loads(response.get_data())["unit"]).inc()
        return response

    @http("POST", "/api/v1/dossiers/<string:code>/supplement-request")
    def http_request_supplement(self, request, code):
        response = self._answer(request, desk.request_supplement, code)
        if response.status_code == 200:
            SUPPLEMENTS.labels(json.loads(response.get_data())["unit"], "desk").inc()
        return response

    @http("POST", "/api/v1/dossiers/<string:code>/supplement")
    def http_receive_supplement(self, request, code):
        return self._answer(request, desk.receive_supplement, code)

    @http("POST", "/api/v1/dossiers/<string:code>/withdrawal")
    def http_withdraw(self, request, code):
        response = self._answer(request, desk.withdraw, code)
        if response.status_code == 200:
            WITHDRAWN.labels(json.loads(response.get_data())["unit"]).inc()
        return response

    @http("POST", "/api/v1/dossiers/<string:code>/return")
    def http_return(self, request, code):
        response = self._answer(request, desk.return_result, code)
        if response.status_code == 200:
            dossier = json.loads(response.get_data())
            RETURNED.labels(dossier["unit"], dossier["result_class"]).inc()
        return response

    @http("GET", "/api/v1/dossiers/<string:code>")
    def http_get(self, request, code):
        return self._answer(request, desk.get, code, with_body=False)

    @http("GET", "/api/v1/dossiers")
    def http_search(self, request):
        def search(ctx, actor):
            query = request.args.get("q", "").strip()
            if not query:
                raise domain.Invalid("q", "is required: a dossier code, a citizen ID number or a name")
            return {"dossiers": [summary(row) for row in store.search(ctx.session, actor.unit, query)]}
        return self._answer(request, search, with_body=False)

    @http("GET", "/api/v1/due")
    def http_due(self, request):
        def due(ctx, actor):
            today = local_date(ctx.now)
            due_today, overdue = store.due(ctx.session, actor.unit, today)
            return {"date": today.isoformat(), "due_today": [summary(r) for r in due_today],
                    "overdue": [summary(r) for r in overdue]}
        return self._answer(request, due, with_body=False)

    @http("GET", "/api/v1/tracking-book")
    def http_tracking_book(self, request):
        args = request.args

        def book(ctx, actor):
            fmt = args.get("format", "json")
            if fmt not in ("json", "html", "pdf"):
                raise domain.Invalid("format", "must be json, html or pdf")
            if fmt == "json":
                return tracking_book(ctx, actor, args.get("unit"), args.get("from"), args.get("to"))
            unit, rows, first, last = book_rows(ctx, actor, args.get("unit"), args.get("from"), args.get("to"))
            data = printing.tracking_book(rows, *self._unit_and_parent(unit), first, last, self._agency_name)
            return self._document("mau-06", data, fmt, f"so-theo-doi-{unit}-{first}-{last}")
        return self._answer(request, book, with_body=False)

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
        def make(ctx, actor):
            row = desk._load(ctx, code, actor, for_update=False, read_only=True)
            unit, parent = self._unit_and_parent(row.unit)
            if form == "mau-01":
                if row.book_line is None:
                    raise domain.Conflict("status", "the dossier has not been received: no receipt")
                url = self._status_url(request, row)
                data = printing.receipt(row, unit, parent, url)
            elif form == "mau-02":
                if row.supplement is None:
                    raise domain.Conflict("supplement", "no supplement was requested for this dossier")
                data = printing.supplement_request(row, unit, parent)
            else:
                if row.refusal is None:
                    raise domain.Conflict("status", "the dossier was not refused")
                data = printing.refusal(row, unit, parent)
            return self._document(form, data, fmt, f"{form}-{code}")
        return self._answer(request, make, with_body=False)

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
        return error_response(429, f"too many requests: try again in {int(wait) + 1} s", "rate")

    @http("GET", "/api/v1/status/<string:code>")
    def http_status(self, request, code):
        return self._limited(request) or answer(
            lambda: self._call(desk.public_status, code, request.args.get("secret", "")))

    @http("POST", "/api/v1/online-submissions")
    def http_submit_online(self, request):
        """The citizens' portal: a dossier submitted online waits for a desk officer (status 1)."""
        def submit():
            body = json_body(request)
            if not isinstance(body, dict):
                raise domain.Invalid("body", "must be a JSON object")
            dossier = self._call(desk.receive, Actor("citizen", None), {**body, "channel": "online"})
            return {"code": dossier["code"], "status": dossier["status"], "status_text": dossier["status_text"],
                    "secret": dossier["secret"]}
        return self._limited(request) or answer(submit, status=201)

    # --- RPC (the gateway, the other services) ----------------------------------------------

    @rpc
    def receive(self, official: str, unit: str, dossier: dict) -> dict:
        return self._call(desk.receive, Actor(official, unit), dossier)

    @rpc
    def check(self, official: str, unit: str, dossier: dict) -> dict:
        return self._call(desk.check, Actor(official, unit), dossier)

    @rpc
    def get_dossier(self, official: str, unit: str, code: str) -> dict:
        return self._call(desk.get, Actor(official, unit), code)

    @rpc
    def tracking_book(self, official: str, unit: str, start: str | None = None, end: str | None = None) -> dict:
        """The lines of the unit's tracking book (Mẫu 06) received between two dates."""
        return self._call(tracking_book, Actor(official, unit), unit, start, end)

    @rpc
    def act(self, official: str, unit: str, code: str, action: str, body: dict | None = None) -> dict:
        """``action``: accept, refuse, request_supplement, receive_supplement, withdraw, return."""
        use_cases = {"refuse": desk.refuse, "request_supplement": desk.request_supplement,
                     "receive_supplement": desk.receive_supplement, "withdraw": desk.withdraw,
                     "return": desk.return_result}
        actor = Actor(official, unit)
        if action == "accept":
            return self._call(desk.accept, actor, code)
        if action not in use_cases:
            raise domain.Invalid("action", f"must be accept or one of {', '.join(use_cases)}")
        return self._call(use_cases[action], actor, code, body or {})

    # --- what routing and fees report --------------------------------------------------------

    def _apply(self, event) -> None:
        with self.db.transaction() as session:
            if not first_time(session, models.processed_events, event):
                return
            desk.on_event(self._context(session), event)
        if event.type == "dossier.supplement_needed":
            SUPPLEMENTS.labels(event.unit, "agency").inc()

    @event_consumer("dossier.step_started")
    def on_step_started(self, event):
        self._apply(event)

    @event_consumer("dossier.supplement_needed")
    def on_supplement_needed(self, event):
        self._apply(event)

    @event_consumer("dossier.obligation_requested")
    def on_obligation_requested(self, event):
        self._apply(event)

    @event_consumer("dossier.processed")
    def on_processed(self, event):
        self._apply(event)

    @event_consumer("fees.charged")
    def on_fees_charged(self, event):
        self._apply(event)

    @event_consumer("fees.paid")
    def on_fees_paid(self, event):
        self._apply(event)

    @event_consumer("fees.settled")
    def on_fees_settled(self, event):
        self._apply(event)

    @event_consumer("fees.payment_cancelled")
    def on_fees_payment_cancelled(self, event):
        self._apply(event)

    # --- the public status page (the QR code on the receipt points here) ---------------------

    @http("GET", "/tra-cuu")
    def page_status(self, request):
        refused = self._limited(request)
        if refused:
            return refused
        code, secret = request.args.get("code", ""), request.args.get("secret", "")
        try:
            status = self._call(desk.public_status, code, secret)
        except domain.DeskError:
            status = None
        page = PAGES.get_template("status.html").render(status=status, code=code)
        return Response(page, mimetype="text/html", status=200 if status else 404)


def summary(row) -> dict:
    """A line of a list: enough to find the dossier."""
    return {"code": row.code, "status": row.status, "status_text": domain.STATUS_VI[domain.Status(row.status)],
            "procedure": row.procedure["name"], "applicant": row.applicant_name,
            "received_at": row.received_at.astimezone(TZ).isoformat() if row.received_at else None,
            "appointment_date": row.appointment_date.isoformat() if row.appointment_date else None}


def book_rows(ctx, actor: Actor, unit: str | None, start, end) -> tuple:
    """The book's lines of ``unit`` (default: the official's own) between two dates."""
    unit = unit or actor.unit
    if unit != actor.unit:
        raise domain.Forbidden("unit", f"an official of {actor.unit} cannot read the book of {unit}")
    period = parse_period(start, end)
    return unit, store.tracking_book(ctx.session, unit, period.begin, period.end), period.first, period.last


def tracking_book(ctx, actor: Actor, unit: str | None, start, end) -> dict:
    unit, rows, first, last = book_rows(ctx, actor, unit, start, end)
    return {"unit": unit, "from": first.isoformat(), "to": last.isoformat(),
            "lines": [dict(summary(r), line=r.book_line, volume=r.book_volume) for r in rows]}

