"""No citizen's ID or phone number in clear in any table (issue 16): the life of a dossier through
the real processes (catalog, intake, routing, fees, notify, portal, gateway) on real PostgreSQL and
RabbitMQ, a real SMS gateway and SMTP server (fakes), then every text, JSON and bytea column of
every service's schema scanned for the applicant's numbers, in any format. The numbers still work:
the SMS goes to the phone, the desk finds the dossier by either number. Then ``motcua pii rotate``
onto a new key, and the scan again."""
import json
import re

import pytest
import requests
from sqlalchemy import text

from apps.registry import SERVICES
from motcua.contracts.pii import ID_NUMBER, PHONE, is_sealed, key_id_of, open_payload
from motcua.runtime.pii import keyring, new_settings
from tests.conftest import PII_SETTINGS, dead_letters
from tests.e2e.conftest import ServiceProcess, amqp, run_cli
from tests.e2e.test_intake_desk import DOCUMENTS, MARITAL_STATUS, wait_for
from tests.e2e.test_notify import Fake
from tests.e2e.test_observability import process_all_steps
from tests.fakes.officials import official_headers

WARD_5 = "000.05.20.H29"
ID, PHONE_TYPED, PHONE_NUMBER = "079188004321", "+84 987.654.321", "0987654321"
APPLICANT = {"name": "Lê Thị Hồng", "id_number": ID, "address": "5 Quang Trung, Phường 5",
             "phone": PHONE_TYPED, "email": "hong@example.vn"}
DESK = official_headers("Trần Văn Bình", WARD_5)
# What must not appear: the ID number, and the phone number's nine significant digits (after 0 or
# +84), once separators between digits are removed.
NEEDLES = (ID, PHONE_NUMBER[1:])
_SEPARATORS = re.compile(r"(?<=\d)(?:[\s.\-()/+]|%20)+(?=\d)")     # '+', %20: a URL's spaces


def clear_numbers_in(value: str) -> bool:
    joined = _SEPARATORS.sub("", value)
    return any(needle in joined for needle in NEEDLES)


def scan(engine) -> list[str]:
    """``schema.table.column`` of every value holding one of the numbers in clear."""
    found = []
    with engine.connect() as connection:
        columns = connection.execute(text(
            "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ANY(:schemas) AND data_type IN ('text', 'character varying', 'json', 'jsonb', "
            "'bytea', 'ARRAY', 'USER-DEFINED')"), {"schemas": list(SERVICES)}).all()
        assert len(columns) > 100, "every service's tables are scanned"
        for schema, table, column, data_type in columns:
            as_text = f"encode(\"{column}\", 'escape')" if data_type == "bytea" else f"\"{column}\"::text"
            for (value,) in connection.execute(text(
                    f'SELECT {as_text} FROM "{schema}"."{table}" WHERE "{column}" IS NOT NULL')):
                if clear_numbers_in(value):
                    found.append(f"{schema}.{table}.{column}")
    return sorted(set(found))


@pytest.fixture(scope="module")
def stack(process_env, catalog_process, engine, clock, tmp_path_factory):
    with engine.begin() as connection:
        for schema in ("intake", "routing", "fees", "notify", "portal", "gateway"):
            tables = connection.execute(text(
                "SELECT string_agg(format('%I.%I', schemaname, tablename), ', ') FROM pg_tables "
                "WHERE schemaname = :s AND tablename <> 'alembic_version'"), {"s": schema}).scalar_one()
            connection.execute(text(f"TRUNCATE {tables} CASCADE"))
    folder = tmp_path_factory.mktemp("pii")
    smtp = Fake("tests.fakes.smtp_server", folder / "mail.jsonl")
    sms = Fake("tests.fakes.http_gateway", folder / "sms.jsonl")
    portal = Fake("tests.fakes.national_portal", folder / "portal.jsonl")
    clock("2026-03-02T09:00:00+07:00")
    env = {**process_env, "CLOCK_FILE": str(clock.path), "ROUTING_SCAN_SECONDS": "0.5"}
    services = {
        "intake": ServiceProcess("intake", env, folder), "routing": ServiceProcess("routing", env, folder),
        "fees": ServiceProcess("fees", env, folder),
        "notify": ServiceProcess("notify", {**env, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port),
                                            "SMS_GATEWAY_URL": f"http://127.0.0.1:{sms.port}/sms",
                                            "QUIET_HOURS": "00:00-00:00"}, folder),
        "portal": ServiceProcess("portal", {**env, "PORTAL_URL": f"http://127.0.0.1:{portal.port}"}, folder),
        "gateway": ServiceProcess("gateway", {**env, "GATEWAY_GRPC_ADDRESS": "127.0.0.1:0",
                                              "GATEWAY_FEED_POLL_SECONDS": "0.2"}, folder)}
    try:
        for service in services.values():
            service.start()
        yield {**services, "sms": sms, "smtp": smtp, "portal": portal, "logs": folder}
    finally:
        for service in services.values():
            service.stop()
        for fake in (smtp, sms, portal):
            fake.stop()


def test_no_id_or_phone_number_in_clear_in_any_table_after_a_dossier_s_life(stack, engine):
    intake, fees = stack["intake"].url, stack["fees"].url
    # With an idempotency key: the answer (both numbers in it) is kept with the key, sealed.
    body = {"procedure_code": MARITAL_STATUS, "applicant": APPLICANT, "documents": DOCUMENTS,
            "notifications": {"channels": ["sms", "email"], "optional": True}}
    keyed = {**DESK, "Idempotency-Key": "pii-at-rest-1"}
    answer = requests.post(intake + "/api/v1/dossiers", headers=keyed, timeout=10, json=body)
    assert answer.status_code == 201, answer.text
    again = requests.post(intake + "/api/v1/dossiers", headers=keyed, timeout=10, json=body)
    assert (again.status_code, again.content) == (201, answer.content)       # given again, byte for byte
    code = answer.json()["code"]
    assert answer.json()["applicant"]["id_number"] == ID and answer.json()["applicant"]["phone"] == PHONE_NUMBER

    # Paid in cash at the desk, handled by the agency, returned: every service hears of it.
    account = wait_for(lambda: (r := requests.get(f"{fees}/api/v1/dossiers/{code}", headers=DESK, timeout=5))
                       .status_code == 200 and r.json(), timeout=20)
    if account["outstanding"]:
        assert requests.post(f"{fees}/api/v1/dossiers/{code}/payments", headers=DESK, timeout=10, json={
            "method": "cash", "amount": account["outstanding"], "reference": f"cash-{code}"}).status_code == 200
    process_all_steps(stack, code, WARD_5)
    dossier = lambda: requests.get(f"{intake}/api/v1/dossiers/{code}", headers=DESK, timeout=5).json()  # noqa: E731
    wait_for(lambda: dossier()["status"] == 9 and dossier()["fees"]["settled"], timeout=30)
    assert requests.post(f"{intake}/api/v1/dossiers/{code}/return", headers=DESK, timeout=10,
                         json={"collected_by": APPLICANT["name"]}).status_code == 200

    # The numbers still serve: the SMS reaches the phone, the desk finds the dossier by either number.
    sent = wait_for(lambda: [m for m in stack["sms"].lines() if code in m["json"]["text"]], timeout=30)
    assert sent[0]["json"]["to"] == PHONE_NUMBER
    for query in (ID, "079 188 004 321", PHONE_NUMBER, "+84987654321", "0987 654 321"):
        found = requests.get(intake + "/api/v1/dossiers", params={"q": query}, headers=DESK, timeout=5)
        assert [d["code"] for d in found.json()["dossiers"]] == [code], query
    assert requests.get(intake + "/api/v1/dossiers", params={"q": "079188004322"}, headers=DESK,
                        timeout=5).json()["dossiers"] == []
    with engine.connect() as connection:
        wait_for(lambda: connection.execute(text("SELECT count(*) FROM portal.sync_rows WHERE code = :c "
                                                 "AND state = 'sent'"), {"c": code}).scalar() >= 2, timeout=30)
        wait_for(lambda: connection.execute(text("SELECT count(*) FROM notify.messages WHERE code = :c AND "
                                                 "state = 'sent'"), {"c": code}).scalar() >= 2, timeout=30)
        row = connection.execute(text("SELECT applicant_id_number, applicant_phone FROM intake.dossiers "
                                      "WHERE code = :c"), {"c": code}).one()
        feed = connection.execute(text("SELECT payload FROM gateway.feed WHERE unit = :u AND type = "
                                       "'dossier.received' AND dossier = :c"), {"u": WARD_5, "c": code}).scalar_one()
        outbox = connection.execute(text("SELECT envelope FROM intake.outbox WHERE type = 'dossier.received'")).scalar_one()

    # Sealed, and sealed values open to the numbers (nothing lost).
    ring = keyring(PII_SETTINGS)
    assert ring.open(row.applicant_id_number, ID_NUMBER) == ID and ring.open(row.applicant_phone, PHONE) == PHONE_NUMBER
    assert is_sealed(feed["applicant"]["phone"]) and open_payload(feed, ring)["applicant"]["phone"] == PHONE_NUMBER
    assert is_sealed(outbox["payload"]["applicant"]["phone"])

    assert scan(engine) == []
    for log in stack["logs"].glob("*.log"):
        assert not clear_numbers_in(log.read_text(errors="replace")), f"{log.name} shows a number"
    for message in dead_letters(amqp(), timeout=1, expect=0):
        assert not clear_numbers_in(bytes(message.body).decode(errors="replace") + json.dumps(message.headers, default=str))

    # A rotation: a new active key, the old one kept until every row is sealed again.
    new = new_settings("t2")
    rotated = {"PII_KEYS": f"{PII_SETTINGS['PII_KEYS']},{new['PII_KEYS']}", "PII_ACTIVE_KEY": "t2",
               "PII_HASH_KEY": PII_SETTINGS["PII_HASH_KEY"]}
    env = {**stack["intake"].env, **rotated}
    for service in ("intake", "notify", "gateway"):     # the running services must not re-seal meanwhile
        stack[service].stop()
    result = run_cli(["pii", "rotate"], env)
    assert "intake.dossiers: 1 row(s) sealed under key t2" in result.stdout
    assert "rows read" in result.stderr and ID not in result.stderr + result.stdout
    ring = keyring(rotated)
    with engine.connect() as connection:
        row = connection.execute(text("SELECT applicant_id_number, applicant_phone, applicant_id_digest "
                                      "FROM intake.dossiers WHERE code = :c"), {"c": code}).one()
        recipients = connection.execute(text("SELECT recipient FROM notify.messages")).scalars().all()
        phones = connection.execute(text("SELECT phone FROM notify.dossiers")).scalars().all()
        carried = [connection.execute(text("SELECT envelope FROM intake.outbox WHERE type = 'dossier.received'"))
                   .scalar_one()["payload"]["applicant"]["phone"],
                   connection.execute(text("SELECT payload FROM gateway.feed WHERE unit = :u AND type = "
                                           "'dossier.received'"), {"u": WARD_5}).scalar_one()["applicant"]["phone"]]
    assert key_id_of(row.applicant_id_number) == "t2" and ring.open(row.applicant_id_number, ID_NUMBER) == ID
    assert row.applicant_id_digest == ring.digest(ID, ID_NUMBER)
    assert {key_id_of(value) for value in [*recipients, *phones, *carried]} == {"t2"}
    assert {ring.open(value, PHONE) for value in carried} == {PHONE_NUMBER}
    assert PHONE_NUMBER in [ring.open(value, "recipient") for value in recipients]
    assert scan(engine) == []
    # Run again: nothing left under the old key.
    assert "intake.dossiers: 0 row(s)" in run_cli(["pii", "rotate", "intake"], env).stdout
