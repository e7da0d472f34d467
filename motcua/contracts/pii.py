"""Citizens' ID numbers and phone numbers at rest: sealed with AES-256-GCM, found by a keyed hash.

Pure: the keys come in as data (``motcua.runtime.pii`` reads them from the configuration).

A sealed value is one line of text, ``pii1:<key id>:<base64url of nonce + ciphertext + tag>``: it
names the key that sealed it, so a rotation adds a new active key and leaves the old ones able to
open what they sealed until ``motcua pii rotate`` has sealed every row again. The associated data
is the value's purpose (``id_number``, ``phone``, ``recipient``) and the key id: a value sealed as
one thing cannot be passed off as another, nor its key id changed, without the tag refusing it.

A desk searches by ID number or phone through ``digest``: HMAC-SHA256 under a key of its own
(not an encryption key: a digest stays the same across a rotation of the encryption keys), over
the purpose and the value, so equal numbers give equal digests and nothing else can be read from them.

Errors never show the value, sealed or clear: only the purpose and why.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field
from typing import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "pii1"
KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
KEY_BYTES = 32                       # AES-256
NONCE_BYTES = 12                     # GCM's 96-bit nonce, random per value
_SEALED = re.compile(r"^pii1:([A-Za-z0-9_-]{1,32}):([A-Za-z0-9_-]+)$")

ID_NUMBER, PHONE, RECIPIENT = "id_number", "phone", "recipient"


class PiiError(ValueError):
    """A key setting or a sealed value that cannot be used. The message names the setting or the
    purpose and the reason, never a value."""


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and _SEALED.match(value) is not None


def key_id_of(sealed: str) -> str:
    match = _SEALED.match(sealed)
    if match is None:
        raise PiiError("not a sealed value")
    return match.group(1)


def decode_key(text: str, setting: str) -> bytes:
    """A key as configured: base64 (standard or URL-safe) of exactly 32 bytes."""
    try:
        raw = base64.b64decode(text.strip().replace("-", "+").replace("_", "/") + "=" * (-len(text.strip()) % 4),
                               validate=True)
    except (binascii.Error, ValueError):
        raise PiiError(f"{setting}: a key must be base64 of {KEY_BYTES} bytes") from None
    if len(raw) != KEY_BYTES:
        raise PiiError(f"{setting}: a key must be base64 of {KEY_BYTES} bytes, not {len(raw)}")
    return raw


def parse_keys(value: str | Mapping[str, str], setting: str = "PII_KEYS") -> dict[str, bytes]:
    """``"k1=<base64>,k2=<base64>"`` (from the environment) or a mapping (from YAML): key id -> key."""
    if isinstance(value, Mapping):
        pairs = [(str(k), str(v)) for k, v in value.items()]
    else:
        pairs = []
        for item in (value or "").split(","):
            if not item.strip():
                continue
            kid, sep, key = item.partition("=")
            if not sep:
                raise PiiError(f"{setting}: each key must be written <key id>=<base64 key>")
            pairs.append((kid.strip(), key))
    keys = {}
    for kid, key in pairs:
        if not KEY_ID.match(kid):
            raise PiiError(f"{setting}: a key id must be 1 to 32 letters, digits, '-' or '_'")
        if kid in keys:
            raise PiiError(f"{setting}: key id {kid} is given twice")
        keys[kid] = decode_key(key, setting)
    if not keys:
        raise PiiError(f"{setting}: at least one key is required")
    return keys


def new_key() -> str:
    """A fresh key, as a setting holds it."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode().rstrip("=")


def _aad(purpose: str, kid: str) -> bytes:
    return f"{PREFIX}|{purpose}|{kid}".encode()


@dataclass(frozen=True)
class KeyRing:
    """The encryption keys by id, the one that seals, and the search digests' own key."""
    keys: Mapping[str, bytes]
    active: str
    hash_key: bytes
    _aead: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.active not in self.keys:
            raise PiiError("PII_ACTIVE_KEY: must name one of the keys of PII_KEYS")
        if len(self.hash_key) < KEY_BYTES:
            raise PiiError(f"PII_HASH_KEY: must be base64 of {KEY_BYTES} bytes")
        if any(hmac.compare_digest(self.hash_key, key) for key in self.keys.values()):
            raise PiiError("PII_HASH_KEY: must not be one of the encryption keys")

    def __repr__(self) -> str:    # never the keys, in a traceback or a log line
        return f"KeyRing(keys={sorted(self.keys)}, active={self.active!r})"

    def _cipher(self, kid: str) -> AESGCM:
        if kid not in self._aead:
            self._aead[kid] = AESGCM(self.keys[kid])
        return self._aead[kid]

    def seal(self, value: str | None, purpose: str) -> str | None:
        """The value sealed under the active key (None stays None)."""
        if value is None:
            return None
        nonce = os.urandom(NONCE_BYTES)
        data = nonce + self._cipher(self.active).encrypt(nonce, value.encode(), _aad(purpose, self.active))
        return f"{PREFIX}:{self.active}:{base64.urlsafe_b64encode(data).decode().rstrip('=')}"

    def open(self, sealed: str | None, purpose: str) -> str | None:
        """The clear value of a sealed one, under whichever key sealed it (None stays None)."""
        if sealed is None:
            return None
        match = _SEALED.match(sealed) if isinstance(sealed, str) else None
        if match is None:
            raise PiiError(f"{purpose}: not a sealed value")
        kid, body = match.groups()
        if kid not in self.keys:
            raise PiiError(f"{purpose}: sealed under key {kid}, which PII_KEYS does not hold")
        try:
            data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise PiiError(f"{purpose}: the sealed value is not base64") from None
        if len(data) < NONCE_BYTES + 16:
            raise PiiError(f"{purpose}: the sealed value is too short")
        try:
            clear = self._cipher(kid).decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], _aad(purpose, kid))
        except InvalidTag:
            raise PiiError(f"{purpose}: the sealed value fails its authentication (altered, or another "
                           "purpose's)") from None
        return clear.decode()

    def sealed(self, value: str | None, purpose: str) -> str | None:
        """A value that may arrive clear (from a service not yet upgraded) or sealed: sealed."""
        return value if value is None or is_sealed(value) else self.seal(value, purpose)

    def current(self, sealed: str | None) -> bool:
        """Sealed under the active key already (None: nothing to do)."""
        return sealed is None or (is_sealed(sealed) and key_id_of(sealed) == self.active)

    def reseal(self, sealed: str | None, purpose: str) -> str | None:
        """Sealed again under the active key (a clear value is sealed)."""
        if sealed is None:
            return None
        return self.seal(self.open(sealed, purpose) if is_sealed(sealed) else sealed, purpose)

    def digest(self, value: str | None, purpose: str) -> str | None:
        """The keyed hash a search compares: equal for equal values of one purpose."""
        if value is None:
            return None
        return hmac.new(self.hash_key, f"{purpose}\x00{value}".encode(), hashlib.sha256).hexdigest()


#: The keys of an event payload (at any depth) whose values are personal numbers, and their purpose.
PAYLOAD_FIELDS = {"id_number": ID_NUMBER, "phone": PHONE}


def seal_payload(value, ring: KeyRing):
    """An event payload with every ID and phone number in it sealed (a copy; sealed ones kept).

    Events carry them sealed: the outbox row, the broker's queues and a dead-lettered message
    then never hold them in clear, and only a service with the keys (notify, to send an SMS)
    opens them."""
    if isinstance(value, dict):
        return {k: (ring.sealed(v, PAYLOAD_FIELDS[k]) if k in PAYLOAD_FIELDS and isinstance(v, str)
                    else seal_payload(v, ring)) for k, v in value.items()}
    if isinstance(value, list):
        return [seal_payload(v, ring) for v in value]
    return value


def has_clear(value, ring: KeyRing | None = None) -> bool:
    """Whether a payload still holds an ID or phone number in clear (with ``ring``: or sealed under
    another key than the active one)."""
    if isinstance(value, dict):
        return any((k in PAYLOAD_FIELDS and isinstance(v, str) and not (ring.current(v) if ring else is_sealed(v)))
                   or has_clear(v, ring) for k, v in value.items())
    if isinstance(value, list):
        return any(has_clear(v, ring) for v in value)
    return False


def reseal_payload(value, ring: KeyRing):
    """A payload with every ID and phone number sealed under the active key (``motcua pii rotate``)."""
    if isinstance(value, dict):
        return {k: (ring.reseal(v, PAYLOAD_FIELDS[k]) if k in PAYLOAD_FIELDS and isinstance(v, str)
                    and not ring.current(v) else reseal_payload(v, ring)) for k, v in value.items()}
    if isinstance(value, list):
        return [reseal_payload(v, ring) for v in value]
    return value


def open_payload(value, ring: KeyRing):
    """A payload with its sealed ID and phone numbers opened (what a desk's own system is shown)."""
    if isinstance(value, dict):
        return {k: (ring.open(v, PAYLOAD_FIELDS[k]) if k in PAYLOAD_FIELDS and is_sealed(v)
                    else open_payload(v, ring)) for k, v in value.items()}
    if isinstance(value, list):
        return [open_payload(v, ring) for v in value]
    return value
