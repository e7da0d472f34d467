"""The hash chain of the audit logs (motcua.contracts.audit_chain): every field of an entry is in
its hash, and an inserted or removed entry breaks the chain where it happened."""
from datetime import datetime, timedelta, timezone

import pytest

from motcua.contracts import audit_chain
from motcua.runtime import audit
from services.gateway import audit as gateway_audit, models as gateway_models
from services.intake import models as intake_models

AT = datetime(2026, 3, 2, 3, 0, tzinfo=timezone.utc)


def http_entry(n: int) -> dict:
    return {"at": AT + timedelta(seconds=n), "official": "Trần Văn Bình", "unit": "000.05.20.H29",
            "method": "POST", "route": "/api/v1/dossiers", "dossier": f"000.05.20.H29-260302-{n:04d}",
            "status": 201, "idempotency_key": f"k-{n}", "body_sha256": audit.body_hash(str(n).encode())}


def chain(n: int, fields=audit.FIELDS, make=http_entry) -> list[dict]:
    entries, head = [], None
    for number in range(1, n + 1):
        head = audit_chain.next_entry(head, make(number), fields)
        entries.append(head)
    return entries


def changed(value):
    if isinstance(value, datetime):
        return value + timedelta(microseconds=1)
    if isinstance(value, int):
        return value + 1
    return value + "x"


def test_an_intact_chain_verifies():
    assert audit_chain.verify(chain(5), audit.FIELDS) == (5, [])
    assert audit_chain.verify([], audit.FIELDS) == (0, [])


def test_every_column_of_an_http_write_and_of_a_gateway_call_is_hashed():
    assert set(audit.FIELDS) == {c.name for c in intake_models.audit_log.c} - {"prev_hash", "hash"}
    assert set(gateway_audit.FIELDS) == {c.name for c in gateway_models.audit_log.c} - {"prev_hash", "hash"}


@pytest.mark.parametrize("field", [f for f in audit.FIELDS if f != "seq"])
def test_a_change_to_any_field_is_detected(field):
    entries = chain(5)
    entries[2][field] = changed(entries[2][field])
    count, breaks = audit_chain.verify(entries, audit.FIELDS)
    assert count == 5 and [(b.seq, b.problem.split(":")[0]) for b in breaks] == [(3, "altered")]


@pytest.mark.parametrize("field", [f for f in gateway_audit.FIELDS if f != "seq"])
def test_a_change_to_any_field_of_a_gateway_entry_is_detected(field):
    def call(n):
        return {"at": AT, "unit": "000.03.20.H29", "credential": "t1", "method": "GetDossier",
                "dossier": f"D{n}", "result": "OK", "detail": ""}
    entries = chain(4, gateway_audit.FIELDS, call)
    entries[1][field] = changed(entries[1][field])
    assert [b.seq for b in gateway_audit.verify(entries)[1]] == [2]


def test_a_changed_sequence_number_is_detected():
    entries = chain(5)
    entries[2]["seq"] = 7
    assert {b.seq for b in audit_chain.verify(entries, audit.FIELDS)[1]} >= {7}


@pytest.mark.parametrize("link", ["prev_hash", "hash"])
def test_a_changed_link_is_detected(link):
    entries = chain(5)
    entries[2][link] = "f" * 64
    assert 3 in {b.seq for b in audit_chain.verify(entries, audit.FIELDS)[1]}


def test_an_inserted_entry_is_detected_even_hashed_right():
    entries = chain(5)
    forged = audit_chain.next_entry(entries[1], http_entry(99), audit.FIELDS)   # a valid link after entry 2
    entries.insert(2, forged)
    breaks = audit_chain.verify(entries, audit.FIELDS)[1]
    assert breaks and {b.seq for b in breaks} & {3}, breaks
    assert any("missing or inserted" in b.problem for b in breaks)


def test_a_removed_entry_is_detected_where_it_was():
    entries = chain(5)
    del entries[2]
    breaks = audit_chain.verify(entries, audit.FIELDS)[1]
    assert [b.seq for b in breaks] == [4, 4]
    assert {b.problem.split(":")[0] for b in breaks} == {
        "expected entry 3", "does not follow the entry before it (prev_hash differs)"}


def test_a_rehashed_entry_breaks_the_chain_at_the_next_one():
    entries = chain(5)
    entries[1]["status"] = 409
    entries[1]["hash"] = audit_chain.entry_hash(entries[1]["prev_hash"], entries[1], audit.FIELDS)
    assert [b.seq for b in audit_chain.verify(entries, audit.FIELDS)[1]] == [3]


def test_fields_without_the_sequence_number_are_refused():
    with pytest.raises(ValueError):
        audit_chain.canonical(http_entry(1), ("at", "unit"))
