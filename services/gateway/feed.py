"""Each unit's feed: the platform's dossier events that concern it, numbered 1, 2, 3... per unit.

A unit system subscribes from the last position it saw. Positions are taken under the unit's
row lock (``motcua.contracts.codes.increment``), so they are gapless and become visible in order: a reader
that has seen position n never later finds an n-1 it missed.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from motcua.contracts.codes import increment
from motcua.contracts.events import Envelope
from services.gateway.models import feed, feed_heads

# Payload keys naming the agencies an event concerns, besides the receiving desk (envelope.unit).
AGENCY_KEYS = ("agency", "handling_agency", "from_agency")
# What only the receiving desk sees: the citizen's status-lookup secret and contacts.
DESK_ONLY = ("secret", "notifications")
DESK_ONLY_APPLICANT = ("phone", "email", "address", "id_number")


def audience(envelope: Envelope) -> list[str]:
    """The units whose feed gets this event: the receiving desk and every agency it names."""
    payload = envelope.payload
    units = {envelope.unit, *(payload.get(key) for key in AGENCY_KEYS)}
    units.update(payload.get("to_agencies") or [])
    return sorted(unit for unit in units if isinstance(unit, str) and unit)


def payload_for(unit: str, envelope: Envelope) -> dict:
    """What ``unit`` may see of the event: an agency does not get the desk's secret or the contacts."""
    if unit == envelope.unit:
        return envelope.payload
    payload = {key: value for key, value in envelope.payload.items() if key not in DESK_ONLY}
    if isinstance(payload.get("applicant"), dict):
        payload["applicant"] = {key: value for key, value in payload["applicant"].items()
                                if key not in DESK_ONLY_APPLICANT}
    return payload


def add(session: Session, envelope: Envelope) -> dict[str, int]:
    """Append the event to every feed it belongs to (once: a redelivery adds nothing)."""
    positions = {}
    for unit in audience(envelope):
        seen = session.execute(select(feed.c.position).where(feed.c.unit == unit,
                                                             feed.c.event_id == envelope.id)).first()
        if seen is not None:
            continue
        position = increment(session, feed_heads, {"unit": unit}, "position")
        session.execute(insert(feed).values(
            unit=unit, position=position, event_id=envelope.id, type=envelope.type,
            dossier=str(envelope.payload.get("code", "")), occurred_at=envelope.occurred_at,
            payload=payload_for(unit, envelope)))
        positions[unit] = position
    return positions


def after(session: Session, unit: str, position: int, types: list[str], limit: int = 500) -> list:
    query = (select(feed).where(feed.c.unit == unit, feed.c.position > position)
             .order_by(feed.c.position).limit(limit))
    if types:
        query = query.where(feed.c.type.in_(types))
    return session.execute(query).all()


def head(session: Session, unit: str) -> int:
    return session.execute(select(feed_heads.c.position).where(feed_heads.c.unit == unit)).scalar() or 0


def lag_seconds(occurred_at: datetime, now: datetime) -> float:
    return max(0.0, (now - occurred_at).total_seconds())
