"""Issue 7, done when: a real grpcio client (``motcua_client``) against the running processes."""
import json
import os
import subprocess
import sys
import time
import uuid
from functools import partial

import grpc
import pytest
import requests
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from kombu import Connection, Producer
from sqlalchemy import text

from motcua.runtime import broker
from motcua.v1 import catalogue_service_pb2, catalogue_service_pb2_grpc, event_service_pb2
from motcua_client import Client, GatewayError
from tests.conftest import ROOT, dead_letters
from tests.e2e.test_intake_desk import wait_for as wait_until
from tests.gateway.conftest import DISTRICT, LAND_REGISTRY, TAX, WARD_3, WARD_5, Gateway, amqp, run_cli

MARITAL_STATUS = "1.004873"      # ward, 3 working days, lệ phí; the ward handles it itself
APPLICANT = {"name": "Nguyễn Thị Lan", "id_number": "079203001234", "address": "12 Lê Đức Thọ, Phường 3",
             "phone": "0903123456", "email": "lan@example.vn"}
DOCUMENTS = [{"name": "Tờ khai cấp Giấy xác nhận tình trạng hôn nhân (theo mẫu)", "form": "original", "count": 1},
             {"name": "Giấy tờ tùy thân của người yêu cầu (xuất trình)", "form": "original", "count": 1}]
OFFICIAL = "Trần Thị Hoa"


def dossier(**overrides) -> dict:
    return {"procedure_code": MARITAL_STATUS, "applicant": APPLICANT, "documents": DOCUMENTS, **overrides}


wait_for = partial(wait_until, timeout=15.0)     # the gateway adds a hop: a little more time


def client_for(stack, token) -> Client:
    """A unit system's client; it signs its events with the unit's test key (``conftest.Token``)."""
    return Client(stack["gateway"].target, token, unit=getattr(token, "unit", None),
                  key_id=getattr(token, "key_id", None), signing_key=getattr(token, "signing_key", None))


def step_of(client: Client, code: str) -> int:
    """The ward's own step, once routing has the dossier."""
    def found():
        try:
            return client.workflow(OFFICIAL, code).steps[0].id
        except GatewayError as error:
            if error.code == grpc.StatusCode.NOT_FOUND:
                return None
            raise
    return wait_for(found)


def signed(code: str, step: int, key: str | None = None) -> list[dict]:
    key = key or uuid.uuid4().hex
    return [{"idempotency_key": f"{key}-accept", "type": "step_accepted", "dossier_code": code, "step": step,
             "official": OFFICIAL, "occurred_at": "2026-03-02T10:00:00+07:00"},
            {"idempotency_key": f"{key}-sign", "type": "result_signed", "dossier_code": code, "step": step,
             "official": "Chủ tịch UBND Phường 3", "occurred_at": "2026-03-02T10:32:00+07:00",
             "note": "Đã ký Giấy xác nhận tình trạng hôn nhân"}]


def outcomes(acks) -> list[str]:
    return [grpc_name(a.outcome) for a in acks]


def grpc_name(outcome: int) -> str:
    return event_service_pb2.EventOutcome.Name(outcome)


def test_the_whole_life_of_a_dossier_through_the_gateway(stack, token):
    ward = client_for(stack, token(WARD_3))
    checked = ward.check(OFFICIAL, dossier(documents=DOCUMENTS[:1]))
    assert not checked.complete and len(checked.guidance) == 1

    received = ward.receive(OFFICIAL, dossier())
    assert received.code.startswith(WARD_3 + "-") and received.status == 2
    assert received.appointment_date == "2026-03-05"
    step = step_of(ward, received.code)

    acks = ward.publish(signed(received.code, step))
    assert outcomes(acks) == ["EVENT_OUTCOME_ACCEPTED"] * 2
    processed = wait_for(lambda: (d := ward.get(OFFICIAL, received.code)).status == 9 and d.fees_outstanding and d)
    paid = ward.pay(OFFICIAL, received.code, processed.fees_outstanding)
    assert paid.recorded and paid.outstanding == 0
    wait_for(lambda: ward.get(OFFICIAL, received.code).fees_outstanding == 0)
    returned = ward.return_result(OFFICIAL, received.code, collected_by="Nguyễn Thị Lan")
    assert returned.status == 10 and returned.result_class == "early"

    book = ward.tracking_book(OFFICIAL, "2026-03-01", "2026-03-31")
    assert received.code in [line.code for line in book.lines]
    events = {}
    for position, event in ward.follow(0, timeout=3):
        if event.dossier_code == received.code:
            events[event.type] = position
    assert {"dossier.received", "dossier.step_started", "dossier.step_completed", "dossier.processed",
            "dossier.returned"} <= set(events)
    assert events["dossier.received"] < events["dossier.processed"] < events["dossier.returned"]
    procedure = ward.procedure(MARITAL_STATUS)
    assert procedure.code == MARITAL_STATUS and procedure.time_limit
    assert MARITAL_STATUS in [p.code for p in ward.procedures(unit=WARD_3)]


LAND_TRANSFER = "1.013831"   # land registry, tax office, land registry


def test_an_inter_agency_dossier_through_the_agencies_own_systems(stack, token):
    desk, registry, tax = (client_for(stack, token(unit)) for unit in (DISTRICT, LAND_REGISTRY, TAX))
    procedure = json_format.MessageToDict(desk.procedure(LAND_TRANSFER).detail)
    documents = [{"name": d["name"], "form": d["form"], "count": int(d["count"])} for d in procedure["documents"]]
    code = desk.receive("Trần Văn Bình", dossier(procedure_code=LAND_TRANSFER, documents=documents)).code
    workflow = wait_for(lambda: _workflow_or_none(registry, code))
    assert [s.agency for s in workflow.steps] == [LAND_REGISTRY, TAX, LAND_REGISTRY]
    assert workflow.remaining.startswith("còn ") and workflow.remaining.endswith(" làm việc")
    assert workflow.steps[0].remaining.startswith("còn ") and workflow.steps[1].remaining == ""
    for client, official, step in ((registry, "Lê Văn Đức", workflow.steps[0].id),
                                   (tax, "Phạm Thị Mai", workflow.steps[1].id)):
        client.accept_step(official, code, step)
        client.complete_step(official, code, step, note="Đã xử lý")
        moved = client.transfer(official, code)
        assert moved.state == "running"
    obliged = tax.workflow("Phạm Thị Mai", code)
    assert obliged.stage == 2
    with pytest.raises(GatewayError) as not_holding:
        tax.request_obligation("Phạm Thị Mai", code, "Thuế thu nhập cá nhân", 1_500_000)
    assert not_holding.value.code == grpc.StatusCode.PERMISSION_DENIED, "the tax office's step is over"
    with pytest.raises(GatewayError) as not_late:
        registry.report_delay("Lê Văn Đức", code, "Chờ xác minh")
    assert not_late.value.code == grpc.StatusCode.FAILED_PRECONDITION, "no apology for a dossier on time"
    last = workflow.steps[2].id
    registry.accept_step("Lê Văn Đức", code, last)
    registry.request_obligation("Lê Văn Đức", code, "Lệ phí trước bạ", 500_000)
    stopped = registry.workflow("Lê Văn Đức", code)
    assert stopped.clock_stopped and stopped.remaining == "tạm dừng tính thời gian (chờ công dân)"
    owed = wait_for(lambda: (d := desk.get("Trần Văn Bình", code)).fees_outstanding >= 500_000 and d).fees_outstanding
    assert desk.pay("Trần Văn Bình", code, owed, method="transfer", reference="VCB-0001").outstanding == 0
    wait_for(lambda: not registry.workflow("Lê Văn Đức", code).clock_stopped)
    registry.complete_step("Lê Văn Đức", code, last, note="Đã cập nhật biến động")
    returned = registry.transfer("Lê Văn Đức", code)        # the last stage: back to the desk
    assert returned.state == "processed"
    wait_for(lambda: desk.get("Trần Văn Bình", code).status == 9)


def _workflow_or_none(client, code):
    try:
        return client.workflow("Lê Văn Đức", code)
    except GatewayError as error:
        if error.code == grpc.StatusCode.NOT_FOUND:
            return None
        raise


def test_a_resent_batch_changes_nothing(stack, token, engine):
    ward = client_for(stack, token(WARD_3))
    code = ward.receive(OFFICIAL, dossier()).code
    batch = signed(code, step_of(ward, code), key="batch-7")
    assert outcomes(ward.publish(batch)) == ["EVENT_OUTCOME_ACCEPTED"] * 2
    wait_for(lambda: ward.get(OFFICIAL, code).status == 9)

    def actions():
        with engine.connect() as connection:
            return connection.execute(text("SELECT count(*) FROM routing.actions WHERE code = :c"),
                                      {"c": code}).scalar()
    before = actions()
    assert outcomes(ward.publish(batch)) == ["EVENT_OUTCOME_DUPLICATE"] * 2
    assert outcomes(ward.publish(batch[1:])) == ["EVENT_OUTCOME_DUPLICATE"]
    # The answer is the marker: an event is applied before its outcome is answered, and a duplicate
    # is answered without applying anything; nothing of it can land later.
    assert actions() == before
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT outcome FROM gateway.unit_events WHERE dossier = :c"),
                                  {"c": code}).scalars().all()
    assert rows == ["accepted", "accepted"]


def test_a_subscriber_that_comes_back_receives_every_event_once(stack, token, engine):
    ward5 = client_for(stack, token(WARD_5))
    first = ward5.receive(OFFICIAL, dossier(applicant={**APPLICANT, "address": "Phường 5"}))
    seen = []
    for position, event in ward5.follow(0, timeout=3):
        seen.append((position, event.id))
        if event.dossier_code == first.code and event.type == "dossier.received":
            break                                   # disconnect mid-feed
    assert seen, "the first events arrive"
    step = step_of(ward5, first.code)
    ward5.publish(signed(first.code, step))         # more events while the subscriber is away
    second = ward5.receive(OFFICIAL, dossier())

    def head():
        with engine.connect() as connection:
            return connection.execute(text("SELECT position FROM gateway.feed_heads WHERE unit = :u"),
                                      {"u": WARD_5}).scalar()
    wait_for(lambda: (h := head()) and h >= len(seen) + 4)
    expected = head()
    for position, event in ward5.follow(seen[-1][0], timeout=3):
        seen.append((position, event.id))
        if position >= expected:
            break
    positions = [position for position, _ in seen]
    assert positions == list(range(1, expected + 1)), "gapless, in order, nothing twice"
    assert len({event_id for _, event_id in seen}) == len(seen)
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT position, event_id::text FROM gateway.feed WHERE unit = :u "
                                         "AND position <= :p ORDER BY position"), {"u": WARD_5, "p": expected}).all()
    assert [(p, e) for p, e in stored] == seen
    types = [e.type for _, e in ward5.follow(0, types=["dossier.received"], timeout=2)]
    assert types.count("dossier.received") >= 2 and set(types) == {"dossier.received"}
    assert second.code != first.code


def test_a_ward_cannot_read_or_act_on_another_wards_dossier(stack, token):
    ward5 = client_for(stack, token(WARD_5))
    ward3 = client_for(stack, token(WARD_3))
    registry = client_for(stack, token(LAND_REGISTRY))
    code = ward5.receive(OFFICIAL, dossier()).code
    step = step_of(ward5, code)
    for attempt in (lambda: ward3.get(OFFICIAL, code), lambda: ward3.refuse(OFFICIAL, code, "không"),
                    lambda: ward3.workflow(OFFICIAL, code), lambda: ward3.accept_step(OFFICIAL, code, step),
                    lambda: registry.workflow(OFFICIAL, code), lambda: ward3.pay(OFFICIAL, code, 1000)):
        with pytest.raises(GatewayError) as refused:
            attempt()
        assert refused.value.code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND), refused.value
    with pytest.raises(GatewayError) as refused:
        ward3.get(OFFICIAL, code)
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED and refused.value.fields == ["code"]
    acks = ward3.publish(signed(code, step))
    assert outcomes(acks) == ["EVENT_OUTCOME_REJECTED"] * 2 and acks[0].field
    feed3 = [e.dossier_code for _, e in ward3.follow(0, timeout=2)]
    assert code not in feed3, "another ward's events never reach Phường 3"
    assert ward5.get(OFFICIAL, code).status == 2


def test_wrong_revoked_and_rotated_tokens(stack, token, process_env):
    target = stack["gateway"].target
    for bad in ("nonsense", "abc.def", token(WARD_3)[:-2] + "xx"):
        with pytest.raises(GatewayError) as refused:
            Client(target, bad).procedures()
        assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as missing:
        stub = catalogue_service_pb2_grpc.CatalogueServiceStub(grpc.insecure_channel(target))
        stub.ListProcedures(catalogue_service_pb2.ListProceduresRequest(), timeout=5)
    assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED

    old, new = token(WARD_3, "old"), token(WARD_3, "new")   # rotation: both valid until the old is revoked
    assert Client(target, old).procedures() and Client(target, new).procedures()
    run_cli(["gateway", "token", "revoke", old.split(".")[0]], process_env)
    with pytest.raises(GatewayError) as revoked:
        Client(target, old).procedures()
    assert revoked.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert Client(target, new).procedures(), "no restart needed"
    listing = json.loads(run_cli(["gateway", "token", "list", "--unit", WARD_3], process_env).stdout)
    assert all("secret" not in json.dumps(entry) for entry in listing)
    assert any(entry["revoked_at"] for entry in listing)


def test_malformed_requests_name_their_fields(stack, token, engine):
    ward = client_for(stack, token(WARD_3))
    cases = [
        (lambda: ward.receive(OFFICIAL, dossier(applicant={**APPLICANT, "id_number": "12"})),
         "submission.applicant.id_number"),
        (lambda: ward.receive("", dossier()), "official"),
        (lambda: ward.receive(OFFICIAL, dossier(procedure_code="")), "submission.procedure_code"),
        (lambda: ward.get(OFFICIAL, ""), "code"),
        (lambda: ward.complete_step(OFFICIAL, "X", 1, result="maybe"), "result"),
        (lambda: ward.accept_step(OFFICIAL, "X", 0), "step"),
        (lambda: ward.pay(OFFICIAL, "X", 1000, method="bitcoin"), "method"),
        (lambda: ward.tracking_book(OFFICIAL, "2026-13-01", "2026-03-01"), "from"),
    ]
    with engine.connect() as connection:
        before = connection.execute(text("SELECT count(*) FROM intake.dossiers")).scalar()
    for call, field in cases:
        with pytest.raises(GatewayError) as refused:
            call()
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT, (field, refused.value)
        assert field in refused.value.fields, (field, refused.value.violations)
    with pytest.raises(GatewayError) as incomplete:
        ward.receive(OFFICIAL, dossier(documents=DOCUMENTS[:1]))
    assert len(incomplete.value.violations) == 2, "the field, then one line of the guidance slip"
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM intake.dossiers")).scalar() == before
    acks = ward.publish([{"idempotency_key": "k1", "type": "result_signed", "dossier_code": "X",
                          "official": OFFICIAL, "occurred_at": "2026-03-02T10:00:00+07:00"},
                         {"idempotency_key": "k2", "type": "delay_reported", "dossier_code": "X",
                          "official": OFFICIAL, "occurred_at": "2026-03-02T10:00:00+07:00"}])
    assert [(grpc_name(a.outcome), a.field) for a in acks] == [("EVENT_OUTCOME_REJECTED", "step"),
                                                                ("EVENT_OUTCOME_REJECTED", "reason")]


def test_the_audit_log_is_chained_and_tampering_is_reported(stack, token, process_env, engine):
    ward = client_for(stack, token(WARD_3))
    code = ward.receive(OFFICIAL, dossier()).code
    ward.get(OFFICIAL, code)
    ward.publish(signed(code, step_of(ward, code)))
    with pytest.raises(GatewayError):
        Client(stack["gateway"].target, "bad.token").get(OFFICIAL, code)
    with engine.connect() as connection:
        published = connection.execute(text("SELECT dossier, detail FROM gateway.audit_log WHERE method = "
                                            "'PublishEvents' ORDER BY seq DESC LIMIT 1")).one()
    assert tuple(published) == (code, "2 events: 2 accepted")
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT seq, unit, method, dossier, result FROM gateway.audit_log "
                                       "ORDER BY seq")).all()
    assert (WARD_3, "ReceiveDossier", "", "OK") in [tuple(r[1:]) for r in rows]
    assert ("", "GetDossier", "", "UNAUTHENTICATED") in [tuple(r[1:]) for r in rows]
    assert (WARD_3, "GetDossier", code, "OK") in [tuple(r[1:]) for r in rows]
    intact = run_cli(["gateway", "audit", "verify"], process_env)
    assert "chain intact" in intact.stdout
    target = rows[len(rows) // 2][0]
    with engine.begin() as connection:
        connection.execute(text("UPDATE gateway.audit_log SET result = 'OK', detail = detail || ' ', unit = :u "
                                "WHERE seq = :s"), {"u": WARD_5, "s": target})      # always a change
    broken = run_cli(["gateway", "audit", "verify"], process_env, check=False)
    assert broken.returncode == 1
    assert f"entry {target}: altered" in broken.stdout
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM gateway.audit_log WHERE seq = :s"), {"s": target})
    removed = run_cli(["gateway", "audit", "verify"], process_env, check=False)
    assert removed.returncode == 1 and f"entry {target + 1}" in removed.stdout


def test_health_reflection_and_metrics(stack, token):
    gateway = stack["gateway"]
    channel = grpc.insecure_channel(gateway.target)
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "motcua.v1.DeskService", "motcua.v1.EventService"):
        assert health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status == \
            health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    answer = next(reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                  timeout=5))
    names = {s.name for s in answer.list_services_response.service}
    assert {"motcua.v1.DeskService", "motcua.v1.AgencyService", "motcua.v1.PaymentService",
            "motcua.v1.CatalogueService", "motcua.v1.EventService", "grpc.health.v1.Health"} <= names
    client_for(stack, token(WARD_3)).procedures()
    metrics = requests.get(gateway.url + "/metrics", timeout=5).text
    assert 'motcua_gateway_calls_total{code="OK",unit="000.03.20.H29"}' in metrics
    assert 'motcua_entrypoint_calls_total{entrypoint="ListProcedures",kind="grpc",outcome="ok",service="gateway"}' \
        in metrics
    assert "079203001234" not in metrics and "0903123456" not in metrics
    log = gateway.log_path.read_text()
    assert "079203001234" not in log and "0903123456" not in log, "no citizen ID or phone in the logs"
    assert requests.get(gateway.url + "/health", timeout=5).json()["status"] == "ok"


def test_a_full_gateway_answers_resource_exhausted(stack, process_env, clock, tmp_path, token):
    small = Gateway({**process_env, "CLOCK_FILE": str(clock.path)}, tmp_path, max_concurrent_rpcs=2,
                    max_workers=4).start()
    try:
        client = Client(small.target, token(WARD_3))
        streams = [client.events.Subscribe(event_service_pb2.SubscribeRequest(), metadata=client.metadata,
                                           timeout=30) for _ in range(2)]
        time.sleep(1)          # both subscriptions hold their place
        with pytest.raises(GatewayError) as full:
            client.procedures()
        assert full.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        for stream in streams:
            stream.cancel()

        def answered():
            try:
                return client.procedures()
            except GatewayError as error:
                assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
                return None
        assert wait_for(answered, timeout=10), "places are freed when the subscriptions end"
    finally:
        small.stop()


def test_tls_with_the_same_tokens(stack, process_env, clock, tmp_path, token):
    cert, key = tmp_path / "gateway.crt", tmp_path / "gateway.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    secure = Gateway({**process_env, "CLOCK_FILE": str(clock.path)}, tmp_path, tls_cert_file=cert,
                     tls_key_file=key).start()
    try:
        target = f"localhost:{secure.grpc_port}"
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        assert Client(target, token(WARD_3), channel_credentials=credentials).procedures(unit=WARD_3)
        with pytest.raises(GatewayError) as plaintext:
            Client(target, token(WARD_3), timeout=3).procedures()
        assert plaintext.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    finally:
        secure.stop()


def test_a_deadline_is_honoured(stack, token):
    ward = Client(stack["gateway"].target, token(WARD_3), timeout=0.001)
    with pytest.raises(GatewayError) as late:
        ward.procedures()
    assert late.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


def publish_as(user: str, password: str, routing_key: str, body) -> None:
    uri = amqp().replace("guest:guest", f"{user}:{password}")
    with Connection(uri, transport_options={"confirm_publish": True}) as connection:
        Producer(connection.default_channel, exchange=broker.units_exchange, auto_declare=False).publish(
            body if isinstance(body, str) else json.dumps(body), routing_key=routing_key,
            content_type="application/json", delivery_mode=2)


def test_units_publish_straight_over_rabbitmq_under_their_own_key_only(stack, token, process_env, vhost,
                                                                      unit_keys):
    created = run_cli(["gateway", "rabbitmq-user", WARD_3], process_env).stdout.strip()
    user, password = created.split("\t")
    assert user == f"unit.{WARD_3}"
    ward = client_for(stack, token(WARD_3))
    code = ward.receive(OFFICIAL, dossier()).code
    for event in signed(code, step_of(ward, code)):
        publish_as(user, password, f"{WARD_3}.{event['type']}", unit_keys.sign(WARD_3, event))
    wait_for(lambda: ward.get(OFFICIAL, code).status == 9)

    with pytest.raises(Exception) as refused:      # Phường 3 cannot publish as Phường 5
        publish_as(user, password, f"{WARD_5}.result_signed", {"idempotency_key": "x"})
    assert "ACCESS_REFUSED" in str(refused.value) or "403" in str(refused.value)

    publish_as(user, password, f"{WARD_3}.result_signed", "{not json")
    publish_as(user, password, f"{WARD_3}.result_signed", {"idempotency_key": "k", "type": "result_signed",
                                                           "dossier_code": code, "official": OFFICIAL})
    letters = dead_letters(amqp(), timeout=10, expect=2)
    reasons = [m.headers["x-dead-letter-reason"] for m in letters]
    assert any("JSON" in r or "Expecting" in r for r in reasons), reasons
    assert any("occurred_at" in r or "step" in r for r in reasons), reasons


def test_the_example_ward_system_runs(stack, token, unit_keys):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "ward_system.py"), "--target", stack["gateway"].target,
         "--token", token(WARD_3), "--official", OFFICIAL, "--timeout", "60", "--unit", WARD_3,
         "--key-id", unit_keys.key_ids[WARD_3], "--key-file",
         str(unit_keys.private_dir / f"{unit_keys.key_ids[WARD_3]}.pem")],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "returned" in result.stdout and "dossier.processed" in result.stdout


def test_a_crashed_gateway_loses_no_event_of_the_feeds(stack, token, engine):
    """SIGKILL the gateway, receive dossiers while it is down, start it again: every event reaches
    the ward's feed, once (the feed queue is durable and acknowledged only after the commit)."""
    gateway = stack["gateway"]
    ward = client_for(stack, token(WARD_5))
    before = {e.id for _, e in ward.follow(0, timeout=2)}
    gateway.crash()
    intake = stack["intake"]
    codes = []
    for _ in range(5):
        answer = requests.post(intake.url + "/api/v1/dossiers", json=dossier(), timeout=10,
                               headers={"X-Official": "Tr%E1%BA%A7n", "X-Unit": WARD_5})
        assert answer.status_code == 201, answer.text
        codes.append(answer.json()["code"])
    gateway.start()
    ward = client_for(stack, token(WARD_5))

    def received_codes():
        events = [e for _, e in ward.follow(0, timeout=2)]
        return [e.dossier_code for e in events if e.type == "dossier.received" and e.id not in before]
    wait_for(lambda: set(codes) <= set(received_codes()), timeout=30)
    assert sorted(received_codes()) == sorted(codes), "each once"
    with engine.connect() as connection:
        positions = connection.execute(text("SELECT position FROM gateway.feed WHERE unit = :u ORDER BY position"),
                                       {"u": WARD_5}).scalars().all()
    assert positions == list(range(1, len(positions) + 1))


def test_a_write_retried_with_its_idempotency_key_is_done_once(stack, token, engine):
    """A unit system whose answer was lost sends the call again with its ``idempotency-key``: the
    same answer, one dossier; the key with another request is refused naming it (issue 16)."""
    from motcua.v1 import desk_service_pb2 as desk_pb
    from motcua_client.client import submission
    ward = client_for(stack, token(WARD_3))
    key = uuid.uuid4().hex

    def receive(body, with_key=key):
        request = desk_pb.ReceiveDossierRequest(official=OFFICIAL, submission=submission(body))
        return ward.desk.ReceiveDossier(request, metadata=ward.metadata + (("idempotency-key", with_key),),
                                        timeout=15)

    def count() -> int:
        with engine.connect() as connection:
            return connection.execute(text("SELECT count(*) FROM intake.dossiers")).scalar_one()

    before = count()
    first = receive(dossier())
    again = receive(dossier())
    assert again.SerializeToString() == first.SerializeToString()
    assert again.dossier.code == first.dossier.code and count() == before + 1
    with pytest.raises(grpc.RpcError) as other:
        receive(dossier(applicant={**APPLICANT, "name": "Lê Văn Tám"}))
    assert other.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "idempotency-key" in other.value.details()
    with pytest.raises(grpc.RpcError) as malformed:
        receive(dossier(), with_key="k" * 201)
    assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "idempotency-key" in malformed.value.details()
    assert count() == before + 1

    refuse = desk_pb.RefuseDossierRequest(official=OFFICIAL, code=first.dossier.code, reason="Thiếu giấy tờ")
    metadata = ward.metadata + (("idempotency-key", key + "-refuse"),)
    refused = ward.desk.RefuseDossier(refuse, metadata=metadata, timeout=15)
    assert ward.desk.RefuseDossier(refuse, metadata=metadata, timeout=15) == refused     # not "already refused"
    with pytest.raises(grpc.RpcError) as without_key:
        ward.desk.RefuseDossier(refuse, metadata=ward.metadata, timeout=15)
    assert without_key.value.code() == grpc.StatusCode.FAILED_PRECONDITION
