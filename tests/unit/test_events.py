import json

import pytest

from motcua.contracts.events import EventInvalid, new_event, parse, type_label
from motcua.runtime.logs import mask_text

UNIT = "000.00.20.H29"
PAYLOAD = {"code": "2.000815", "version": 1, "effective_from": "2026-01-01", "name": "Chứng thực",
           "field": "Chứng thực", "level": "ward", "time_limit": "same day"}


def test_round_trip():
    event = new_event("catalog.procedure_published", PAYLOAD, UNIT, correlation_id="c-9")
    again = parse(event.to_json())
    assert again == event
    assert json.loads(event.to_json())["payload"]["name"] == "Chứng thực"


@pytest.mark.parametrize("change, field", [
    ({"id": "nope"}, "id"),
    ({"type": "Catalog Published"}, "type"),
    ({"type": "catalog.unknown"}, "type"),
    ({"version": 0}, "version"),
    ({"version": 99}, "type"),     # a version the contract does not have (2 exists since the read model)
    ({"occurred_at": "2026-01-01T10:00"}, "occurred_at"),
    ({"unit": "Phường 7"}, "unit"),
    ({"correlation_id": ""}, "correlation_id"),
    ({"payload": []}, "payload"),
    ({"payload": {**PAYLOAD, "version": "1"}}, "payload.version"),
    ({"payload": {**PAYLOAD, "effective_from": "2026-13-01"}}, "payload.effective_from"),
    ({"payload": {**PAYLOAD, "extra": 1}}, "payload.extra"),
    ({"payload": {k: v for k, v in PAYLOAD.items() if k != "code"}}, "payload.code"),
    ({"surprise": 1}, "surprise"),
])
def test_every_broken_part_is_named(change, field):
    raw = json.loads(new_event("catalog.procedure_published", PAYLOAD, UNIT).to_json())
    raw.update(change)
    with pytest.raises(EventInvalid) as raised:
        parse(json.dumps(raw))
    assert raised.value.field == field


def test_missing_envelope_field_and_bad_json():
    raw = json.loads(new_event("catalog.procedure_published", PAYLOAD, UNIT).to_json())
    del raw["unit"]
    with pytest.raises(EventInvalid, match="unit: is required"):
        parse(raw)
    with pytest.raises(EventInvalid, match="body: is not valid JSON"):
        parse(b"{oops")
    with pytest.raises(EventInvalid, match="body: must be a JSON object"):
        parse("[1, 2]")


def test_producers_cannot_build_an_invalid_event():
    with pytest.raises(EventInvalid, match="payload.level"):
        new_event("catalog.procedure_published", {**PAYLOAD, "level": ""}, UNIT)


# --- what consumers receive: anything at all ------------------------------------------------

def _good() -> dict:
    return json.loads(new_event("catalog.procedure_published", PAYLOAD, UNIT).to_json())


@pytest.mark.parametrize("body, field, kind", [
    (b"\xff\xfe{not utf-8", "body", "not_json"),
    (b'{"id": "\xc3"}', "body", "not_json"),                    # a UTF-8 sequence cut short
    (b"{oops", "body", "not_json"),
    (b"[" * 100_000 + b"]" * 100_000, "body", "not_json"),     # deeper than the parser goes
    (b"", "body", "not_json"),
    (b"null", "body", "not_object"),
    (b'"a string"', "body", "not_object"),
    (b"42", "body", "not_object"),
])
def test_a_body_that_is_not_a_json_object_is_named(body, field, kind):
    with pytest.raises(EventInvalid) as raised:
        parse(body)
    assert (raised.value.field, raised.value.kind, raised.value.event_type) == (field, kind, "unknown")


def test_a_body_over_the_limit_is_refused_before_it_is_read():
    body = json.dumps({**_good(), "payload": {**PAYLOAD, "name": "x" * 5000}}).encode()
    assert parse(body, max_bytes=len(body)).payload["name"] == "x" * 5000
    with pytest.raises(EventInvalid, match=f"body: is {len(body)} bytes, over the limit of {len(body) - 1}") as raised:
        parse(body, max_bytes=len(body) - 1)
    assert raised.value.kind == "too_large"
    with pytest.raises(EventInvalid) as unread:
        parse(b"\xff" * 100, max_bytes=10)      # not even decoded
    assert unread.value.kind == "too_large"


@pytest.mark.parametrize("change, field, kind", [
    ({"id": 12}, "id", "envelope"),
    ({"id": ["x"]}, "id", "envelope"),
    ({"id": None}, "id", "envelope"),
    ({"version": "1"}, "version", "envelope"),
    ({"version": True}, "version", "envelope"),
    ({"version": 1.0}, "version", "envelope"),
    ({"version": 7}, "type", "unknown_type"),
    ({"type": "catalog.never_heard_of"}, "type", "unknown_type"),
    ({"type": 5}, "type", "envelope"),
    ({"occurred_at": 1700000000}, "occurred_at", "envelope"),
    ({"occurred_at": "yesterday"}, "occurred_at", "envelope"),
    ({"unit": None}, "unit", "envelope"),
    ({"correlation_id": 7}, "correlation_id", "envelope"),
    ({"correlation_id": "c" * 101}, "correlation_id", "envelope"),
    ({"payload": "{}"}, "payload", "payload"),
    ({"payload": {**PAYLOAD, "version": None}}, "payload.version", "payload"),
    ({"payload": {**PAYLOAD, "version": True}}, "payload.version", "payload"),
    ({"payload": {**PAYLOAD, "name": ["a"]}}, "payload.name", "payload"),
    ({"payload": {**PAYLOAD, "name": "   "}}, "payload.name", "payload"),
])
def test_each_wrong_type_is_named_with_its_kind(change, field, kind):
    raw = {**_good(), **change}
    with pytest.raises(EventInvalid) as raised:
        parse(json.dumps(raw).encode())
    assert (raised.value.field, raised.value.kind) == (field, kind)


def test_a_message_is_labelled_with_its_type_only_if_the_contract_knows_it():
    with pytest.raises(EventInvalid) as known:
        parse(json.dumps({**_good(), "payload": {}}))
    assert known.value.event_type == "catalog.procedure_published"
    for claimed in ("catalog.made_up", "x" * 500, 3, None):
        with pytest.raises(EventInvalid) as unknown:
            parse(json.dumps({**_good(), "type": claimed}))
        assert unknown.value.event_type == "unknown"
    assert type_label("fees.paid") == "fees.paid" and type_label({"a": 1}) == "unknown"


@pytest.mark.parametrize("value", ["0903123456", "079203001234", 84903123456, 79203001234, "9" * 5000,
                                   {"phone": "0903123456"}, ["079203001234"]])
def test_a_reason_never_quotes_a_long_value_or_a_personal_number_in_clear(value):
    with pytest.raises(EventInvalid) as raised:
        parse(json.dumps({**_good(), "payload": {**PAYLOAD, "effective_from": value}}))
    reason = mask_text(str(raised.value))
    assert "0903123456" not in reason and "903123456" not in reason and "79203001234" not in reason
    assert len(reason) < 150, reason


def test_an_unknown_field_name_is_quoted_short():
    with pytest.raises(EventInvalid) as raised:
        parse(json.dumps({**_good(), "payload": {**PAYLOAD, "k" * 10_000: 1}}))
    assert raised.value.field.startswith("payload.kkk") and len(str(raised.value)) < 100


RECEIVED = {"code": "000.05.20.H29-260302-0001", "procedure_code": "1.004873", "procedure_version": 1,
            "channel": "in_person", "received_at": "2026-03-02T09:00:00+07:00", "appointment_date": "2026-03-05",
            "time_limit": "3 working days", "handling_agency": "000.05.20.H29",
            "applicant": {"name": "Nguyễn Thị Lan", "phone": "0903123456", "email": None},
            "quantities": {"pages": 2, "copies": 1}, "secret": "K7QM3XPA", "conditions": ["poor_household"],
            "notifications": {"channels": ["sms", "zalo"], "optional": True}}


@pytest.mark.parametrize("change, field", [
    ({"applicant": {"phone": "0903123456"}}, "payload.applicant.name"),
    ({"applicant": {"name": "Lan", "id_number": "079203001234"}}, "payload.applicant.id_number"),
    ({"applicant": {"name": ["Lan"]}}, "payload.applicant.name"),
    ({"quantities": {"pages": "3"}}, "payload.quantities.pages"),
    ({"quantities": {"sheets": 3}}, "payload.quantities.sheets"),
    ({"conditions": ["poor_household", {"x": 1}]}, "payload.conditions[1]"),
    ({"notifications": {"channels": "sms"}}, "payload.notifications.channels"),
    ({"notifications": {"channels": [1]}}, "payload.notifications.channels[0]"),
    ({"notifications": {"optional": True}}, "payload.notifications.channels"),
])
def test_what_consumers_read_inside_an_object_is_checked_too(change, field):
    assert parse(new_event("dossier.received", RECEIVED, UNIT).to_json()).payload["applicant"]["name"] == "Nguyễn Thị Lan"
    assert new_event("dossier.received", {**RECEIVED, "quantities": {}, "conditions": None,
                                          "notifications": None}, UNIT)
    raw = {**json.loads(new_event("dossier.received", RECEIVED, UNIT).to_json())}
    raw["payload"] = {**raw["payload"], **change}
    with pytest.raises(EventInvalid) as raised:
        parse(json.dumps(raw))
    assert (raised.value.field, raised.value.kind) == (field, "payload")
    assert "079203001234" not in mask_text(str(raised.value))
