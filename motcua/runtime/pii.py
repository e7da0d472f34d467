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

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Mapping

from nameko.extensions import DependencyProvider
from sqlalchemy import text

from motcua.contracts.pii import (PAYLOAD_FIELDS, KeyRing, PiiError, decode_key, has_clear, is_sealed, new_key,
                                 parse_keys, reseal_payload)
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


# --- sealing stored rows: the migrations that convert clear rows, and ``motcua pii rotate`` ------

@dataclass(frozen=True)
class SealedColumns:
    """A table's sealed columns: ``columns`` column -> purpose; ``digests`` digest column -> the
    sealed column it is the search digest of. Plain text columns; JSON ones are ``SealedJson``."""
    table: str                      # schema.table
    key: tuple[str, ...]            # the primary key's columns
    columns: Mapping[str, str]
    digests: Mapping[str, str] = field(default_factory=dict)


def _stale(spec: SealedColumns, ring: KeyRing, everything: bool) -> str:
    if everything:
        return "(" + " OR ".join(f"{c} IS NOT NULL" for c in spec.columns) + ")"
    # The key id is checked (letters, digits, '-', '_'); '_' is LIKE's wildcard: escaped.
    prefix = "pii1:" + ring.active.replace("_", "\\_") + ":%"
    return "(" + " OR ".join(f"({c} IS NOT NULL AND {c} NOT LIKE '{prefix}')" for c in spec.columns) + ")"


def _batches(connection, table: str, key: tuple[str, ...], columns: list[str], where: str, *, batch: int,
             commit: bool, progress: Callable[[int, int], None] | None):
    """The rows ``where`` holds (key columns, then ``columns``), in key order, ``batch`` at a time
    (keyset pagination: a batch changed by the caller does not shift the next); after each batch
    the caller has handled, one commit if ``commit``, then ``progress(done, total)``."""
    key_list = ", ".join(key)
    total = connection.execute(text(f"SELECT count(*) FROM {table} WHERE {where}")).scalar()
    done, after = 0, None
    while True:
        params: dict[str, Any] = {"batch": batch}
        condition = where
        if after is not None:
            condition += f" AND ({key_list}) > ({', '.join(f':after_{i}' for i in range(len(key)))})"
            params.update({f"after_{i}": value for i, value in enumerate(after)})
        rows = connection.execute(text(f"SELECT {key_list}, {', '.join(columns)} FROM {table} "
                                       f"WHERE {condition} ORDER BY {key_list} LIMIT :batch"), params).all()
        if not rows:
            return
        yield rows
        done, after = done + len(rows), tuple(rows[-1][:len(key)])
        if commit:
            connection.commit()
        if progress:
            progress(done, total)


def reseal_rows(connection, spec: SealedColumns, ring: KeyRing, *, everything: bool = False, batch: int = 500,
                commit: bool = False, progress: Callable[[int, int], None] | None = None) -> int:
    """Seal every value of the table not sealed under the active key (clear, or an older key), and
    set its digests from the clear value; ``everything``: every row (after a new PII_HASH_KEY).

    Rows are read in key order, ``batch`` at a time; each update is a compare-and-set on the values
    read, so a row a service changed meanwhile keeps the service's (already current) values.
    ``commit``: one transaction per batch (a live system's rotation: short locks, resumable).
    ``progress(done, total)`` after each batch. Returns the rows changed."""
    done, columns = 0, list(spec.columns)
    for rows in _batches(connection, spec.table, spec.key, columns, _stale(spec, ring, everything), batch=batch,
                         commit=commit, progress=progress):
        for row in rows:
            keys, values = row[:len(spec.key)], dict(zip(columns, row[len(spec.key):]))
            clear = {c: (ring.open(v, spec.columns[c]) if is_sealed(v) else v) for c, v in values.items()}
            new = {c: ring.seal(clear[c], spec.columns[c]) for c in columns}
            new.update({d: ring.digest(clear[c], spec.columns[c]) for d, c in spec.digests.items()})
            match = " AND ".join([*(f"{k} = :key_{i}" for i, k in enumerate(spec.key)),
                                  *(f"{c} IS NOT DISTINCT FROM :old_{c}" for c in columns)])
            connection.execute(
                text(f"UPDATE {spec.table} SET {', '.join(f'{c} = :new_{c}' for c in new)} WHERE {match}"),
                {**{f"key_{i}": v for i, v in enumerate(keys)}, **{f"old_{c}": v for c, v in values.items()},
                 **{f"new_{c}": v for c, v in new.items()}})
        done += len(rows)
    return done


def migration_keyring(context_config) -> KeyRing:
    """The key ring a migration that converts rows uses: the service's configuration, which
    ``motcua migrate`` hands to Alembic (``attributes["service_config"]``), else the environment."""
    import os
    config = (getattr(context_config, "attributes", {}) or {}).get("service_config") or os.environ
    return keyring(config)


@dataclass(frozen=True)
class SealedJson:
    """A JSON column whose values may hold ID or phone numbers under the keys ``id_number`` and
    ``phone`` (an outbox's envelopes, the gateway's feed): sealed where they are."""
    table: str                      # schema.table
    key: tuple[str, ...]            # a unique key, read in its order (an outbox's ``seq``)
    column: str


def reseal_json(connection, spec: SealedJson, ring: KeyRing, *, batch: int = 500, commit: bool = False,
                progress: Callable[[int, int], None] | None = None) -> int:
    """Seal under the active key every number of the column clear or under an older key. Returns
    the rows changed; ``commit`` and ``progress`` as in ``reseal_rows``."""
    import json
    # Only rows naming such a field are read (an outbox holds mostly other events).
    holds = f"""{spec.column}::text ~ '"({'|'.join(PAYLOAD_FIELDS)})"'"""
    changed = 0
    for rows in _batches(connection, spec.table, spec.key, [spec.column], holds, batch=batch, commit=commit,
                         progress=progress):
        for row in rows:
            value = row[len(spec.key)]
            if has_clear(value, ring):
                # compare-and-set: a row the service changed meanwhile is left as the service wrote it
                match = " AND ".join(f"{k} = :key_{i}" for i, k in enumerate(spec.key))
                connection.execute(text(f"UPDATE {spec.table} SET {spec.column} = CAST(:new AS jsonb) "
                                        f"WHERE {match} AND {spec.column} = CAST(:old AS jsonb)"),
                                   {**{f"key_{i}": v for i, v in enumerate(row[:len(spec.key)])},
                                    "old": json.dumps(value, ensure_ascii=False),
                                    "new": json.dumps(reseal_payload(value, ring), ensure_ascii=False)})
                changed += 1
    return changed


def reseal(connection, specs, ring: KeyRing, **options) -> int:
    """Every table of a service's ``sealed`` list (its models): what ``motcua pii rotate`` runs."""
    everything = options.pop("everything", False)
    return sum(reseal_rows(connection, spec, ring, everything=everything, **options)
               if isinstance(spec, SealedColumns) else reseal_json(connection, spec, ring, **options)
               for spec in specs)


class PiiKeys(DependencyProvider):
    """``pii = PiiKeys()`` on a service: its key ring, built when the container starts (a missing or
    malformed setting stops the start with a ``ConfigError`` naming it)."""

    def setup(self):
        self.ring = keyring(self.container.config)

    def get_dependency(self, worker_ctx) -> KeyRing:
        return self.ring
