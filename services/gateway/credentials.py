"""Unit systems' tokens: ``<token id>.<secret>``; only the secret's SHA-256 is stored.

The secret is 256 random bits, so a plain hash is enough (no password stretching needed), and
the comparison is constant-time. Tokens are read from the database on every call: a token issued
or revoked with ``motcua gateway token ...`` counts at once, without a restart.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import date, datetime
from typing import Mapping

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from motcua.contracts import access
from motcua.contracts.refusals import Forbidden, Invalid, NotFound, Unauthenticated
from motcua.contracts.reorganisations import dissolved
from services.gateway.models import credentials


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_token(token: str) -> tuple[str, str]:
    token_id, dot, secret = (token or "").strip().partition(".")
    if not dot or not token_id or not secret:
        raise Unauthenticated("authorization", "expected 'Bearer <token id>.<secret>'")
    return token_id, secret


def bearer(metadata: dict) -> str:
    value = metadata.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("authorization", "metadata 'authorization: Bearer <token>' is required")
    return token


def authenticate(session: Session, token: str, now: datetime) -> tuple[str, str]:
    """The unit and token id of a valid token, or Unauthenticated (the same answer for every failure)."""
    token_id, secret = parse_token(token)
    row = session.execute(select(credentials).where(credentials.c.token_id == token_id)).first()
    valid = (row is not None and hmac.compare_digest(row.secret_sha256, secret_hash(secret))
             and row.revoked_at is None and (row.expires_at is None or row.expires_at > now))
    if not valid:
        raise Unauthenticated("authorization", "unknown, revoked or expired token")
    return row.unit, token_id


# A unit's token acts as its unit system: the role of the access table (motcua/contracts/access.py)
# whose gRPC methods it may call, for its own unit and the dossiers routed to it.
ROLES = frozenset({access.UNIT_SYSTEM})


def require_allowed(method: str) -> str:
    """The scope a unit system's token has on ``method``; Forbidden when the table does not list it."""
    scope = access.grpc_scope(method, ROLES)
    if scope is None:
        raise Forbidden("method", f"{access.UNIT_SYSTEM} may not call {method}: not in the access table")
    return scope


def require_active_unit(unit: str, entry: Mapping | None, day: date) -> None:
    """From a reorganisation's effective date (``day``: the local date) a dissolved unit's tokens
    are refused, naming the successor. They do not act for the successor: its system gets tokens of
    its own, so the audit log keeps saying which unit acted."""
    successor = dissolved(entry, day)
    if successor:
        raise Forbidden("authorization", f"unit {unit} was dissolved on {entry['dissolved_on']} (merged into "
                                         f"{successor}): its tokens no longer act; issue a token of {successor}")


def issue(session: Session, unit: str, now: datetime, *, label: str = "", expires_at: datetime | None = None) -> str:
    """A new token for ``unit``; the only time its secret exists outside the unit system."""
    if not unit:
        raise Invalid("unit", "is required")
    token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    session.execute(insert(credentials).values(token_id=token_id, unit=unit, secret_sha256=secret_hash(secret),
                                               label=label, issued_at=now, expires_at=expires_at))
    return f"{token_id}.{secret}"


def revoke(session: Session, token_id: str, now: datetime) -> None:
    done = session.execute(update(credentials).where(credentials.c.token_id == token_id,
                                                     credentials.c.revoked_at.is_(None))
                           .values(revoked_at=now).returning(credentials.c.token_id)).first()
    if done is None:
        raise NotFound("token_id", f"no active token {token_id}")


def listing(session: Session, unit: str | None = None) -> list[dict]:
    query = select(credentials).order_by(credentials.c.unit, credentials.c.issued_at)
    if unit:
        query = query.where(credentials.c.unit == unit)
    return [{"token_id": r.token_id, "unit": r.unit, "label": r.label, "issued_at": r.issued_at.isoformat(),
             "expires_at": r.expires_at.isoformat() if r.expires_at else None,
             "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None}
            for r in session.execute(query)]
