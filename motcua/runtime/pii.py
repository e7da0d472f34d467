"""The personal-data keys of a service, from its configuration (``motcua.contracts.pii`` uses them).

Three settings, the same in every service (notify opens the phone numbers intake seals in its
events; a desk's unit system gets them through the gateway):

- ``PII_KEYS``: ``"k2=<base64>,k1=<base64>"``, every key that may still have sealed a stored value;
- ``PII_ACTIVE_KEY``: the key id that seals new values (``motcua pii rotate`` reseals the rest);
- ``PII_HASH_KEY``: the search digests' key (base64 of 32 bytes), never one of the above.

``motcua pii keys`` prints a fresh set. A service without them does not start: storing the
numbers in clear is not a fallback.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

from motcua.contracts.pii import KeyRing, PiiError, decode_key, new_key, parse_keys
from motcua.runtime.config import ConfigError

SETTINGS = ("PII_KEYS", "PII_ACTIVE_KEY", "PII_HASH_KEY")


def _text(value: Any) -> Any:
    return value if isinstance(value, Mapping) else ("" if value is None else str(value))


@lru_cache(maxsize=8)
def _ring(keys, active: str, hash_key: str) -> KeyRing:
    return KeyRing(parse_keys(dict(keys) if isinstance(keys, tuple) else keys), active,
                   decode_key(hash_key, "PII_HASH_KEY"))


def keyring(config: Mapping[str, Any]) -> KeyRing:
    """The service's key ring (built once per distinct setting). A missing or malformed setting is a
    ``ConfigError`` naming it, never the key."""
    missing = [name for name in SETTINGS if not config.get(name)]
    if missing:
        raise ConfigError(f"{', '.join(missing)}: not set (personal data is stored sealed; "
                          "`motcua pii keys` prints a new set)")
    keys = _text(config["PII_KEYS"])
    if isinstance(keys, Mapping):
        keys = tuple(sorted((str(k), str(v)) for k, v in keys.items()))
    try:
        return _ring(keys, str(config["PII_ACTIVE_KEY"]).strip(), str(config["PII_HASH_KEY"]))
    except PiiError as exc:
        raise ConfigError(str(exc)) from None


def new_settings(key_id: str = "k1") -> dict[str, str]:
    """A fresh set of the three settings (a development machine, a new installation, the demo)."""
    return {"PII_KEYS": f"{key_id}={new_key()}", "PII_ACTIVE_KEY": key_id, "PII_HASH_KEY": new_key()}
