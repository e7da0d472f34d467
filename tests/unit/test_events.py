import json

import pytest

from motcua.contracts.events import EventInvalid, new_event, parse

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
