"""Notifications to citizens and officials: never lost, never twice.

Consumes the events of intake, routing and fees: each entry point hands its event to the
``HANDLERS`` table (``handlers``), whose ``DossierMessages`` aggregate (``messages``) queues the
messages in the transaction of the event; the dispatcher sends them (``dispatch``). HTTP on 8005: the delivery history
of a dossier for its officials, template management, the providers' delivery reports.
"""
from __future__ import annotations

from functools import lru_cache
from datetime import datetime, time, timedelta
from pathlib import Path

import structlog
import yaml
from nameko.extensions import DependencyProvider

from motcua.contracts.calendar import TZ, default_calendar
from motcua.runtime.catalogue import CatalogueReadModel, catalogue_consumer
from motcua.runtime.clock import Clock
from motcua.contracts.pii import PHONE, is_sealed
from motcua.contracts.refusals import Invalid, NotFound, Refusal
from motcua.runtime.inbox import event_consumer
from motcua.runtime.observability import DatabaseGauge, PlatformService, error_response, json_response
from motcua.runtime.outbox import OutboxRelay
from motcua.runtime.pii import PiiKeys
from motcua.runtime.timer import configured_timer
from motcua.runtime.web import body_text, http, json_body, official
from services.notify import dispatch, metrics, models, store, templates, zalo
from services.notify.handlers import (Consume, DigestQueued, SaveTemplate, SendDigest, delivery_report, handle,
                                      handle_events)
from services.notify.messages import DIGEST_MAX_CODES, DIGEST_MAX_CODES_LIMIT, Context, DigestFailed
from services.notify.repository import SqlUnitOfWork, TemplateCache

log = structlog.get_logger("motcua.notify")
DEFAULT_OFFICIALS = Path(__file__).parent / "data" / "officials.yml"

def load_officials(path: str | None) -> dict:
    """unit code -> {"email": [addresses], "webhook": url}; re-read when the file changes."""
    source = Path(path) if path else DEFAULT_OFFICIALS
    return _officials(str(source), source.stat().st_mtime)


@lru_cache(maxsize=4)
def _officials(source: str, mtime: float) -> dict:
    data = yaml.safe_load(Path(source).read_text(encoding="utf-8")) or {}
    units = data.get("units", {})
    if not isinstance(units, dict):
        raise ValueError(f"{source}: units must map unit codes to contacts")
    for code, contacts in units.items():
        if not isinstance(contacts, dict) or set(contacts) - {"email", "webhook"}:
            raise ValueError(f"{source}: units.{code}: only email (a list) and webhook (a URL) are allowed")
        if not isinstance(contacts.get("email", []), list):
            raise ValueError(f"{source}: units.{code}.email must be a list of addresses")
    return units


class Templates(DependencyProvider):
    """The process's copy of the officials' templates (``NOTIFY_TEMPLATE_CACHE_SECONDS``, default
    5: how long another replica may use a template after an edit; see ``TemplateCache``). Checks
    the ZNS templates' mapping (``ZALO_TEMPLATES_FILE``) at start: a bad one stops the service."""

    def setup(self) -> None:
        zalo.load(self.container.config.get("ZALO_TEMPLATES_FILE"))   # a bad ZNS mapping: no start
        self.cache = TemplateCache(float(self.container.config.get("NOTIFY_TEMPLATE_CACHE_SECONDS", 5)))

    def get_dependency(self, worker_ctx) -> TemplateCache:
        return self.cache


def _clock_time(text: str, name: str) -> time:
    try:
        return time.fromisoformat(text)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be HH:MM, got {text!r}") from None


def digest_max_codes(value) -> int:
    """``DIGEST_MAX_CODES``: codes per list in a digest, 1 to DIGEST_MAX_CODES_LIMIT (default 50)."""
    if value in (None, ""):
        return DIGEST_MAX_CODES
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"DIGEST_MAX_CODES must be a whole number, got {value!r}") from None
    if not 1 <= number <= DIGEST_MAX_CODES_LIMIT:
        raise ValueError(f"DIGEST_MAX_CODES must be between 1 and {DIGEST_MAX_CODES_LIMIT}, got {number}")
    return number


#: Every channel a message can wait on (the gauges report each, an empty queue as 0).
CHANNELS = ("email", "sms", "zalo", "webhook")


def queue_depth(session, now):
    """Messages waiting per channel; every channel is reported, an empty queue as 0."""
    waiting = {channel: count for channel, count, _ in store.queue_depth(session, now)}
    return [(channel, waiting.get(channel, 0)) for channel in CHANNELS]


def queue_age(session, now):
    oldest = {channel: age for channel, _, age in store.queue_depth(session, now)}
    return [(channel, max(oldest.get(channel, 0.0), 0.0)) for channel in CHANNELS]


class NotifyService(PlatformService):
    name = "notify"
    outbox = OutboxRelay(models.outbox)
    pii = PiiKeys()
    dispatcher = dispatch.Dispatcher()
    catalog = CatalogueReadModel()
    catalogue_events = catalogue_consumer()
    now = Clock()
    template_cache = Templates()
    depth_gauge = DatabaseGauge("motcua_notify_queue_depth", "Messages waiting to be sent, by channel.",
                                ["channel"], queue_depth)
    age_gauge = DatabaseGauge("motcua_notify_queue_oldest_seconds", "Age of the oldest message waiting, by channel "
                              "(the queue's lag).", ["channel"], queue_age)

    def _uow(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.db, self.template_cache, pii=self.pii)

    def _context(self) -> Context:
        names: dict = {}

        def unit_name(code: str) -> str:
            if code not in names:
                unit = self.catalog.get_unit(code)
                names[code] = unit["name"] if unit else code
            return names[code]

        def procedure_name(code: str, version: int) -> str:
            if (code, version) not in names:
                procedure = self.catalog.get_procedure(code, version=version)
                names[code, version] = procedure["name"] if procedure else code
            return names[code, version]

        quiet = str(self.config.get("QUIET_HOURS") or "21:00-07:00").split("-")
        zalo_templates = zalo.load(self.config.get("ZALO_TEMPLATES_FILE"))
        return Context(now=self.now(), unit_name=unit_name, procedure_name=procedure_name,
                       zalo_template=zalo_templates.__getitem__, open_phone=self._open_phone,
                       officials=load_officials(self.config.get("OFFICIALS_FILE")),
                       public_url=str(self.config.get("PUBLIC_STATUS_URL") or "http://localhost:8002"),
                       quiet_hours=(_clock_time(quiet[0], "QUIET_HOURS"), _clock_time(quiet[1], "QUIET_HOURS")))

    def _open_phone(self, phone: str | None) -> str | None:
        """intake's events carry the phone number sealed (one from an intake not yet upgraded, clear)."""
        return self.pii.open(phone, PHONE) if is_sealed(phone) else phone

    # --- events --------------------------------------------------------------------------------

    def _apply(self, events) -> None:
        """A batch of events (``motcua.runtime.inbox``) in one unit of work."""
        ctx = self._context()
        # The catalogue's names are asked before the transaction opens (no call to another service
        # inside it); the aggregates then find them remembered.
        for event in events:
            p = event.payload
            ctx.unit_name(event.unit)
            if isinstance(p.get("agency"), str):
                ctx.unit_name(p["agency"])
            if event.type == "dossier.received":
                ctx.procedure_name(p["procedure_code"], p["procedure_version"])
        metrics.count(handle_events([Consume(event, ctx) for event in events], self._uow()))

    @event_consumer("dossier.received")
    def on_received(self, events):
        self._apply(events)

    @event_consumer("catalog.units_reorganised")
    def on_units_reorganised(self, events):
        for event in events:
            handle("catalog.units_reorganised", Consume(event, self._context()), self._uow())

    @event_consumer("dossier.supplement_requested")
    def on_supplement_requested(self, events):
        self._apply(events)

    @event_consumer("dossier.supplement_received")
    def on_supplement_received(self, events):
        self._apply(events)

    @event_consumer("dossier.refused")
    def on_refused(self, events):
        self._apply(events)

    @event_consumer("dossier.withdrawn")
    def on_withdrawn(self, events):
        self._apply(events)

    @event_consumer("dossier.apology_issued")
    def on_apology(self, events):
        self._apply(events)

    @event_consumer("dossier.deadline_changed")
    def on_deadline_changed(self, events):
        self._apply(events)

    @event_consumer("dossier.processed")
    def on_processed(self, events):
        self._apply(events)

    @event_consumer("dossier.returned")
    def on_returned(self, events):
        self._apply(events)

    @event_consumer("dossier.overdue")
    def on_overdue(self, events):
        self._apply(events)

    @event_consumer("dossier.at_risk")
    def on_at_risk(self, events):
        self._apply(events)

    @event_consumer("dossier.step_overdue")
    def on_step_overdue(self, events):
        self._apply(events)

    @event_consumer("dossier.apology_missing")
    def on_apology_missing(self, events):
        self._apply(events)

    @event_consumer("fees.paid")
    def on_paid(self, events):
        self._apply(events)

    @event_consumer("fees.refunded")
    def on_refunded(self, events):
        self._apply(events)

    # --- the daily digest ----------------------------------------------------------------------

    @configured_timer("DIGEST_CHECK_SECONDS", interval=60)
    def daily_digest(self):
        """At the start of each working day, the unit heads' digest (once per unit and day)."""
        now = self.now()
        local = now.astimezone(TZ)
        at = _clock_time(str(self.config.get("DIGEST_AT") or "07:30"), "DIGEST_AT")
        if not default_calendar().is_working_day(local.date()) or local.time() < at:
            return 0
        previous = local.date() - timedelta(days=1)
        while not default_calendar().is_working_day(previous):
            previous -= timedelta(days=1)
        since = datetime.combine(previous, time(0), tzinfo=TZ)
        max_codes = digest_max_codes(self.config.get("DIGEST_MAX_CODES"))
        list_url = str(self.config.get("DIGEST_LIST_URL") or "") or None
        sent = 0
        ctx = self._context()
        for unit in ctx.officials:
            ctx.unit_name(unit)                       # before the transaction: see _apply
            try:
                events = handle("notify.digest", SendDigest(unit, since, ctx, max_codes, list_url), self._uow())
            except Exception:                         # noqa: BLE001 - the database: the next check tries again
                log.exception("digest not sent, will try again", unit=unit)
                continue                              # the other units' digests still go
            metrics.count(events)
            for failed in (e for e in events if isinstance(e, DigestFailed)):
                log.error("digest failed to render, recorded as failed for the day", unit=failed.unit,
                          day=failed.day.isoformat(), reason=failed.reason)
            sent += any(isinstance(e, DigestQueued) for e in events)
        return sent

    # --- HTTP ----------------------------------------------------------------------------------

    @http("GET", "/api/v1/dossiers/<string:code>/messages")
    def http_history(self, request, code):
        try:
            actor = official(request)
        except Refusal as refusal:
            return error_response(refusal.status, str(refusal), refusal.field)
        with self._uow() as uow:
            aggregate = uow.dossiers.get(code, lock=False)
        dossier = aggregate.dossier
        if dossier is None:
            return error_response(404, f"no dossier with code {code} in notify", "code")
        if dossier.unit != actor.unit and not actor.district_wide:
            return error_response(403, f"dossier {code} belongs to another unit", "code")
        return json_response({"code": code, "messages": [
            {"id": m.id, "template": m.template, "channel": m.channel, "audience": m.audience,
             "recipient": mask_address(m.recipient), "state": m.state, "attempts": m.attempts,
             "created_at": m.created_at.isoformat(), "sent_at": m.sent_at.isoformat() if m.sent_at else None,
             "delivered_at": m.delivered_at.isoformat() if m.delivered_at else None, "last_error": m.last_error,
             "subject": m.subject, "text": m.text} for m in aggregate.messages]})

    @http("GET", "/api/v1/templates")
    def http_templates(self, request):
        with self._uow() as uow:
            stored = uow.templates.stored()
        answer = []
        for (key, channel), default in sorted(templates.defaults().items()):
            row = stored.get((key, channel))
            answer.append({"key": key, "channel": channel, "audience": templates.KEYS[key],
                           "required": key in templates.REQUIRED,
                           "subject": row.subject if row else default.subject, "body": row.body if row else default.body,
                           "version": row.version if row else 0, "updated_by": row.updated_by if row else None})
        return json_response({"templates": answer})

    @http("PUT", "/api/v1/templates/<string:key>/<string:channel>")
    def http_save_template(self, request, key, channel):
        """A template is validated when saved (rendered with a sample), never discovered broken when sent."""
        try:
            editor = official(request).name
        except Refusal as refusal:
            return error_response(refusal.status, str(refusal), refusal.field)
        try:
            body = json_body(request)
        except Invalid as refusal:
            return error_response(refusal.status, str(refusal), refusal.field)
        if not isinstance(body.get("body"), str):
            return error_response(400, "body: a template needs its text in \"body\"", "body")
        try:
            saved = handle("notify.save_template", SaveTemplate(key, channel, body.get("subject"), body["body"],
                                                                editor), self._uow())
        except templates.TemplateInvalid as invalid:
            return error_response(400, str(invalid), invalid.field)
        template = saved[0].template
        log.info("template saved", key=key, channel=channel, official=editor)
        preview = templates.render(template, templates.sample_context(key))
        return json_response({"key": key, "channel": channel, "preview": {"subject": preview.subject,
                                                                          "text": preview.text}})

    @http("POST", "/api/v1/delivery-reports")
    def http_delivery_report(self, request):
        """The SMS gateway's report: delivered or failed at the handset."""
        try:
            command = delivery_report(body_text(request), self.now())
        except Invalid as refusal:
            return error_response(400, str(refusal), refusal.field)
        try:
            events = handle("notify.delivery_report", command, self._uow())
        except NotFound as refusal:
            return error_response(404, refusal.reason, refusal.field)
        metrics.count(events)
        return json_response({"id": command.provider_id, "state": command.status})


def mask_address(address: str) -> str:
    """What an official sees of a recipient: enough to recognise it, not to use it."""
    if "@" in address:
        name, _, domain = address.partition("@")
        return f"{name[:1]}***@{domain}"
    if address.startswith("http"):
        return address.split("?")[0]
    return f"{address[:3]}****{address[-2:]}" if len(address) > 5 else "***"
