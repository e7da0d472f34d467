"""The catalogue service: units and the versioned procedures catalogue, public.

Entry points are thin: they parse the request, call ``store`` in one transaction and
shape the answer. RPC for the other services, JSON over HTTP and a web page for citizens.
"""
from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from motcua.runtime.rpc import rpc
from motcua.runtime.web import http
from werkzeug.wrappers import Response

from motcua.contracts.calendar import TZ, local_date, parse_time_limit
from motcua.contracts.reorganisations import dissolved
from motcua.runtime.clock import Clock
from motcua.runtime.observability import PlatformService, error_response, json_response
from motcua.runtime.outbox import OutboxRelay
from services.catalog import models, store
from services.catalog.domain import parse_catalogue

TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                        autoescape=select_autoescape(["html"]))
TEMPLATES.filters["thoi_han"] = lambda text: parse_time_limit(text).vietnamese()

FORMS = {"original": "Bản chính", "certified_copy": "Bản sao có chứng thực", "copy": "Bản sao"}
LEVELS = {"ward": "Cấp phường", "district": "Cấp quận"}
ONLINE = {"none": "Không", "partial": "Một phần", "full": "Toàn trình"}


class BadParameter(ValueError):
    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


def parse_at(value: str | None) -> date:
    """``?at=`` as an ISO date or date-time (local time if it has no zone); default today."""
    if value in (None, ""):
        return local_date(datetime.now(TZ))
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
        instant = datetime.fromisoformat(value)
    except ValueError:
        raise BadParameter("at", f"must be an ISO date (2026-02-13) or date-time, got {value!r}") from None
    return local_date(instant if instant.tzinfo else instant.replace(tzinfo=TZ))


def render(template: str, status: int = 200, **context) -> Response:
    page = TEMPLATES.get_template(template).render(forms=FORMS, levels=LEVELS, online=ONLINE, **context)
    return Response(page, status=status, mimetype="text/html")


class CatalogService(PlatformService):
    name = "catalog"
    outbox = OutboxRelay(models.outbox)
    now = Clock()

    # --- RPC ---------------------------------------------------------------------------

    @rpc
    def get_procedure(self, code: str, at: str | None = None, version: int | None = None) -> dict | None:
        """The version in force at ``at`` (default today), or the exact ``version``."""
        with self.db.transaction() as session:
            row = (store.get_version(session, code, version) if version is not None
                   else store.get_procedure(session, code, parse_at(at)))
            return store.procedure_view(row) if row else None

    @rpc
    def list_procedures(self, unit: str | None = None, field: str | None = None, q: str | None = None,
                        at: str | None = None) -> list[dict]:
        with self.db.transaction() as session:
            unit_row = store.get_unit(session, unit) if unit else None
            if unit and unit_row is None:
                raise BadParameter("unit", f"no unit with code {unit}")
            rows = store.search_procedures(session, parse_at(at), unit=unit_row and store.as_unit(unit_row),
                                           field_name=field, query=q)
            return [store.procedure_view(row) for row in rows]

    @rpc
    def list_procedure_versions(self) -> list[dict]:
        """Every version of every procedure: what another service needs to fill its copy."""
        with self.db.transaction() as session:
            return [store.procedure_view(row) for row in store.all_versions(session)]

    @rpc
    def list_units(self, kind: str | None = None) -> list[dict]:
        with self.db.transaction() as session:
            return [store.unit_view(row) for row in store.list_units(session, kind)]

    @rpc
    def get_unit(self, code: str) -> dict | None:
        with self.db.transaction() as session:
            row = store.get_unit(session, code)
            return store.unit_view(row) if row else None

    @rpc
    def publish(self, data: dict) -> dict:
        """Load a whole catalogue (as read from a catalogue file); a bad one loads nothing."""
        catalogue = parse_catalogue(data)
        with self.db.transaction() as session:
            return store.load(session, catalogue, correlation_id=self.correlation_id).as_dict()

    # --- JSON over HTTP ----------------------------------------------------------------

    @http("GET", "/api/v1/units")
    def http_units(self, request):
        kind = request.args.get("kind") or None
        return json_response({"units": self.list_units(kind)})

    @http("GET", "/api/v1/procedures")
    def http_procedures(self, request):
        args = request.args
        try:
            found = self.list_procedures(unit=args.get("unit") or None, field=args.get("field") or None,
                                         q=args.get("q") or None, at=args.get("at"))
        except BadParameter as bad:
            return error_response(400 if bad.field != "unit" else 404, str(bad), bad.field)
        return json_response({"count": len(found), "procedures": found})

    @http("GET", "/api/v1/procedures/<string:code>")
    def http_procedure(self, request, code):
        try:
            found = self.get_procedure(code, at=request.args.get("at"))
        except BadParameter as bad:
            return error_response(400, str(bad), bad.field)
        if found is None:
            return error_response(404, f"no procedure with code {code} in force at that date", "code")
        return json_response(found)

    @http("GET", "/api/v1/procedures/<string:code>/versions")
    def http_procedure_versions(self, request, code):
        with self.db.transaction() as session:
            rows = store.versions(session, code)
        if not rows:
            return error_response(404, f"no procedure with code {code}", "code")
        return json_response({"code": code, "versions": [store.procedure_view(row) for row in rows]})

    # --- the public web page (Vietnamese) ----------------------------------------------

    @http("GET", "/")
    def page_list(self, request):
        args = request.args
        with self.db.transaction() as session:
            today = local_date(self.now())
            every = {row.code: store.unit_view(row) for row in store.list_units(session)}
            # A desk a reorganisation dissolved is no place to submit from its effective date: the
            # page names its successor instead.
            units = [u for u in every.values() if u["desk"] and not dissolved(u, today)]
            merged = [(u, every.get(u["successor"])) for u in every.values() if dissolved(u, today)]
            unit_row = store.get_unit(session, args.get("unit")) if args.get("unit") else None
            rows = store.search_procedures(session, today, unit=unit_row and store.as_unit(unit_row),
                                           field_name=args.get("field") or None, query=args.get("q") or None)
            all_fields = store.fields(session, today)
        return render("list.html", procedures=[store.procedure_view(row) for row in rows], units=units, merged=merged,
                      fields=all_fields, q=args.get("q", ""), field=args.get("field", ""),
                      unit=args.get("unit", ""))

    @http("GET", "/thu-tuc/<string:code>")
    def page_detail(self, request, code):
        with self.db.transaction() as session:
            row = store.get_procedure(session, code, parse_at(None))
            if row is None:
                return render("not_found.html", status=404, code=code)
            agencies = {unit.code: unit.name for unit in store.list_units(session)}
        return render("detail.html", p=store.procedure_view(row), agencies=agencies)
