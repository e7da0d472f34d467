"""The units' signing keys on disk (``motcua.contracts.signing`` says what they sign).

- The public key registry (``MOTCUA_KEY_REGISTRY``): one YAML file, ``keys:`` a list of
  ``{unit, key_id, public_key, valid_from, valid_until}``. Public data: the platform reads it,
  operators write it with ``motcua keys generate|rotate``.
- Private keys (``MOTCUA_SIGNING_KEYS``): a folder of ``<key id>.pem`` files (PKCS#8, mode 0600),
  only on the machine that signs for the unit: the platform's for the agencies that work on it
  directly, the unit's own system for one that publishes through the gateway. Never in git.

Both are read again when they change (a rotation counts without a restart), at most once a
second per process.
"""
from __future__ import annotations

import os
import secrets
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import structlog
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (Encoding, NoEncryption, PrivateFormat,
                                                          load_pem_private_key)

from motcua.contracts.signing import KeyRegistry, Signer, UnitKey, public_key_text

REGISTRY_ENV, KEYS_ENV = "MOTCUA_KEY_REGISTRY", "MOTCUA_SIGNING_KEYS"

log = structlog.get_logger("motcua.keys")


def registry_path(value: str | None = None) -> Path | None:
    value = value or os.environ.get(REGISTRY_ENV)
    return Path(value) if value else None


def keys_dir(value: str | None = None) -> Path | None:
    value = value or os.environ.get(KEYS_ENV)
    return Path(value) if value else None


def read_registry(path: Path | None) -> KeyRegistry:
    """The registry file, checked (ValueError names the entry and field); none: no keys."""
    if path is None or not path.exists():
        return KeyRegistry()
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entries = data.get("keys") or []
    if not isinstance(entries, list):
        raise ValueError(f"{path}: 'keys' must be a list")
    return KeyRegistry(UnitKey.from_dict(entry if isinstance(entry, dict) else {}, f"{path}: keys[{i}]")
                       for i, entry in enumerate(entries))


def write_registry(path: Path, registry: KeyRegistry) -> None:
    """Written whole to a temporary file, then renamed: a reader sees the old or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(yaml.safe_dump({"keys": [key.as_dict() for key in registry.keys]}, allow_unicode=True,
                                        sort_keys=False), encoding="utf-8")
    temporary.replace(path)


def read_private_keys(folder: Path | None) -> dict[str, Ed25519PrivateKey]:
    if folder is None or not folder.is_dir():
        return {}
    keys = {}
    for file in sorted(folder.glob("*.pem")):
        key = load_pem_private_key(file.read_bytes(), password=None)
        if isinstance(key, Ed25519PrivateKey):
            keys[file.stem] = key
    return keys


def write_private_key(folder: Path, key_id: str, key: Ed25519PrivateKey) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key_id}.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return path


def new_key(registry: KeyRegistry, unit: str, valid_from: datetime, *, overlap: timedelta | None = None,
            rotate: bool = False) -> tuple[KeyRegistry, UnitKey, Ed25519PrivateKey]:
    """A new key pair for ``unit``, valid from ``valid_from``. ``rotate``: the unit's keys still
    open then end ``overlap`` later (both verify meanwhile); without it the unit must have no key
    valid then (a first key, or one after every earlier key ended)."""
    current = [key for key in registry.of_unit(unit)
               if key.valid_until is None or key.valid_until > valid_from]
    if current and not rotate:
        raise ValueError(f"{unit} already has key {current[-1].key_id}: use 'motcua keys rotate'")
    if rotate and not current:
        raise ValueError(f"{unit} has no current key to rotate: use 'motcua keys generate'")
    private = Ed25519PrivateKey.generate()
    key = UnitKey(unit, f"{unit}#{valid_from.strftime('%Y%m%d')}-{secrets.token_hex(3)}", public_key_text(private),
                  valid_from)
    end = valid_from + (overlap or timedelta(0))
    keys = [UnitKey(k.unit, k.key_id, k.public_key, k.valid_from,
                    end if k in current and (k.valid_until is None or k.valid_until > end) else k.valid_until)
            for k in registry.keys]
    return KeyRegistry([*keys, key]), key, private


class KeyFiles:
    """The registry and the private keys of this process, read again when a file changed."""

    def __init__(self, registry_file: Path | None, private_dir: Path | None, recheck_seconds: float = 1.0):
        self.registry_file, self.private_dir = registry_file, private_dir
        self.recheck_seconds = recheck_seconds
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._checked = 0.0
        self._signer = Signer(KeyRegistry(), {})

    def _current_stamp(self) -> tuple:
        def stamp(path: Path | None):
            try:
                return path.stat().st_mtime_ns if path else None
            except FileNotFoundError:
                return None
        files = sorted(self.private_dir.glob("*.pem")) if self.private_dir and self.private_dir.is_dir() else []
        return stamp(self.registry_file), stamp(self.private_dir), tuple((f.name, stamp(f)) for f in files)

    def signer(self) -> Signer:
        """The registry and the private keys as they are now (read again if a file changed)."""
        with self._lock:
            if time.monotonic() - self._checked >= self.recheck_seconds or self._stamp is None:
                self._checked = time.monotonic()
                stamp = self._current_stamp()
                if stamp != self._stamp:
                    try:
                        self._signer = Signer(read_registry(self.registry_file), read_private_keys(self.private_dir))
                        self._stamp = stamp
                    except (OSError, ValueError) as exc:
                        # A registry half-edited by hand: keep the keys read last (tried again next time).
                        log.error("signing keys not read again", registry=str(self.registry_file), error=str(exc))
            return self._signer

    def registry(self) -> KeyRegistry:
        return self.signer().registry


_FILES: dict[tuple, KeyFiles] = {}


def key_files(config: dict) -> KeyFiles:
    """One ``KeyFiles`` per process and pair of locations (``KEY_REGISTRY``, ``SIGNING_KEYS`` in
    the service's config, else the environment), so that every worker reads the same copy."""
    where = (registry_path(config.get("KEY_REGISTRY")), keys_dir(config.get("SIGNING_KEYS")))
    if where not in _FILES:
        _FILES[where] = KeyFiles(*where)
    return _FILES[where]
