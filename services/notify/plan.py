"""Who is told what, on which channel, for each event; and the messages queued for it.

Everything here runs in the transaction that consumes the event, so the messages are queued
(or not) together with the event's id: a redelivered event queues nothing new.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Callable, Mapping

from sqlalchemy.orm import Session

from motcua.contracts.calendar import TZ, local_date
from motcua.contracts.events import Envelope
from motcua.runtime.inbox import NotYet
from services.notify import store, templates

CITIZEN_CHANNELS = ("sms", "email")


@dataclass
class Context:
    session: Session
    now: datetime
    unit_name: Callable[[str], str]
    procedure_name: Callable[[str, int], str]
    officials: Mapping[str, dict]            # unit code -> {"email": [...], "webhook": url}
    public_url: str
    quiet_hours: tuple[time, time] = (time(21, 0), time(7, 0))


class UnknownDossier(NotYet):
    """An event about a dossier notify has not heard of (yet: its dossier.received may still be on
    its way); put back, then dead-lettered with this reason if it never comes."""


def _key(event: Envelope, channel: str, recipient: str) -> str:
    """Once per (event, recipient, channel); the address itself never leaves the database."""
    digest = hashlib.sha256(recipient.encode()).hexdigest()[:16]
    return f"{event.id}:{channel}:{digest}"


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


def _template(ctx: Context, key: str, channel: str) -> templates.Template:
    row = store.template(ctx.session, key, channel)
    if row is not None:
        return templates.Template(key, channel, row.subject, row.body)
    return templates.defaults()[(key, channel)]


def _queue(ctx: Context, event: Envelope, key: str, channel: str, audience: str, recipient: str, context: dict,
           *, code: str | None, unit: str | None) -> None:
    rendered = templates.render(_template(ctx, key, channel), context)
    first_try = ctx.now
    if channel == "sms" and audience == "citizen":
        first_try = after_quiet_hours(ctx.now, ctx.quiet_hours)   # no SMS to citizens at night
    store.queue(ctx.session, {
        "idempotency_key": _key(event, channel, recipient), "code": code, "unit": unit, "template": key,
        "channel": channel, "audience": audience, "recipient": recipient, "subject": rendered.subject,
        "text": rendered.text, "state": "queued", "next_attempt_at": first_try, "created_at": ctx.now})


def tell_citizen(ctx: Context, event: Envelope, key: str, context: dict) -> None:
    code = event.payload["code"]
    dossier = store.dossier(ctx.session, code)
    if dossier is None:
        raise UnknownDossier(f"no dossier with code {code} in notify")
    if key not in templates.REQUIRED and not dossier.optional:
        return                                   # the citizen opted out of optional messages
    context = {"code": code, "name": dossier.applicant_name, "procedure": dossier.procedure,
               "unit_name": ctx.unit_name(dossier.unit), **context}
    addresses = {"sms": dossier.phone, "email": dossier.email}
    for channel in dossier.channels:
        if addresses.get(channel):
            _queue(ctx, event, key, channel, "citizen", addresses[channel], context, code=code, unit=dossier.unit)


def tell_officials(ctx: Context, event: Envelope, key: str, unit: str, context: dict, code: str | None) -> None:
    contacts = ctx.officials.get(unit) or {}
    for address in contacts.get("email", []):
        _queue(ctx, event, key, "email", "official", address, context, code=code, unit=unit)
    if contacts.get("webhook"):
        _queue(ctx, event, key, "webhook", "official", contacts["webhook"], context, code=code, unit=unit)


def on_event(ctx: Context, event: Envelope) -> None:
    p = event.payload
    kind = event.type
    if kind == "dossier.received":
        settings = p.get("notifications") or {"channels": ["sms"], "optional": True}
        store.save_dossier(ctx.session, {
            "code": p["code"], "unit": event.unit,
            "procedure": ctx.procedure_name(p["procedure_code"], p["procedure_version"]),
            "applicant_name": p["applicant"]["name"], "phone": p["applicant"].get("phone"),
            "email": p["applicant"].get("email"), "secret": p["secret"], "channels": settings["channels"],
            "optional": settings["optional"], "received_at": datetime.fromisoformat(p["received_at"]),
            "appointment_date": p["appointment_date"]})
        status_url = f"{ctx.public_url.rstrip('/')}/tra-cuu?code={p['code']}&secret={p['secret']}"
        tell_citizen(ctx, event, "received", {"appointment_date": p["appointment_date"], "status_url": status_url,
                                              "secret": p["secret"]})
    elif kind == "dossier.supplement_requested":
        tell_citizen(ctx, event, "supplement_requested", {"documents": p["documents"], "reason": p["reason"]})
    elif kind == "dossier.supplement_received":
        store.change_dossier(ctx.session, p["code"], appointment_date=p["appointment_date"])
    elif kind == "dossier.refused":
        if p.get("received") is False and store.dossier(ctx.session, p["code"]) is None:
            return    # an online submission refused before receipt: its citizen reads it on the status page
        tell_citizen(ctx, event, "refused", {"reason": p["reason"]})
        store.change_dossier(ctx.session, p["code"], open=False)
    elif kind == "dossier.withdrawn":
        store.change_dossier(ctx.session, p["code"], open=False)
    elif kind == "dossier.apology_issued":
        tell_citizen(ctx, event, "apology", {"agency_name": ctx.unit_name(p["agency"]), "reason": p["reason"],
                                             "original_due_date": p["original_due_date"], "new_date": p["new_date"]})
        store.change_dossier(ctx.session, p["code"], appointment_date=p["new_date"])
    elif kind == "dossier.processed":
        if p["result"] == "done":
            tell_citizen(ctx, event, "result_ready", {})
    elif kind == "dossier.returned":
        tell_citizen(ctx, event, "returned", {"returned_at": p["returned_at"]})
        store.change_dossier(ctx.session, p["code"], open=False)
    elif kind == "dossier.overdue":
        store.change_dossier(ctx.session, p["code"], overdue=True)
    elif kind == "fees.paid":
        tell_citizen(ctx, event, "payment_received", {"amount": p["amount"],
                                                      "receipt_number": p.get("receipt_number") or ""})
    elif kind == "fees.refunded":
        tell_citizen(ctx, event, "refunded", {"amount": p["amount"], "receipt_number": p["receipt_number"],
                                              "reason": p["reason"]})
    elif kind in ("dossier.at_risk", "dossier.step_overdue"):
        tell_officials(ctx, event, kind.split(".")[1], p["agency"],
                       {"code": p["code"], "agency_name": ctx.unit_name(p["agency"]), "due_date": p["due_date"]},
                       p["code"])
    elif kind == "dossier.apology_missing":
        context = {"code": p["code"], "agency_name": ctx.unit_name(p["agency"]), "overdue_since": p["overdue_since"]}
        tell_officials(ctx, event, "apology_missing", p["agency"], context, p["code"])
        if event.unit != p["agency"]:
            tell_officials(ctx, event, "apology_missing", event.unit, context, p["code"])
    else:
        raise ValueError(f"notify does not handle {kind}")


HANDLED = ("dossier.received", "dossier.supplement_requested", "dossier.supplement_received", "dossier.refused",
           "dossier.withdrawn", "dossier.apology_issued", "dossier.processed", "dossier.returned",
           "dossier.overdue", "fees.paid", "fees.refunded", "dossier.at_risk", "dossier.step_overdue",
           "dossier.apology_missing")


def digest(ctx: Context, unit: str, since: datetime) -> bool:
    """The unit head's daily digest, once per unit and working day (claimed in the database)."""
    today = local_date(ctx.now)
    if not store.claim_digest(ctx.session, unit, today, ctx.now):
        return False
    figures = store.digest_figures(ctx.session, unit, since, today)
    envelope_id = f"digest-{unit}-{today.isoformat()}"
    fake = Envelope(type="notify.digest", payload={}, unit=unit, id=envelope_id)
    tell_officials(ctx, fake, "daily_digest", unit, {"unit_name": ctx.unit_name(unit), "day": today.isoformat(),
                                                      **figures}, None)
    return True
