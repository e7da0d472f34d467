"""The ``DossierMessages`` aggregate: a dossier's messages to its citizen and its officials.

Plain Python, no I/O. Its methods decide which messages an event causes (once per event,
template, channel and recipient: the idempotency key), keep citizens' SMS and Zalo messages out
of the quiet hours, move a message through its states (queued -> sending -> sent -> delivered, or retried
with backoff, then failed and dead-lettered) and RETURN the events they cause. Those are
counted (metrics) and logged; none goes to the broker: no service consumes a message's fate
(``notify.delivered`` was 8 of a life's 19 published events, heard by nobody), which stays in
notify's tables, its metrics and its API.

notify never decides that a dossier is overdue: routing says so (``dossier.overdue``) and the
aggregate remembers it for the digest.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from motcua.contracts.calendar import TZ
from motcua.contracts.events import Envelope
from motcua.runtime.inbox import NotYet
from services.notify import templates, zalo

CITIZEN_CHANNELS = ("sms", "email", "zalo")
#: Channels that reach a citizen's phone: nothing goes out on them in the quiet hours.
QUIET_CHANNELS = ("sms", "zalo")

class UnknownDossier(NotYet):
    """An event about a dossier notify has not heard of (yet: its dossier.received may still be on
    its way); put back, then dead-lettered with this reason if it never comes."""


class NotRendered(templates.TemplateInvalid):
    """A message whose template in force failed to render (an official's template, or data it was
    not written for): the template's key and channel added to the reason."""

    def __init__(self, key: str, channel: str, invalid: templates.TemplateInvalid):
        super().__init__(invalid.field, f"{invalid.reason} (template {key}, {channel})")
        self.key, self.channel = key, channel


# --- the rules that have a shape ---------------------------------------------------------------

@dataclass(frozen=True)
class Policy:
    max_attempts: int = 5
    backoff_seconds: float = 30.0        # 30 s, 60 s, 120 s, …
    lease_seconds: float = 60.0          # how long a 'sending' message is left to its sender


def backoff(policy: Policy, attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: doubles each time."""
    return timedelta(seconds=policy.backoff_seconds * (2 ** max(attempts - 1, 0)))


def in_quiet_hours(instant: datetime, quiet: tuple[time, time]) -> bool:
    start, end = quiet
    moment = instant.astimezone(TZ).time()
    return moment >= start or moment < end if start > end else start <= moment < end


def after_quiet_hours(instant: datetime, quiet: tuple[time, time]) -> datetime:
    """The first moment an SMS may go to a citizen: now, or the end of the night."""
    if not in_quiet_hours(instant, quiet):
        return instant
    local = instant.astimezone(TZ)
    end_day = local.date() if local.time() < quiet[1] else local.date() + timedelta(days=1)
    return datetime.combine(end_day, quiet[1], tzinfo=TZ)


def message_key(event_id: str, channel: str, recipient: str) -> str:
    """Once per (event, recipient, channel); the address itself never leaves the database."""
    digest = hashlib.sha256(recipient.encode()).hexdigest()[:16]
    return f"{event_id}:{channel}:{digest}"


# --- what the aggregate holds -------------------------------------------------------------------

@dataclass
class Dossier:
    """What notify keeps of a dossier (from intake's and routing's events)."""
    code: str
    unit: str
    procedure: str
    applicant_name: str
    phone: str | None
    email: str | None
    secret: str
    channels: list
    optional: bool
    received_at: datetime
    appointment_date: date | str | None
    open: bool = True
    overdue: bool = False


@dataclass
class Message:
    idempotency_key: str
    code: str | None
    unit: str | None
    template: str
    channel: str
    audience: str                        # citizen | official
    recipient: str                       # an address: never logged
    subject: str | None
    text: str
    state: str                           # queued, sending, sent, delivered, failed
    next_attempt_at: datetime
    created_at: datetime
    attempts: int = 0
    id: int | None = None                # None until saved
    last_error: str | None = None
    provider_id: str | None = None
    sent_at: datetime | None = None
    delivered_at: datetime | None = None


# --- the events it returns ----------------------------------------------------------------------

@dataclass(frozen=True)
class MessageQueued:
    key: str
    channel: str
    template: str


@dataclass(frozen=True)
class MessageSent:
    message_id: int | None
    channel: str
    template: str
    attempts: int
    waited_seconds: float                # from queued to accepted by the provider


@dataclass(frozen=True)
class MessageRetried:
    message_id: int | None
    channel: str
    attempts: int
    reason: str


@dataclass(frozen=True)
class MessageFailed:
    message_id: int | None
    code: str | None
    channel: str
    template: str
    attempts: int
    reason: str


@dataclass(frozen=True)
class DigestFailed:
    """A unit's digest could not be rendered: nothing was queued, and the day is recorded as failed
    (not tried again every minute)."""
    unit: str
    day: date
    channel: str                         # the channel whose template failed
    reason: str


@dataclass(frozen=True)
class DeliveryReported:
    provider_id: str
    channel: str
    template: str
    state: str                           # delivered | failed


# --- what a decision needs from outside ---------------------------------------------------------

@dataclass(frozen=True)
class Context:
    now: datetime
    unit_name: Callable[[str], str]
    procedure_name: Callable[[str, int], str]
    officials: Mapping[str, dict]            # unit code -> {"email": [...], "webhook": url}
    public_url: str
    quiet_hours: tuple[time, time] = (time(21, 0), time(7, 0))
    # (key, channel) -> the template in force: the officials' version, or the default
    template: Callable[[str, str], templates.Template] = lambda key, channel: templates.defaults()[(key, channel)]
    # message kind -> its ZNS template (data/zalo-templates.yml, or ZALO_TEMPLATES_FILE)
    zalo_template: Callable[[str], zalo.ZaloTemplate] = lambda key: zalo.load()[key]
    # the applicant's phone number as intake's event carries it (sealed) -> the number
    open_phone: Callable[[str | None], str | None] = lambda phone: phone


class DossierMessages:
    """A dossier (``code``) and its messages; or, with ``code`` None, a unit's messages without a
    dossier (the digest). A command about one message holds only that message."""

    def __init__(self, code: str | None, dossier: Dossier | None = None, messages: list[Message] | None = None):
        self.code = code
        self.dossier = dossier
        self.messages: list[Message] = list(messages or [])
        self.events: list = []               # everything its methods returned, for the unit of work

    def _emit(self, events: list) -> list:
        self.events.extend(events)
        return events

    def message(self, message_id: int) -> Message | None:
        return next((m for m in self.messages if m.id == message_id), None)

    def reorganised(self, successor: str) -> list:
        """Its desk merged into ``successor``: the unit heads' digest counts it there from now on;
        messages already queued stay as they were written."""
        if self.dossier is not None and self.dossier.open:
            self.dossier.unit = successor
        return []

    # --- queueing -------------------------------------------------------------------------------

    def _queue(self, ctx: Context, event_id: str, key: str, channel: str, audience: str, recipient: str,
               context: dict, *, unit: str | None) -> list:
        idempotency_key = message_key(event_id, channel, recipient)
        if any(m.idempotency_key == idempotency_key for m in self.messages):
            return []                            # this event already caused this message
        try:
            if channel == "zalo":                # a ZNS template's id and parameters, not a text
                rendered = templates.Rendered(None, zalo.message_text(ctx.zalo_template(key), context))
            else:
                rendered = templates.render(ctx.template(key, channel), context)
        except templates.TemplateInvalid as invalid:
            raise NotRendered(key, channel, invalid) from None
        first_try = ctx.now
        if channel in QUIET_CHANNELS and audience == "citizen":
            first_try = after_quiet_hours(ctx.now, ctx.quiet_hours)   # no SMS or Zalo to citizens at night
        self.messages.append(Message(
            idempotency_key=idempotency_key, code=self.code, unit=unit, template=key, channel=channel,
            audience=audience, recipient=recipient, subject=rendered.subject, text=rendered.text, state="queued",
            next_attempt_at=first_try, created_at=ctx.now))
        return [MessageQueued(idempotency_key, channel, key)]

    def _tell_citizen(self, ctx: Context, event: Envelope, key: str, context: dict) -> list:
        dossier = self.dossier
        if dossier is None:
            raise UnknownDossier(f"no dossier with code {self.code} in notify")
        if key not in templates.REQUIRED and not dossier.optional:
            return []                                # the citizen opted out of optional messages
        context = {"code": dossier.code, "name": dossier.applicant_name, "procedure": dossier.procedure,
                   "unit_name": ctx.unit_name(dossier.unit), **context}
        addresses = {"sms": dossier.phone, "email": dossier.email, "zalo": dossier.phone}
        queued: list = []
        for channel in dossier.channels:
            if addresses.get(channel):
                queued += self._queue(ctx, event.id, key, channel, "citizen", addresses[channel], context,
                                      unit=dossier.unit)
        return queued

    def _tell_officials(self, ctx: Context, event_id: str, key: str, unit: str, context: dict) -> list:
        contacts = ctx.officials.get(unit) or {}
        queued: list = []
        for address in contacts.get("email", []):
            queued += self._queue(ctx, event_id, key, "email", "official", address, context, unit=unit)
        if contacts.get("webhook"):
            queued += self._queue(ctx, event_id, key, "webhook", "official", contacts["webhook"], context, unit=unit)
        return queued

    def _change(self, **values) -> None:
        if self.dossier is None:
            return                               # nothing kept of a dossier notify never heard of
        for name, value in values.items():
            setattr(self.dossier, name, value)

    # --- the events notify consumes -------------------------------------------------------------

    def received(self, event: Envelope, ctx: Context) -> list:
        p = event.payload
        if self.dossier is None:
            settings = p.get("notifications") or {"channels": ["sms"], "optional": True}
            self.dossier = Dossier(
                code=p["code"], unit=event.unit,
                procedure=ctx.procedure_name(p["procedure_code"], p["procedure_version"]),
                applicant_name=p["applicant"]["name"], phone=ctx.open_phone(p["applicant"].get("phone")),
                email=p["applicant"].get("email"), secret=p["secret"], channels=list(settings["channels"]),
                optional=settings["optional"], received_at=datetime.fromisoformat(p["received_at"]),
                appointment_date=p["appointment_date"])
        status_url = f"{ctx.public_url.rstrip('/')}/tra-cuu?code={p['code']}&secret={p['secret']}"
        return self._emit(self._tell_citizen(ctx, event, "received", {
            "appointment_date": p["appointment_date"], "status_url": status_url, "secret": p["secret"]}))

    def supplement_requested(self, event: Envelope, ctx: Context) -> list:
        p = event.payload
        return self._emit(self._tell_citizen(ctx, event, "supplement_requested",
                                             {"documents": p["documents"], "reason": p["reason"]}))

    def supplement_received(self, event: Envelope, ctx: Context) -> list:
        # Version 1 carried the desk's new date; since version 2 routing announces it
        # (dossier.deadline_changed).
        if event.payload.get("appointment_date"):
            self._later_appointment(event.payload["appointment_date"])
        return []

    def deadline_changed(self, event: Envelope, ctx: Context) -> list:
        """Routing moved the dossier's deadline: the appointment the digest counts (an apology's
        later date stands; while the clock is stopped nothing changes)."""
        if event.payload.get("due_date"):
            self._later_appointment(event.payload["due_date"])
        return []

    def _later_appointment(self, new: str) -> None:
        current = self.dossier.appointment_date if self.dossier else None
        current = current.isoformat() if isinstance(current, date) else current
        if current is None or new > current:
            self._change(appointment_date=new)

    def refused(self, event: Envelope, ctx: Context) -> list:
        if event.payload.get("received") is False and self.dossier is None:
            return []    # an online submission refused before receipt: its citizen reads it on the status page
        queued = self._tell_citizen(ctx, event, "refused", {"reason": event.payload["reason"]})
        self._change(open=False)
        return self._emit(queued)

    def withdrawn(self, event: Envelope, ctx: Context) -> list:
        self._change(open=False)
        return []

    def apology_issued(self, event: Envelope, ctx: Context) -> list:
        p = event.payload
        queued = self._tell_citizen(ctx, event, "apology", {
            "agency_name": ctx.unit_name(p["agency"]), "reason": p["reason"],
            "original_due_date": p["original_due_date"], "new_date": p["new_date"]})
        self._change(appointment_date=p["new_date"])
        return self._emit(queued)

    def processed(self, event: Envelope, ctx: Context) -> list:
        if event.payload["result"] != "done":
            return []
        return self._emit(self._tell_citizen(ctx, event, "result_ready", {}))

    def returned(self, event: Envelope, ctx: Context) -> list:
        queued = self._tell_citizen(ctx, event, "returned", {"returned_at": event.payload["returned_at"]})
        self._change(open=False)
        return self._emit(queued)

    def overdue(self, event: Envelope, ctx: Context) -> list:
        self._change(overdue=True)               # routing decided it; the digest counts it
        return []

    def paid(self, event: Envelope, ctx: Context) -> list:
        p = event.payload
        return self._emit(self._tell_citizen(ctx, event, "payment_received", {
            "amount": p["amount"], "receipt_number": p.get("receipt_number") or ""}))

    def refunded(self, event: Envelope, ctx: Context) -> list:
        p = event.payload
        return self._emit(self._tell_citizen(ctx, event, "refunded", {
            "amount": p["amount"], "receipt_number": p["receipt_number"], "reason": p["reason"]}))

    def warn_agency(self, event: Envelope, ctx: Context) -> list:
        """``dossier.at_risk`` and ``dossier.step_overdue``: the agency's officials are told."""
        p = event.payload
        return self._emit(self._tell_officials(ctx, event.id, event.type.split(".")[1], p["agency"], {
            "code": p["code"], "agency_name": ctx.unit_name(p["agency"]), "due_date": p["due_date"]}))

    def apology_missing(self, event: Envelope, ctx: Context) -> list:
        p = event.payload
        context = {"code": p["code"], "agency_name": ctx.unit_name(p["agency"]), "overdue_since": p["overdue_since"]}
        queued = self._tell_officials(ctx, event.id, "apology_missing", p["agency"], context)
        if event.unit != p["agency"]:
            queued += self._tell_officials(ctx, event.id, "apology_missing", event.unit, context)
        return self._emit(queued)

    def digest(self, unit: str, day: date, figures: dict, ctx: Context) -> list:
        """The unit head's daily digest (an aggregate without a dossier: ``code`` None), to every
        address of the unit or to none: a template that fails to render (an official's edit, say)
        queues nothing and returns :class:`DigestFailed` instead of raising, so that the day can be
        recorded as failed rather than rolled back and tried again at every check."""
        before = len(self.messages)
        try:
            queued = self._tell_officials(ctx, f"digest-{unit}-{day.isoformat()}", "daily_digest", unit, {
                "unit_name": ctx.unit_name(unit), "day": day.isoformat(), **figures})
        except NotRendered as invalid:
            del self.messages[before:]           # no part of a broken digest is sent
            return self._emit([DigestFailed(unit, day, invalid.channel, str(invalid))])
        return self._emit(queued)

    # --- sending --------------------------------------------------------------------------------

    def _leased(self, message_id: int) -> Message:
        message = self.message(message_id)
        if message is None:
            raise KeyError(f"message {message_id} is not part of this aggregate")
        return message

    def sent(self, message_id: int, provider_id: str, now: datetime) -> list:
        """The provider accepted the message (state sent)."""
        message = self._leased(message_id)
        if message.state != "sending":
            return []     # recorded already (or reported meanwhile): nothing twice
        message.state, message.sent_at, message.provider_id, message.last_error = "sent", now, provider_id, None
        return self._emit([MessageSent(message.id, message.channel, message.template, message.attempts,
                                       max((now - message.created_at).total_seconds(), 0.0))])

    def attempt_failed(self, message_id: int, reason: str, *, permanent: bool, policy: Policy,
                       now: datetime) -> list:
        """An attempt failed: retried after the backoff while attempts remain (and the error is
        not permanent); otherwise failed for good."""
        message = self._leased(message_id)
        if message.state != "sending":
            return []
        message.last_error = reason
        if not permanent and message.attempts < policy.max_attempts:
            message.state = "queued"
            message.next_attempt_at = now + backoff(policy, message.attempts)
            return self._emit([MessageRetried(message.id, message.channel, message.attempts, reason)])
        message.state = "failed"
        return self._emit([MessageFailed(message.id, message.code, message.channel, message.template,
                                         message.attempts, reason)])

    def delivery_report(self, provider_id: str, status: str, now: datetime) -> list:
        """The provider's report: the message reached the handset (delivered), or did not (failed)."""
        if status not in ("delivered", "failed"):
            raise ValueError(f"status: delivered or failed, not {status!r}")
        message = next((m for m in self.messages if m.provider_id == provider_id), None)
        if message is None:
            raise KeyError(f"no message with provider id {provider_id}")
        message.state = status
        message.delivered_at = now if status == "delivered" else None
        return self._emit([DeliveryReported(provider_id, message.channel, message.template, status)])


#: consumed event type -> the method of the aggregate that decides what it causes
REACTIONS: dict[str, Callable[[DossierMessages, Envelope, Context], list]] = {
    "dossier.received": DossierMessages.received,
    "dossier.supplement_requested": DossierMessages.supplement_requested,
    "dossier.supplement_received": DossierMessages.supplement_received,
    "dossier.refused": DossierMessages.refused,
    "dossier.withdrawn": DossierMessages.withdrawn,
    "dossier.apology_issued": DossierMessages.apology_issued,
    "dossier.deadline_changed": DossierMessages.deadline_changed,
    "dossier.processed": DossierMessages.processed,
    "dossier.returned": DossierMessages.returned,
    "dossier.overdue": DossierMessages.overdue,
    "dossier.at_risk": DossierMessages.warn_agency,
    "dossier.step_overdue": DossierMessages.warn_agency,
    "dossier.apology_missing": DossierMessages.apology_missing,
    "fees.paid": DossierMessages.paid,
    "fees.refunded": DossierMessages.refunded,
}


#: At most this many codes per list in a digest (``DIGEST_MAX_CODES``); the counts are always whole.
DIGEST_MAX_CODES = 50
#: Beyond this a list no longer fits the renderer's limit (``templates.MAX_OUTPUT_CHARS``) safely.
DIGEST_MAX_CODES_LIMIT = 200


class Codes(list):
    """The first codes of a digest's list, whose ``len`` is the count of ALL of them.

    A template saved before the digest was bounded prints ``{{ overdue|length }}`` and loops over
    ``overdue``: it keeps printing the right count, and at most N codes. New templates use the
    explicit ``overdue_count`` / ``overdue_more``."""

    def __init__(self, codes, total: int):
        super().__init__(codes)
        self.total = total

    def __len__(self) -> int:
        return self.total


@dataclass(frozen=True)
class DigestFigures:
    """What a unit head's digest says; built from what notify was told, never from its own rules.

    ``due_today`` and ``overdue`` hold at most N codes (the first ones in the digest's order);
    ``due_today_count`` and ``overdue_count`` count them all (the lists' lengths when not given)."""
    received: int
    due_today: list = field(default_factory=list)
    overdue: list = field(default_factory=list)
    due_today_count: int | None = None
    overdue_count: int | None = None

    def __post_init__(self):
        if self.due_today_count is None:
            object.__setattr__(self, "due_today_count", len(self.due_today))
        if self.overdue_count is None:
            object.__setattr__(self, "overdue_count", len(self.overdue))

    def as_context(self, list_url: str | None = None) -> dict:
        """The template's variables: the counts, the codes, how many more, and the officials' list."""
        return {"received": self.received,
                "due_today": Codes(self.due_today, self.due_today_count),
                "overdue": Codes(self.overdue, self.overdue_count),
                "due_today_count": self.due_today_count, "overdue_count": self.overdue_count,
                "due_today_more": self.due_today_count - len(self.due_today),
                "overdue_more": self.overdue_count - len(self.overdue),
                "list_url": list_url or None}


def overdue_order(dossier: Dossier) -> tuple:
    """The longest overdue first: by appointment date (none last), then code (within a unit, the
    order of receipt). Those are the ones a unit head must act on first (an apology, Mẫu 04)."""
    day = dossier.appointment_date
    day = date.fromisoformat(day) if isinstance(day, str) else day
    return (day is None, day or date.min, dossier.code)


def digest_figures(dossiers: list[Dossier], unit: str, since: datetime, today: date,
                   limit: int = DIGEST_MAX_CODES) -> DigestFigures:
    """Received since ``since``; open and due today; open and overdue as routing said
    (``dossier.overdue``): notify does not compare dates to decide it. Each list: its count, and
    its first ``limit`` codes (due today by code, i.e. by receipt; overdue by :func:`overdue_order`)."""
    mine = [d for d in dossiers if d.unit == unit]

    def day(value) -> date | None:
        return date.fromisoformat(value) if isinstance(value, str) else value

    due = sorted(d.code for d in mine if d.open and day(d.appointment_date) == today)
    overdue = [d.code for d in sorted((d for d in mine if d.open and d.overdue), key=overdue_order)]
    return DigestFigures(
        received=sum(1 for d in mine if d.received_at >= since),
        due_today=due[:limit], overdue=overdue[:limit], due_today_count=len(due), overdue_count=len(overdue))
