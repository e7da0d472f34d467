"""notify's use cases: ``HANDLERS = {command or event type: handler(command, uow)}``.

Each handler opens the unit of work, loads its aggregate once, lets the aggregate decide, commits
once and returns the events the aggregate caused. The entry points (service.py, dispatch.py) are
thin: parse, call :func:`handle`, answer; metrics are counted from the returned events.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from motcua.contracts.calendar import local_date
from motcua.contracts.events import Envelope
from motcua.contracts.refusals import Invalid, NotFound
from motcua.contracts.reorganisations import Reorganisation
from motcua.runtime.inbox import about
from services.notify import templates
from services.notify.messages import (DIGEST_MAX_CODES, REACTIONS, Context, DeliveryReported, DigestFailed,
                                      Policy)

# --- commands -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Consume:
    """An event of another service, for the aggregate of its dossier."""
    event: Envelope
    context: Context


@dataclass(frozen=True)
class SaveTemplate:
    key: str
    channel: str
    subject: str | None
    body: str
    editor: str


@dataclass(frozen=True)
class ReportDelivery:
    provider_id: str
    status: str                          # delivered | failed
    now: datetime


def delivery_report(raw: str, now: datetime) -> ReportDelivery:
    """The SMS gateway's report, ``{"id": "<provider id>", "status": "delivered" | "failed"}``; anything
    else is :class:`Invalid` naming the field at fault (nothing is read or written for it)."""
    try:
        body = json.loads(raw or "{}")
    except (ValueError, RecursionError):        # RecursionError: arrays nested thousands deep
        raise Invalid("body", "is not valid JSON") from None
    if not isinstance(body, dict):
        raise Invalid("body", f"must be a JSON object with id and status, not {type(body).__name__}")
    provider_id, status = body.get("id"), body.get("status")
    if not isinstance(provider_id, str):
        raise Invalid("id", "is required: the provider's message id, as text")
    if "\x00" in provider_id:                   # PostgreSQL's text cannot hold it (a 500 before)
        raise Invalid("id", "may not contain a NUL character")
    if not isinstance(status, str) or status not in ("delivered", "failed"):
        raise Invalid("status", "is required: delivered or failed")
    return ReportDelivery(provider_id, status, now)


@dataclass(frozen=True)
class RecordSent:
    """A message its provider accepted: ``message`` as the dispatcher's lease returned it."""
    message: Any
    provider_id: str
    now: datetime


@dataclass(frozen=True)
class RecordFailure:
    message_id: int
    reason: str
    permanent: bool
    policy: Policy
    now: datetime


@dataclass(frozen=True)
class SendDigest:
    unit: str
    since: datetime
    context: Context
    max_codes: int = DIGEST_MAX_CODES        # codes per list at most; the counts are whole
    list_url: str | None = None              # the officials' full list, linked from the digest


@dataclass(frozen=True)
class TemplateSaved:
    template: templates.Template
    editor: str


@dataclass(frozen=True)
class DigestQueued:
    unit: str
    day: date


# --- handlers -----------------------------------------------------------------------------------

def consume(command: Consume, uow) -> list:
    """Once per event id (recorded in the transaction of its effect): a redelivery causes nothing."""
    return handle_events([command], uow)


def handle_events(commands: list[Consume], uow) -> list:
    """Events delivered together, in one transaction, each once per event id; a dossier named by
    several of them is loaded once. An error rolls them all back (the consumer then tries each alone)."""
    for command in commands:
        if command.event.type not in REACTIONS:
            raise ValueError(f"notify does not consume {command.event.type}")
    events: list = []
    with uow:
        for command in commands:
            event = command.event
            with about(event):
                if not uow.inbox.first_time(event):
                    continue
                aggregate = uow.dossiers.get(event.payload["code"])
                events += REACTIONS[event.type](aggregate, event,
                                                replace(command.context, template=uow.templates.get))
        uow.commit()
    return events


def save_template(command: SaveTemplate, uow) -> list:
    """Validated (rendered with a sample) before anything is written: a bad template is refused
    with :class:`services.notify.templates.TemplateInvalid` and changes nothing."""
    template = templates.validate(command.key, command.channel, command.subject, command.body)
    with uow:
        uow.templates.save(template, command.editor)
        uow.commit()
    return [TemplateSaved(template, command.editor)]


def report_delivery(command: ReportDelivery, uow) -> list[DeliveryReported]:
    with uow:
        aggregate = uow.dossiers.with_provider_id(command.provider_id)
        if aggregate is None:
            raise NotFound("id", f"no message with provider id {command.provider_id}")
        events = aggregate.delivery_report(command.provider_id, command.status, command.now)
        uow.commit()
    return events


def record_sent(command: RecordSent, uow) -> list:
    """Recorded at once, before its sender sends the next message (the dispatcher waits for it),
    from the lease's row (nothing read again). A crash before the write sends only this message
    again after the lease, with the same idempotency key. A message another process recorded
    first (its lease ran out meanwhile) is left as it is: nothing twice."""
    with uow:
        aggregate = uow.dossiers.leased(command.message)
        events = aggregate.sent(command.message.id, command.provider_id, command.now)
        uow.commit()
    return [] if uow.dossiers.was_lost(aggregate) else events


def record_failure(command: RecordFailure, uow) -> list:
    with uow:
        aggregate = uow.dossiers.with_message(command.message_id)
        if aggregate is None:
            return []
        events = aggregate.attempt_failed(command.message_id, command.reason, permanent=command.permanent,
                                          policy=command.policy, now=command.now)
        uow.commit()
    return events


def send_digest(command: SendDigest, uow) -> list:
    """The unit head's daily digest, once per unit and working day (claimed in the transaction).

    Counts and at most ``max_codes`` codes per list. A digest that fails to render (an official's
    template) queues nothing; its claim is committed marked failed, with the reason, and the
    handler returns :class:`DigestFailed`: not tried again every minute all day. Any other error
    (the database) rolls the claim back: the next check tries again."""
    ctx = command.context
    today = local_date(ctx.now)
    with uow:
        if not uow.digests.claim(command.unit, today, ctx.now):
            return []
        figures = uow.digests.figures(command.unit, command.since, today, command.max_codes)
        aggregate = uow.dossiers.for_unit(command.unit)
        events = aggregate.digest(command.unit, today, figures.as_context(command.list_url),
                                  replace(ctx, template=uow.templates.get))
        failed = [event for event in events if isinstance(event, DigestFailed)]
        if failed:
            uow.digests.failed(command.unit, today, failed[0].reason)
        uow.commit()
    return events if failed else [DigestQueued(command.unit, today), *events]


def reorganise(command: Consume, uow) -> list:
    """Units merged (``catalog.units_reorganised``): the open dossiers of a dissolved desk are
    counted at its successor, in one transaction, once per event id."""
    event = command.event
    reorganisation = Reorganisation.from_payload(event.payload)
    with uow:
        if uow.inbox.first_time(event):
            for code in uow.dossiers.open_at(sorted(reorganisation.dissolved)):
                aggregate = uow.dossiers.get(code)
                aggregate.reorganised(reorganisation.successor(aggregate.dossier.unit))
        uow.commit()
    return []


HANDLERS = {
    **{event_type: consume for event_type in REACTIONS},
    "catalog.units_reorganised": reorganise,
    "notify.save_template": save_template,
    "notify.delivery_report": report_delivery,
    "notify.record_sent": record_sent,
    "notify.record_failure": record_failure,
    "notify.digest": send_digest,
}


def handle(kind: str, command, uow) -> list:
    return HANDLERS[kind](command, uow)
