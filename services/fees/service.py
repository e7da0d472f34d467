"""Fees and charges (phí, lệ phí): charges from the pinned procedure version, payments at the
desk, by transfer and through the online gateway's signed callback, numbered receipts, refunds,
settlement, and the Finance office's reconciliation per desk.

Desk HTTP API under /api/v1/ (the official signed in: motcua/runtime/auth.py), the public
quote, the gateway callback, RPC for the gateway and intake, the consumers of intake's and
routing's events.
"""
from __future__ import annotations

import json

import structlog
from prometheus_client import Counter
from werkzeug.wrappers import Response

from motcua.contracts.actors import Actor
from motcua.contracts.events import Envelope
from motcua.contracts.periods import parse_period
from motcua.contracts.refusals import Invalid, NotFound, Refusal
from motcua.runtime.catalogue import CatalogueReadModel, catalogue_consumer
from motcua.runtime.clock import Clock
from motcua.runtime.inbox import about, event_consumer, first_time
from motcua.runtime.observability import DatabaseGauge, PlatformService, error_response, json_response
from motcua.runtime.outbox import OutboxRelay
from motcua.runtime.rpc import rpc
from motcua.runtime.web import answer, body_text, http, json_body, no_nul, official, report_unit
from services.fees import domain, forms, models, store
from services.fees.account import receipt_view
from services.fees.handlers import (HANDLERS, QUESTIONS, CancelReceipt, CloseCash, GatewayCallback, ImportSettlement,
                                    Outstanding, Pay, RejectCallback, ShowAccount, ShowReceipt, handle)
from services.fees.repository import SqlUnitOfWork

log = structlog.get_logger("motcua.fees")

CHARGED = Counter("motcua_fees_charged_vnd_total", "VND charged, by desk and type (phi, le_phi).", ["unit", "type"])
COLLECTED = Counter("motcua_fees_collected_vnd_total", "VND collected, by desk and method.", ["unit", "method"])
REFUNDED = Counter("motcua_fees_refunded_vnd_total", "VND refunded, by desk.", ["unit"])
REJECTED = Counter("motcua_gateway_callbacks_rejected_total", "Gateway callbacks rejected, by reason.", ["reason"])


def count(events: list[Envelope]) -> None:
    """The money metrics, from the events a handler emitted."""
    for event in events:
        p = event.payload
        if event.type == "fees.charged":
            for item in p["items"]:
                CHARGED.labels(event.unit, item["type"]).inc(item["amount"])
        elif event.type == "fees.paid":
            COLLECTED.labels(event.unit, p["method"]).inc(p["amount"])
        elif event.type == "fees.refunded":
            REFUNDED.labels(event.unit).inc(p["amount"])


def outstanding(session, now):
    return store.outstanding_by_unit(session, now)


def report_csv(rows: list[dict]) -> str:
    import csv
    import io
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["Đơn vị", "Phí đã tính", "Lệ phí đã tính", "Tiền mặt", "Chuyển khoản", "Trực tuyến",
                     "Số lần thu", "Hoàn trả", "Số lần hoàn", "Biên lai hủy", "Còn phải thu"])
    for r in rows:
        writer.writerow([r["unit"], r["charged"].get("phi", 0), r["charged"].get("le_phi", 0),
                         r["collected"].get("cash", 0), r["collected"].get("transfer", 0),
                         r["collected"].get("online", 0), r["payments"], r["refunded"], r["refunds"],
                         r["receipts_cancelled"], r["outstanding"]])
    return out.getvalue()


class FeesService(PlatformService):
    name = "fees"
    outbox = OutboxRelay(models.outbox)
    catalog = CatalogueReadModel()
    catalogue_events = catalogue_consumer()
    now = Clock()
    outstanding_gauge = DatabaseGauge("motcua_fees_outstanding_vnd", "VND charged and not yet paid, by desk (from "
                                      "the database: max over replicas).", ["unit"], outstanding)

    def _handle(self, message):
        """A command in one transaction (a question without one); the money metrics once it committed."""
        if isinstance(message, QUESTIONS):      # a read: no transaction around it
            with self.db.read() as session:
                return handle(message, SqlUnitOfWork(session, now=self.now(), emit=self.outbox))
        with self.db.transaction() as session:
            uow = SqlUnitOfWork(session, now=self.now(), emit=self.outbox, correlation_id=self.correlation_id)
            result = handle(message, uow)
        count(uow.emitted)
        return result

    def _answer(self, request, make, *, with_body: bool = True, raw_body: bool = False):
        """``make(actor, body)`` is the command of an official's request."""
        def call():
            actor = official(request)
            body = (body_text(request) if raw_body else json_body(request) if with_body else None)
            command = make(actor, body)
            result = self._handle(command)
            if request.method == "POST" and isinstance(result, dict):
                log.info("fees action done", action=HANDLERS[type(command)].__name__, code=result.get("code"))
            return result
        return answer(call)

    # --- quote (public: the desk and the citizens) -------------------------------------------

    def _quote(self, code, pages, copies, conditions, at=None) -> dict:
        procedure = self.catalog.get_procedure(code, at=at)
        if procedure is None:
            raise NotFound("procedure", f"no procedure {code} in force")
        lines = domain.compute_charges(procedure.get("fees", []), pages=pages, copies=copies,
                                       conditions=frozenset(conditions))
        return {"procedure": {"code": code, "version": procedure["version"], "name": procedure["name"]},
                "pages": pages, "copies": copies, "conditions": sorted(conditions),
                "lines": [line.as_dict() for line in lines], **domain.totals(lines)}

    @http("GET", "/api/v1/quote")
    def http_quote(self, request):
        args = request.args

        def quote():
            numbers = {}
            for name in ("pages", "copies"):
                value = args.get(name, "1")
                if not value.isdigit():
                    raise domain.FeeError(name, f"must be a positive whole number, got {value!r}")
                numbers[name] = int(value)
            code = args.get("procedure")
            if not code:
                raise domain.FeeError("procedure", "is required")
            return self._quote(code, numbers["pages"], numbers["copies"], args.getlist("condition"))
        return answer(quote)

    @rpc
    def quote(self, procedure: str, pages: int = 1, copies: int = 1, conditions: list | None = None) -> dict:
        return self._quote(procedure, pages, copies, conditions or [])

    # --- the desk ------------------------------------------------------------------------------

    @http("GET", "/api/v1/dossiers/<string:code>")
    def http_account(self, request, code):
        return self._answer(request, lambda actor, _: ShowAccount(actor, code), with_body=False)

    @http("POST", "/api/v1/dossiers/<string:code>/payments")
    def http_pay(self, request, code):
        return self._answer(request, lambda actor, body: Pay(actor, code, body))

    @http("POST", "/api/v1/receipts/<int:year>/<int:number>/cancellation")
    def http_cancel_receipt(self, request, year, number):
        return self._answer(request, lambda actor, body: CancelReceipt(actor, year, number, body))

    @http("GET", "/api/v1/receipts/<int:year>/<int:number>.<string:fmt>")
    def http_receipt(self, request, year, number, fmt):
        def call():
            actor = official(request)
            account, receipt = self._handle(ShowReceipt(actor, year, number))
            if fmt == "json":
                return receipt_view(receipt)
            data = account.receipt_form(receipt, self._unit(actor.unit))
            if fmt == "pdf":
                return Response(forms.render_pdf("bien-lai", data), mimetype="application/pdf",
                                headers={"Content-Disposition": f'inline; filename="bien-lai-{number}-{year}.pdf"'})
            if fmt == "html":
                return Response(forms.render_html("bien-lai", data), mimetype="text/html")
            raise NotFound("format", f"no such format {fmt}")
        return answer(call)

    def _unit(self, code: str) -> dict:
        unit = self.catalog.get_unit(code) or {"code": code, "name": code, "short_name": code, "parent": None}
        parent = self.catalog.get_unit(unit["parent"]) if unit.get("parent") else None
        return {"code": unit["code"], "name": unit["name"], "short_name": unit["short_name"],
                "parent_name": parent["name"] if parent else None, "address": unit.get("address")}

    @http("POST", "/api/v1/cash-closings")
    def http_close_cash(self, request):
        return self._answer(request, CloseCash)

    @http("POST", "/api/v1/gateway/settlements")
    def http_import_settlement(self, request):
        return self._answer(request, ImportSettlement, raw_body=True)

    # --- the online payment gateway ------------------------------------------------------------

    @http("POST", "/api/v1/gateway/callback")
    def http_gateway_callback(self, request):
        """The gateway's signed notification of a payment: verified, recorded, idempotent."""
        params = dict(request.form) if request.form else {}
        if not params and request.data:
            try:
                params = json.loads(request.get_data(as_text=True))
            except (ValueError, RecursionError):
                params = {}
        params = {str(k): str(v) for k, v in params.items()} if isinstance(params, dict) else {}
        try:
            no_nul(params)          # kept as evidence in a JSONB column, which cannot hold a NUL
        except Invalid as refusal:
            return error_response(refusal.status, str(refusal), refusal.field)
        try:
            result = self._handle(GatewayCallback(params, self._merchant_secrets(),
                                                  int(self.config.get("GATEWAY_MAX_AGE_SECONDS", 900))))
        except Refusal as error:
            reason = error.reason
            reason = reason if reason in domain.REJECTION_REASONS else "mismatched"
            REJECTED.labels(reason).inc()
            self._handle(RejectCallback(params, f"{reason}: {error}"))    # the evidence, in a transaction of its own
            log.warning("gateway callback rejected", reason=reason, field=error.field)
            status = 401 if reason in ("unsigned", "unknown_merchant", "bad_signature") else error.status
            return error_response(status, str(error), error.field)
        return json_response(result)

    def _merchant_secrets(self) -> dict:
        """``GATEWAY_MERCHANTS``: "merchant=secret,merchant2=secret2" (from the environment)."""
        raw = self.config.get("GATEWAY_MERCHANTS") or ""
        pairs = [item.split("=", 1) for item in str(raw).split(",") if "=" in item]
        return {merchant.strip(): secret.strip() for merchant, secret in pairs}

    # --- the Finance office --------------------------------------------------------------------

    @http("GET", "/api/v1/reports/fees")
    def http_report(self, request):
        args = request.args

        def report():
            period = parse_period(args.get("from"), args.get("to"))
            fmt = args.get("format", "json")
            if fmt not in ("json", "csv"):
                raise domain.FeeError("format", "must be json or csv")
            with self.db.transaction() as session:
                rows = store.report(session, report_unit(request), period.begin, period.end)
            if fmt == "csv":
                return Response(report_csv(rows), mimetype="text/csv")
            return {"from": period.first.isoformat(), "to": period.last.isoformat(), "units": rows}
        return answer(report)

    # --- RPC ---------------------------------------------------------------------------------

    @rpc
    def pay(self, official: str, unit: str, code: str, payment: dict) -> dict:
        return self._handle(Pay(Actor(official, unit), code, payment))

    @rpc
    def outstanding(self, code: str) -> int:
        """What a dossier still owes (intake may ask before returning a result)."""
        return self._handle(Outstanding(code))

    # --- events (one consumer per event type of HANDLERS) ------------------------------------

    def _apply(self, events) -> None:
        """A batch of events (``motcua.runtime.inbox``) in one transaction, each recorded in the
        inbox with its effect; the pinned versions are read from the local copy before it opens."""
        pinned, units = {}, {}
        for event in events:
            if event.type == "dossier.received":
                key = (event.payload["procedure_code"], event.payload["procedure_version"])
                pinned[key] = self.catalog.get_procedure(key[0], version=key[1])
                units[event.unit] = self.catalog.get_unit(event.unit)
        with self.db.transaction() as session:
            uow = SqlUnitOfWork(session, now=self.now(), emit=self.outbox,
                                procedure=lambda code, version: pinned.get((code, version)), unit=units.get)
            for event in events:
                with about(event):
                    if first_time(session, models.processed_events, event):
                        uow.correlation_id = event.correlation_id
                        handle(event, uow)
        count(uow.emitted)

    @event_consumer("dossier.received")
    def on_received(self, events):
        self._apply(events)

    @event_consumer("dossier.obligation_requested")
    def on_obligation(self, events):
        self._apply(events)

    @event_consumer("dossier.step_started")
    def on_step_started(self, events):
        self._apply(events)

    @event_consumer("dossier.refused")
    def on_refused(self, events):
        self._apply(events)

    @event_consumer("dossier.withdrawn")
    def on_withdrawn(self, events):
        self._apply(events)

    @event_consumer("catalog.units_reorganised")
    def on_units_reorganised(self, events):
        self._apply(events)
