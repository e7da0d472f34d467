"""Migrations 0005_pii of intake and notify seal the ID and phone numbers already stored in clear
(issue 16), in a database of their own migrated to the revision before; without the keys they stop,
naming the settings, and change nothing. And the resealing `motcua pii rotate` runs."""
import base64
import json
import uuid
from datetime import datetime, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from apps.registry import SERVICES
from motcua.contracts.pii import ID_NUMBER, PHONE, RECIPIENT, is_sealed, key_id_of, new_key
from motcua.runtime.config import ConfigError
from motcua.runtime.db import autocommit, make_engine
from motcua.runtime.idempotency import open_answer
from motcua.runtime.migrations import upgrade
from motcua.runtime.pii import SealedColumns, keyring, new_settings, reseal_rows

ID, TEL = "079203009876", "0912000111"
NOW = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)


@pytest.fixture
def old_database(engine):
    """A new database with intake and notify at revision 0004, holding a dossier in clear."""
    name = f"motcua_pii_{uuid.uuid4().hex[:8]}"
    with autocommit(engine) as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(engine.url).set(database=name).render_as_string(hide_password=False)
    for service in ("intake", "notify"):
        upgrade(SERVICES[service].directory / "migrations", url, "0004")
    old = make_engine(url, pool_size=1)
    with old.begin() as connection:
        connection.execute(text(
            "INSERT INTO intake.dossiers (code, unit, status, channel, procedure_code, procedure_version, procedure, "
            "handling_agency, applicant_name, applicant_key, applicant_id_number, applicant_address, applicant_phone, "
            "documents, sets, quantities, secret, submitted_at, fees_required) VALUES ('D-1', 'U', 2, 'in_person', "
            "'P', 1, '{}', 'U', 'Lan', 'lan', :id, 'Addr', :tel, '[]', 1, '{}', 's', :now, false)"),
            {"id": ID, "tel": TEL, "now": NOW})
        envelope = {"id": str(uuid.uuid4()), "type": "dossier.received", "payload": {
            "code": "D-1", "applicant": {"name": "Lan", "phone": TEL, "email": None}}}
        connection.execute(text("INSERT INTO intake.outbox (id, type, envelope) VALUES (:id, :type, "
                                "CAST(:envelope AS jsonb))"),
                           {"id": envelope["id"], "type": envelope["type"], "envelope": json.dumps(envelope)})
        connection.execute(text(
            "INSERT INTO notify.dossiers (code, unit, procedure, applicant_name, phone, email, secret, channels, "
            "optional, received_at) VALUES ('D-1', 'U', 'P', 'Lan', :tel, 'lan@example.vn', 's', '[\"sms\"]', true, "
            ":now)"), {"tel": TEL, "now": NOW})
        connection.execute(text(
            "INSERT INTO notify.messages (idempotency_key, code, template, channel, audience, recipient, text, "
            "state, next_attempt_at, created_at) VALUES ('k', 'D-1', 'received', 'sms', 'citizen', :tel, 'x', "
            "'sent', :now, :now)"), {"tel": TEL, "now": NOW})
        connection.execute(text(
            "INSERT INTO intake.idempotency_keys (key, fingerprint, status, body, created_at, expires_at) "
            "VALUES ('k', 'f', 201, :body, :now, :now)"),
            {"body": json.dumps({"applicant": {"id_number": ID, "phone": TEL}}).encode(), "now": NOW})
    yield url, old
    old.dispose()
    with autocommit(engine) as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))


def test_the_migrations_seal_what_was_stored_in_clear(old_database):
    url, old = old_database
    settings = new_settings("m1")
    ring = keyring(settings)
    for service in ("intake", "notify"):
        upgrade(SERVICES[service].directory / "migrations", url, service_config=settings)
    with old.connect() as connection:
        dossier = connection.execute(text("SELECT * FROM intake.dossiers")).mappings().one()
        envelope = connection.execute(text("SELECT envelope FROM intake.outbox")).scalar_one()
        phone = connection.execute(text("SELECT phone FROM notify.dossiers")).scalar_one()
        recipient = connection.execute(text("SELECT recipient FROM notify.messages")).scalar_one()
        answer = bytes(connection.execute(text("SELECT body FROM intake.idempotency_keys")).scalar_one())
    assert ring.open(dossier["applicant_id_number"], ID_NUMBER) == ID
    assert ring.open(dossier["applicant_phone"], PHONE) == TEL
    assert dossier["applicant_id_digest"] == ring.digest(ID, ID_NUMBER)
    assert dossier["applicant_phone_digest"] == ring.digest(TEL, PHONE)
    assert is_sealed(envelope["payload"]["applicant"]["phone"])
    assert ring.open(envelope["payload"]["applicant"]["phone"], PHONE) == TEL
    assert ring.open(phone, PHONE) == TEL and ring.open(recipient, RECIPIENT) == TEL
    assert ID.encode() not in answer and json.loads(open_answer(answer, ring))["applicant"]["id_number"] == ID


def test_without_the_keys_the_migration_stops_naming_them_and_changes_nothing(old_database, monkeypatch):
    url, old = old_database
    for name in ("PII_KEYS", "PII_ACTIVE_KEY", "PII_HASH_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="PII_KEYS"):
        upgrade(SERVICES["intake"].directory / "migrations", url, service_config={})
    with old.connect() as connection:
        assert connection.execute(text("SELECT applicant_id_number FROM intake.dossiers")).scalar_one() == ID
        assert connection.execute(text("SELECT version_num FROM intake.alembic_version")).scalar_one() == "0004"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_reseal_rows_batch_by_batch_with_progress_then_new_digests(engine):
    """What `motcua pii rotate` runs, on a table of its own: every row clear or under another key
    sealed under the active one, batch by batch (an id with '_' too); `everything` (a new
    PII_HASH_KEY) recomputes every digest."""
    old = keyring({"PII_KEYS": f"a_1={new_key()}", "PII_ACTIVE_KEY": "a_1", "PII_HASH_KEY": new_key()})
    both = keyring({"PII_KEYS": f"a_1={_b64(old.keys['a_1'])},b_2={new_key()}", "PII_ACTIVE_KEY": "b_2",
                    "PII_HASH_KEY": _b64(old.hash_key)})
    table = f"public.pii_{uuid.uuid4().hex[:8]}"
    spec = SealedColumns(table, ("id",), {"tel": PHONE}, {"tel_digest": "tel"})
    number = "09120000{:02d}".format
    with engine.begin() as connection:
        connection.execute(text(f"CREATE TABLE {table} (id int PRIMARY KEY, tel text, tel_digest text)"))
        connection.execute(text(f"INSERT INTO {table} VALUES (:id, :tel, NULL)"),
                           [{"id": n, "tel": old.seal(number(n), PHONE) if n % 5 else number(n)} for n in range(1, 24)]
                           + [{"id": 99, "tel": None}])
    try:
        seen = []
        with engine.connect() as connection:
            changed = reseal_rows(connection, spec, both, batch=10, commit=True,
                                  progress=lambda done, total: seen.append((done, total)))
            assert changed == 23 and seen == [(10, 23), (20, 23), (23, 23)]
            rows = connection.execute(text(f"SELECT id, tel, tel_digest FROM {table} WHERE tel IS NOT NULL")).all()
            assert {key_id_of(tel) for _, tel, _ in rows} == {"b_2"}
            assert all(both.open(tel, PHONE) == number(n) and digest == both.digest(number(n), PHONE)
                       for n, tel, digest in rows)
            assert reseal_rows(connection, spec, both) == 0          # nothing left under another key
            new_hash = keyring({"PII_KEYS": f"b_2={_b64(both.keys['b_2'])}", "PII_ACTIVE_KEY": "b_2",
                                "PII_HASH_KEY": new_key()})
            assert reseal_rows(connection, spec, new_hash, everything=True) == 23
            connection.commit()
            digest = connection.execute(text(f"SELECT tel_digest FROM {table} WHERE id = 3")).scalar_one()
            assert digest == new_hash.digest(number(3), PHONE) != both.digest(number(3), PHONE)
    finally:
        with engine.begin() as connection:
            connection.execute(text(f"DROP TABLE {table}"))
