"""Signed hand-offs between agencies (as X-Road signs what one member sends another): what is
signed, how, and which unit's key may sign it when. Pure: keys come in as data, no file or
network is read here (``motcua.runtime.keys`` reads them).

What is signed is the canonical JSON of the hand-off: keys sorted, no whitespace, UTF-8, the
instant in UTC with microseconds. It always names the signing unit, the dossier, the step, the
action, the instant and the key id, so a signature cannot be moved to another unit, dossier or
key. The signature is Ed25519 (RFC 8032) over those bytes, sent and kept as base64.

A unit has one or more keys, each valid from ``valid_from`` to ``valid_until`` (open: no end).
A rotation adds a new key and gives the old one an end a little later: during that overlap both
verify, after it only the new one does.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

# Why a signature was refused: the values of the metric's ``reason`` label (a closed list).
MISSING = "missing"              # no signature or no key id
MALFORMED = "malformed"          # not base64 of 64 bytes
UNKNOWN_KEY = "unknown_key"      # no such key id in the registry
OTHER_UNIT = "other_unit"        # the key is another unit's
NOT_YET_VALID = "not_yet_valid"  # the key's validity starts later
EXPIRED = "expired"              # the key's validity has ended (rotated out, past the overlap)
MISMATCH = "mismatch"            # the bytes signed are not these (changed payload, wrong key)
REASONS = (MISSING, MALFORMED, UNKNOWN_KEY, OTHER_UNIT, NOT_YET_VALID, EXPIRED, MISMATCH)


class SignatureRefused(ValueError):
    """A hand-off whose signature does not hold: nothing is done with it. ``field`` names what is
    at fault (``signature`` or ``key_id``), ``why`` is one of ``REASONS``. A plain ValueError, not
    a Refusal: the unit systems' client uses this module without nameko."""

    def __init__(self, field: str, reason: str, why: str):
        super().__init__(field, reason, why)
        self.field, self.reason, self.why = field, reason, why

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


def _refused(field: str, why: str, reason: str) -> SignatureRefused:
    return SignatureRefused(field, f"{reason} ({why})", why)


# --- the canonical form --------------------------------------------------------------------------

def instant(value: datetime | str) -> str:
    """An instant as signed: UTC, microseconds, '+00:00' (the same whatever offset it came with)."""
    moment = datetime.fromisoformat(value.strip()) if isinstance(value, str) else value
    if moment.tzinfo is None:
        raise ValueError(f"an instant must carry its offset (e.g. +07:00), got {value!r}")
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def canonical(content: Mapping[str, Any]) -> bytes:
    """The bytes signed: JSON, keys sorted, no whitespace, UTF-8 (not ASCII-escaped)."""
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def handover_content(*, unit: str, key_id: str, dossier: str, step: int | None, action: str,
                     at: datetime | str, from_agency: str, to_agency: str, giver: str, result_class: str,
                     note: str | None) -> dict:
    """A hand-over inside the platform (routing's control slip, Mẫu 05), signed for ``unit``."""
    return {"unit": unit, "key_id": key_id, "dossier": dossier, "step": step, "action": action,
            "at": instant(at), "from": from_agency, "to": to_agency, "giver": giver,
            "result_class": result_class, "note": note or ""}


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def unit_event_content(unit: str, key_id: str, event: Mapping[str, Any]) -> dict:
    """An event a unit system publishes (the gateway's ``PublishEvents`` or RabbitMQ), signed by
    its own unit. Text is trimmed and documents take their defaults, as the gateway reads them."""
    step, occurred = event.get("step"), event.get("occurred_at")
    documents = [{"name": _text(d.get("name")), "form": d.get("form") or "original", "count": d.get("count") or 1}
                 for d in event.get("documents") or [] if isinstance(d, Mapping)]
    return {"unit": unit, "key_id": key_id, "dossier": _text(event.get("dossier_code")),
            "step": step if isinstance(step, int) and not isinstance(step, bool) and step > 0 else None,
            "action": _text(event.get("type")), "at": instant(occurred) if occurred else "",
            "idempotency_key": _text(event.get("idempotency_key")),
            "official": _text(event.get("official")), "note": _text(event.get("note")),
            "reason": _text(event.get("reason")), "proposed_date": _text(event.get("proposed_date")),
            "documents": documents}


# --- keys ----------------------------------------------------------------------------------------

def public_key_text(private_key: Ed25519PrivateKey) -> str:
    """The public half as the registry keeps it: base64 of its 32 raw bytes."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    return base64.b64encode(private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


@dataclass(frozen=True)
class UnitKey:
    """One public key of a unit, as the registry lists it."""
    unit: str
    key_id: str
    public_key: str                  # base64 of the 32 raw bytes
    valid_from: datetime
    valid_until: datetime | None = None

    def valid_at(self, at: datetime) -> bool:
        return self.valid_from <= at and (self.valid_until is None or at < self.valid_until)

    def as_dict(self) -> dict:
        return {"unit": self.unit, "key_id": self.key_id, "public_key": self.public_key,
                "valid_from": self.valid_from.isoformat(),
                "valid_until": self.valid_until.isoformat() if self.valid_until else None}

    @classmethod
    def from_dict(cls, data: Mapping, where: str = "key") -> "UnitKey":
        """One registry entry, checked: ValueError names the entry and the field."""
        for name in ("unit", "key_id", "public_key", "valid_from"):
            if not isinstance(data.get(name), str) or not data[name].strip():
                raise ValueError(f"{where}.{name}: is required (text)")
        try:
            raw = base64.b64decode(data["public_key"], validate=True)
        except binascii.Error:
            raw = b""
        if len(raw) != 32:
            raise ValueError(f"{where}.public_key: must be base64 of a 32-byte Ed25519 public key")
        try:
            valid_from = datetime.fromisoformat(data["valid_from"])
            until = data.get("valid_until")
            valid_until = datetime.fromisoformat(until) if until else None
        except (TypeError, ValueError):
            raise ValueError(f"{where}.valid_from/valid_until: must be ISO instants with their offset") from None
        if valid_from.tzinfo is None or (valid_until is not None and valid_until.tzinfo is None):
            raise ValueError(f"{where}.valid_from/valid_until: must carry their offset")
        if valid_until is not None and valid_until <= valid_from:
            raise ValueError(f"{where}.valid_until: must come after valid_from")
        return cls(data["unit"], data["key_id"], data["public_key"], valid_from, valid_until)


class KeyRegistry:
    """Every unit's public keys (data, from the registry file). Key ids are unique."""

    def __init__(self, keys: Iterable[UnitKey] = ()):
        self.keys = tuple(keys)
        self._by_id: dict[str, UnitKey] = {}
        for key in self.keys:
            if key.key_id in self._by_id:
                raise ValueError(f"key id {key.key_id} is listed twice")
            self._by_id[key.key_id] = key

    def get(self, key_id: str) -> UnitKey | None:
        return self._by_id.get(key_id)

    def of_unit(self, unit: str) -> list[UnitKey]:
        return [key for key in self.keys if key.unit == unit]

    def key_for(self, unit: str, key_id: str, at: datetime) -> UnitKey:
        """The key that may verify ``unit``'s signature made at ``at``, or SignatureRefused."""
        if not key_id:
            raise _refused("key_id", MISSING, "is required: the id of the unit's signing key")
        key = self._by_id.get(key_id)
        if key is None:
            raise _refused("key_id", UNKNOWN_KEY, f"no key {key_id!r} in the key registry")
        if key.unit != unit:
            raise _refused("key_id", OTHER_UNIT, f"key {key_id} is {key.unit}'s, not {unit}'s")
        if at < key.valid_from:
            raise _refused("key_id", NOT_YET_VALID, f"key {key_id} is valid from {key.valid_from.isoformat()}")
        if key.valid_until is not None and at >= key.valid_until:
            raise _refused("key_id", EXPIRED, f"key {key_id} expired at {key.valid_until.isoformat()}")
        return key


# --- signing and verifying -------------------------------------------------------------------------

def sign(private_key: Ed25519PrivateKey, content: Mapping[str, Any]) -> str:
    return base64.b64encode(private_key.sign(canonical(content))).decode()


def verify(registry: KeyRegistry, content: Mapping[str, Any], signature: str | None, at: datetime) -> UnitKey:
    """Check ``signature`` over ``content`` (which names its unit and key id) with a key of that
    unit valid at ``at``; the key, or SignatureRefused naming the field and the reason."""
    if not signature:
        raise _refused("signature", MISSING, "is required: the unit's Ed25519 signature (base64)")
    key = registry.key_for(content["unit"], content.get("key_id") or "", at)
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 64:
        raise _refused("signature", MALFORMED, "must be base64 of a 64-byte Ed25519 signature")
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(key.public_key)).verify(raw, canonical(content))
    except InvalidSignature:
        raise _refused("signature", MISMATCH, f"does not match the hand-off signed with key {key.key_id}: "
                                              "changed after signing, or signed with another key") from None
    return key


class Signer:
    """Signs for the units whose private keys it holds (routing, for the agencies that work on the
    platform directly): with the newest of the unit's keys valid at the instant."""

    def __init__(self, registry: KeyRegistry, private_keys: Mapping[str, Ed25519PrivateKey]):
        self.registry, self.private_keys = registry, dict(private_keys)

    def key_id(self, unit: str, at: datetime) -> str | None:
        """The key id to sign ``unit``'s hand-off at ``at`` with; None when no key is held for it."""
        held = [key for key in self.registry.of_unit(unit) if key.key_id in self.private_keys and key.valid_at(at)]
        return max(held, key=lambda key: key.valid_from).key_id if held else None

    def sign(self, content: Mapping[str, Any]) -> str:
        return sign(self.private_keys[content["key_id"]], content)
