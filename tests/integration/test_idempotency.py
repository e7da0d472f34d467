"""Idempotency keys and the audit log of HTTP writes (issue 16), in a real nameko container on
real PostgreSQL and RabbitMQ (``idempotent_service``)."""
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
import requests
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from motcua.runtime import audit, idempotency
from tests.fakes.officials import official_headers
from tests.integration import idempotent_service as svc

HOA = official_headers("Nguyễn Thị Hoa", svc.UNIT)
BINH = official_headers("Trần Văn Bình", svc.UNIT)


@pytest.fixture(scope="module")
def idem_schema(engine):
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS idem_test CASCADE"))
        connection.execute(text("CREATE SCHEMA idem_test"))
    svc.metadata.create_all(engine)
    yield engine
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS idem_test CASCADE"))


@pytest.fixture
def base(container_factory, service_config, idem_schema):
    with idem_schema.begin() as connection:
        connection.execute(text("TRUNCATE idem_test.notes, idem_test.outbox, idem_test.idempotency_keys, "
                                "idem_test.audit_log"))
    # No poll within a test: an event goes out only if the write's commit handed it to the relay.
    container = container_factory(svc.IdempotentTestService, {**service_config, "OUTBOX_POLL_SECONDS": 60})
    container.start()
    return "http://" + service_config["WEB_SERVER_ADDRESS"]


def post(base, body, key=None, headers=HOA):
    extra = {idempotency.HEADER: key} if key is not None else {}
    return requests.post(base + "/notes", json=body, headers={**headers, **extra}, timeout=30)


def count(engine, table) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def test_the_same_key_answers_the_first_answer_and_does_nothing_again(base, idem_schema, event_tap):
    tap = event_tap("test.note_written")
    first = post(base, {"note": "một"}, key="k-1")
    assert first.status_code == 201, first.text
    again = post(base, {"note": "một"}, key="k-1")
    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert again.headers["Content-Type"] == first.headers["Content-Type"]
    assert again.headers[idempotency.REPLAYED_HEADER] == "true"
    assert idempotency.REPLAYED_HEADER not in first.headers
    assert count(idem_schema, svc.notes) == 1
    # The outbox's after-commit hook ran once the write's one transaction committed: one event.
    assert [e["payload"]["note"] for e in tap.drain(expect=1)] == ["một"]


def test_without_a_key_a_write_runs_each_time(base, idem_schema):
    assert post(base, {"note": "a"}).status_code == 201
    assert post(base, {"note": "a"}).status_code == 201
    assert count(idem_schema, svc.notes) == 2
    assert count(idem_schema, svc.keys) == 0


@pytest.mark.parametrize("change", ["body", "official", "path"])
def test_the_same_key_with_another_request_is_refused_naming_the_header(base, idem_schema, change):
    assert post(base, {"note": "x"}, key="k-2").status_code == 201
    if change == "body":
        other = post(base, {"note": "y"}, key="k-2")
    elif change == "official":
        other = post(base, {"note": "x"}, key="k-2", headers=BINH)
    else:
        other = requests.put(base + "/notes/1", json={"note": "x"}, headers={**HOA, idempotency.HEADER: "k-2"},
                             timeout=10)
    assert other.status_code == 422, other.text
    assert other.json()["field"] == idempotency.HEADER
    assert count(idem_schema, svc.notes) == 1


@pytest.mark.parametrize("key", ["", "k" * 201, "khóa"])
def test_a_malformed_key_is_refused_naming_the_header_and_changes_nothing(base, idem_schema, key):
    answer = post(base, {"note": "z"}, key=key)
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == idempotency.HEADER
    assert count(idem_schema, svc.notes) == 0


def test_a_key_of_200_characters_is_taken(base, idem_schema):
    assert post(base, {"note": "z"}, key="k" * 200).status_code == 201
    assert post(base, {"note": "z"}, key="k" * 200).headers.get(idempotency.REPLAYED_HEADER) == "true"
    assert count(idem_schema, svc.notes) == 1


def test_a_request_with_a_key_in_progress_waits_for_it_and_gets_its_answer(base, idem_schema):
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(post, base, {"note": "chậm", "slow": 1.0}, "k-3")
        import time
        time.sleep(0.3)     # the first holds the key's row, uncommitted
        second = pool.submit(post, base, {"note": "chậm", "slow": 1.0}, "k-3")
        first, second = slow.result(), second.result()
    assert first.status_code == 201, first.text
    assert (second.status_code, second.content) == (201, first.content)
    assert count(idem_schema, svc.notes) == 1


def test_a_key_held_longer_than_the_wait_is_409_with_retry_after(container_factory, service_config, idem_schema):
    config = {**service_config, "IDEMPOTENCY_WAIT_SECONDS": 0.5}
    container_factory(svc.IdempotentTestService, config).start()
    base = "http://" + config["WEB_SERVER_ADDRESS"]
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(post, base, {"note": "lâu", "slow": 2.0}, "k-held")
        import time
        time.sleep(0.5)
        busy = post(base, {"note": "lâu", "slow": 2.0}, "k-held")
        assert busy.status_code == 409 and busy.headers["Retry-After"], busy.text
        assert busy.json()["field"] == idempotency.HEADER
        assert slow.result().status_code == 201
    assert post(base, {"note": "lâu", "slow": 2.0}, "k-held").headers[idempotency.REPLAYED_HEADER] == "true"


def test_a_write_that_failed_is_not_remembered_and_runs_again(base, idem_schema):
    refused = post(base, {"note": "r", "refuse": True}, key="k-4")
    assert refused.status_code == 409
    assert count(idem_schema, svc.notes) == 0 and count(idem_schema, svc.keys) == 0
    broken = requests.put(base + "/notes/7", headers={**HOA, idempotency.HEADER: "k-5"}, timeout=10)
    assert broken.status_code == 500
    assert count(idem_schema, svc.notes) == 0 and count(idem_schema, svc.keys) == 0
    assert post(base, {"note": "r"}, key="k-4").status_code == 201
    assert count(idem_schema, svc.notes) == 1


def test_an_expired_key_is_taken_again_and_purged(base, idem_schema):
    assert post(base, {"note": "cũ"}, key="k-6").status_code == 201
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    with idem_schema.begin() as connection:
        connection.execute(update(svc.keys).where(svc.keys.c.key == "k-6").values(expires_at=past))
    fresh = post(base, {"note": "mới"}, key="k-6")      # another body: the old key is gone
    assert fresh.status_code == 201 and fresh.json()["note"] == "mới"
    with idem_schema.begin() as connection:
        connection.execute(update(svc.keys).values(expires_at=past))
    assert idempotency.purge(sessionmaker(bind=idem_schema), svc.keys, datetime.now(timezone.utc)) == 1
    assert count(idem_schema, svc.keys) == 0


def test_every_write_is_in_the_audit_chain_without_its_body(base, idem_schema):
    post(base, {"note": "CCCD 001204012345"}, key="k-7")
    post(base, {"note": "CCCD 001204012345"}, key="k-7")             # replayed
    post(base, {"note": "r", "refuse": True})                         # refused
    requests.get(base + "/notes/count", headers=HOA, timeout=10)      # a read: not audited
    with Session(idem_schema) as session:
        entries = list(audit.entries(session, svc.audit_log))
        assert audit.verify(session, svc.audit_log) == (3, [])
    assert [(e["method"], e["route"], e["status"], e["idempotency_key"]) for e in entries] == [
        ("POST", "/notes", 201, "k-7"), ("POST", "/notes", 201, "k-7"), ("POST", "/notes", 409, "")]
    assert entries[0]["official"] == "Nguyễn Thị Hoa" and entries[0]["unit"] == svc.UNIT
    body = json.dumps({"note": "CCCD 001204012345"}).encode()
    assert entries[0]["body_sha256"] == audit.body_hash(body)
    assert not any("001204012345" in json.dumps(e, default=str) for e in entries)


@pytest.mark.parametrize("field", [f for f in audit.FIELDS if f != "seq"] + ["prev_hash"])
def test_a_change_to_a_stored_entry_is_reported_by_verify(base, idem_schema, field):
    for note in ("a", "b", "c"):
        post(base, {"note": note})
    values = {"at": text("at + interval '1 second'"), "status": 418}
    with idem_schema.begin() as connection:
        connection.execute(update(svc.audit_log).where(svc.audit_log.c.seq == 2).values(
            {field: values.get(field, getattr(svc.audit_log.c, field) + "x")}))
    count_, breaks = audit.verify_database(idem_schema.url.render_as_string(hide_password=False), svc.audit_log)
    assert count_ == 3 and 2 in [b.seq for b in breaks]


def test_an_inserted_or_deleted_stored_entry_is_reported_by_verify(base, idem_schema):
    for note in ("a", "b", "c"):
        post(base, {"note": note})
    url = idem_schema.url.render_as_string(hide_password=False)
    with idem_schema.begin() as connection:
        connection.execute(text("UPDATE idem_test.audit_log SET seq = seq + 100 WHERE seq >= 2"))   # make room
        connection.execute(text("UPDATE idem_test.audit_log SET seq = seq - 99 WHERE seq >= 100"))
        connection.execute(text("INSERT INTO idem_test.audit_log SELECT 2, at, official, unit, method, route, "
                                "dossier, status, idempotency_key, body_sha256, prev_hash, hash "
                                "FROM idem_test.audit_log WHERE seq = 1"))
    assert audit.verify_database(url, svc.audit_log)[1]
    with idem_schema.begin() as connection:
        connection.execute(text("DELETE FROM idem_test.audit_log WHERE seq = 2"))
        connection.execute(text("UPDATE idem_test.audit_log SET seq = seq - 1 WHERE seq >= 3"))
    assert audit.verify_database(url, svc.audit_log) == (3, [])       # the insertion undone: intact again
    with idem_schema.begin() as connection:
        connection.execute(text("DELETE FROM idem_test.audit_log WHERE seq = 2"))
    assert [b.seq for b in audit.verify_database(url, svc.audit_log)[1]] == [3, 3]
