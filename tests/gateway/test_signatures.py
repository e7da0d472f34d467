"""Issue 18, signed hand-offs between agencies, done when: against the real processes, a signed
hand-off is accepted and kept with its signature; the same with one byte changed is refused,
changes nothing, and is counted and dead-lettered with the reason; a key rotated with an
overlap (old and new accepted meanwhile, the old refused after); and ``motcua verify-handoffs``
finds a row altered directly in the database."""
import re
import time
import uuid
from datetime import datetime, timedelta, timezone

import grpc
import pytest
import requests
from sqlalchemy import text

from motcua.runtime import keys
from motcua_client import Client, GatewayError, sign_event
from tests.conftest import dead_letters
from tests.gateway.conftest import LAND_REGISTRY, WARD_3, amqp, run_cli
from tests.gateway.test_gateway import (LAND_TRANSFER, OFFICIAL, DISTRICT, client_for, dossier, outcomes,
                                        publish_as, signed, step_of, wait_for)


def failures(stack, unit: str, reason: str) -> float:
    metrics = requests.get(stack["gateway"].url + "/metrics", timeout=5).text
    found = re.search(rf'motcua_signature_failures_total{{reason="{reason}",unit="{re.escape(unit)}"}} (\S+)', metrics)
    return float(found.group(1)) if found else 0.0


def kept(engine, key: str):
    with engine.connect() as connection:
        return connection.execute(text("SELECT outcome, key_id, signature FROM gateway.unit_events "
                                       "WHERE idempotency_key = :key"), {"key": key}).first()


def tampered(event: dict) -> dict:
    """The signed event with one byte of its note changed after signing."""
    note = event["note"].encode("utf-8")
    return {**event, "note": (note[:-1] + bytes([note[-1] ^ 1])).decode("utf-8")}


def test_a_signed_hand_off_is_kept_with_its_signature_and_a_changed_byte_is_refused(stack, token, engine,
                                                                                   unit_keys):
    ward = client_for(stack, token(WARD_3))
    code = ward.receive(OFFICIAL, dossier()).code
    step = step_of(ward, code)
    accept, sign = (unit_keys.sign(WARD_3, event) for event in signed(code, step))

    before = failures(stack, WARD_3, "mismatch")
    with pytest.raises(GatewayError) as refused:
        ward.publish([accept, tampered(sign)])
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert refused.value.violations[0][0] == "events[1].signature"
    assert "does not match" in refused.value.violations[0][1]
    assert kept(engine, accept["idempotency_key"]) is None, "the batch changed nothing, not even its good event"
    assert ward.workflow(OFFICIAL, code).steps[0].state == "handed_over"
    assert failures(stack, WARD_3, "mismatch") == before + 1

    assert outcomes(ward.publish([accept, sign])) == ["EVENT_OUTCOME_ACCEPTED"] * 2
    row = kept(engine, sign["idempotency_key"])
    assert (row.outcome, row.key_id, row.signature) == ("accepted", unit_keys.key_ids[WARD_3], sign["signature"])
    wait_for(lambda: ward.get(OFFICIAL, code).status == 9)
    with engine.connect() as connection:     # the platform's own hand-overs: desk → ward, ward → desk
        handovers = connection.execute(text("SELECT signed_by, key_id, signature FROM routing.handovers "
                                            "WHERE code = :code ORDER BY id"), {"code": code}).all()
    assert [(h.signed_by, h.key_id) for h in handovers] == [(WARD_3, unit_keys.key_ids[WARD_3])] * 2
    assert all(h.signature for h in handovers)


def test_unsigned_and_other_units_events_are_refused_over_grpc_and_rabbitmq(stack, token, engine, unit_keys,
                                                                            process_env, vhost):
    ward = Client(stack["gateway"].target, token(WARD_3))          # signs nothing
    code = ward.receive(OFFICIAL, dossier()).code
    accept, _ = signed(code, step_of(ward, code))
    with pytest.raises(GatewayError) as unsigned:
        ward.publish([accept])
    assert unsigned.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert unsigned.value.violations[0][0] == "events[0].signature" and "missing" in unsigned.value.violations[0][1]
    as_land_registry = sign_event(accept, WARD_3, unit_keys.key_ids[LAND_REGISTRY], unit_keys.private[LAND_REGISTRY])
    with pytest.raises(GatewayError) as other_unit:
        ward.publish([as_land_registry])
    assert other_unit.value.violations[0][0] == "events[0].key_id"
    assert "other_unit" in other_unit.value.violations[0][1]

    user, password = run_cli(["gateway", "rabbitmq-user", WARD_3], process_env).stdout.strip().split("\t")
    publish_as(user, password, f"{WARD_3}.step_accepted", tampered({**unit_keys.sign(WARD_3, {**accept,
                                                                    "note": "Đã nhận"})}))
    letters = dead_letters(amqp(), timeout=10)
    assert letters and letters[0].headers["x-dead-letter-category"] == "signature"
    assert "signature" in letters[0].headers["x-dead-letter-reason"]
    assert "mismatch" in letters[0].headers["x-dead-letter-reason"]
    assert kept(engine, accept["idempotency_key"]) is None
    assert ward.workflow(OFFICIAL, code).steps[0].state == "handed_over"


def test_a_rotated_key_overlaps_then_the_old_one_is_refused(stack, token, unit_keys, process_env):
    ward = client_for(stack, token(WARD_3))
    old_key = unit_keys.key_ids[WARD_3]
    overlap = 6.0
    rotated = run_cli(["keys", "rotate", WARD_3, "--overlap-days", str(overlap / 86400), "--registry",
                       str(unit_keys.registry_file), "--keys-dir", str(unit_keys.private_dir)], process_env)
    new_key = rotated.stdout.strip()
    new_private = keys.read_private_keys(unit_keys.private_dir)[new_key]
    ends = keys.read_registry(unit_keys.registry_file).get(old_key).valid_until

    def publish_with(key_id, private) -> list[str]:
        code = ward.receive(OFFICIAL, dossier()).code
        accept, _ = signed(code, step_of(ward, code))
        return outcomes(ward.publish([sign_event(accept, WARD_3, key_id, private)]))

    time.sleep(1.5)       # the gateway reads the registry again at most once a second
    assert datetime.now(timezone.utc) < ends - timedelta(seconds=1), "the overlap is still on"
    assert publish_with(old_key, unit_keys.private[WARD_3]) == ["EVENT_OUTCOME_ACCEPTED"]
    assert publish_with(new_key, new_private) == ["EVENT_OUTCOME_ACCEPTED"]
    time.sleep(max(0.0, (ends - datetime.now(timezone.utc)).total_seconds()) + 0.5)
    before = failures(stack, WARD_3, "expired")
    with pytest.raises(GatewayError) as expired:
        publish_with(old_key, unit_keys.private[WARD_3])
    assert expired.value.violations[0][0] == "events[0].key_id" and "expired" in expired.value.violations[0][1]
    assert failures(stack, WARD_3, "expired") == before + 1
    assert publish_with(new_key, new_private) == ["EVENT_OUTCOME_ACCEPTED"]
    unit_keys.key_ids[WARD_3], unit_keys.private[WARD_3] = new_key, new_private


def test_the_check_command_finds_a_row_altered_in_the_database(stack, token, engine, unit_keys, process_env):
    desk, land = (client_for(stack, token(unit)) for unit in (DISTRICT, LAND_REGISTRY))
    code = desk.receive("Trần Văn Bình", dossier(procedure_code=LAND_TRANSFER, documents=[
        {"name": d["name"], "form": d["form"], "count": int(d["count"])}
        for d in _documents(desk)])).code
    step = wait_for(lambda: _first_step(land, code))
    land.accept_step("Lê Văn Đức", code, step)
    land.complete_step("Lê Văn Đức", code, step, note="Đã xử lý")
    land.transfer("Lê Văn Đức", code)                      # land registry → tax office, signed by the registry
    env = {**process_env, **unit_keys.env}
    today = datetime.now(timezone.utc).date()
    check = ["verify-handoffs", "--from", "2026-01-01", "--to", today.isoformat()]
    clean = run_cli(check, env, check=False)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "mismatch" not in clean.stdout

    with engine.begin() as connection:
        altered = connection.execute(text(
            "UPDATE routing.handovers SET note = 'Đã xử lý (sửa)' WHERE code = :code AND from_agency = :agency "
            "RETURNING id"), {"code": code, "agency": LAND_REGISTRY}).scalar_one()
        connection.execute(text("UPDATE gateway.unit_events SET body = jsonb_set(body, '{note}', '\"sửa\"') "
                                "WHERE idempotency_key = (SELECT idempotency_key FROM gateway.unit_events "
                                "WHERE type = 'result_signed' ORDER BY received_at LIMIT 1)"))
    found = run_cli(check, env, check=False)
    assert found.returncode == 1, found.stdout + found.stderr
    lines = found.stdout.splitlines()
    assert any(f"dossier {code}, hand-over {altered} " in line and "mismatch" in line for line in lines), lines
    assert any("result_signed" in line and "mismatch" in line for line in lines), lines
    assert len(lines) == 2, lines
    only_ward = run_cli([*check, "--unit", WARD_3], env, check=False)
    assert only_ward.returncode == 1 and len(only_ward.stdout.splitlines()) == 1


def _documents(client):
    from google.protobuf import json_format
    return json_format.MessageToDict(client.procedure(LAND_TRANSFER).detail)["documents"]


def _first_step(client, code):
    try:
        return client.workflow("Lê Văn Đức", code).steps[0].id
    except GatewayError as error:
        if error.code == grpc.StatusCode.NOT_FOUND:
            return None
        raise


def test_an_unknown_key_id_is_named(stack, token, unit_keys):
    ward = client_for(stack, token(WARD_3))
    code = ward.receive(OFFICIAL, dossier()).code
    accept, _ = signed(code, step_of(ward, code), key=uuid.uuid4().hex)
    with pytest.raises(GatewayError) as unknown:
        ward.publish([sign_event(accept, WARD_3, "no-such-key", unit_keys.private[WARD_3])])
    assert unknown.value.violations[0][0] == "events[0].key_id" and "unknown_key" in unknown.value.violations[0][1]
