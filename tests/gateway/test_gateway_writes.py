"""The gateway's writes through the real gRPC gateway (issue 16): RequestSupplement,
ReceiveSupplement and WithdrawDossier end to end, and every call that changes something refusing
malformed input (empty or missing fields, unspecified enums, out-of-range numbers, unknown
dossiers or steps, another unit's dossier) with its gRPC status and the field at fault, leaving no
row of intake's, routing's or fees' tables changed (their outboxes included: nothing published).
The gateway's own audit log records every call, refused or not, by design: it is not compared."""
import grpc
import pytest
from google.protobuf import json_format
from sqlalchemy import text

from motcua_client import GatewayError
from tests.e2e.writes import unchanged
from tests.gateway.conftest import LAND_REGISTRY, WARD_3, WARD_5
from tests.gateway.test_gateway import APPLICANT, DOCUMENTS, OFFICIAL, client_for, dossier, grpc_name, step_of, wait_for

ADDED = [{"name": "Tờ khai có chữ ký", "form": "original", "count": 1}]
SERVICES = ("intake", "routing", "fees")


def feed_types(client, code) -> list[str]:
    return [event.type for _, event in client.follow(0, timeout=2) if event.dossier_code == code]


def settled_in(client, code) -> None:
    """Routing has its workflow and fees its charge (intake heard of it): nothing more in flight."""
    step_of(client, code)
    wait_for(lambda: client.get(OFFICIAL, code).fees_outstanding > 0)


def test_a_supplement_is_requested_once_and_received_through_the_gateway(stack, token):
    ward = client_for(stack, token(WARD_3))
    code = ward.receive(OFFICIAL, dossier()).code
    settled_in(ward, code)
    asked = ward.request_supplement(OFFICIAL, code, "Tờ khai thiếu chữ ký", ADDED)
    assert asked.status == 5 and asked.clock_stopped
    supplement = json_format.MessageToDict(asked.detail)["supplement"]
    assert supplement["reason"] == "Tờ khai thiếu chữ ký" and supplement["requested_by"] == "desk"
    with pytest.raises(GatewayError) as twice:
        ward.request_supplement(OFFICIAL, code, "Thiếu ảnh", [{"name": "Ảnh 4x6", "form": "original"}])
    assert twice.value.code == grpc.StatusCode.FAILED_PRECONDITION and twice.value.fields == ["status"]

    back = ward.receive_supplement(OFFICIAL, code, ADDED)
    assert back.status in (2, 4) and not back.clock_stopped
    assert ward.get(OFFICIAL, code).status == back.status
    with pytest.raises(GatewayError) as again:       # once in the whole processing
        ward.request_supplement(OFFICIAL, code, "Thiếu ảnh", [{"name": "Ảnh 4x6", "form": "original"}])
    assert again.value.code == grpc.StatusCode.FAILED_PRECONDITION and again.value.fields == ["supplement"]
    wait_for(lambda: {"dossier.supplement_requested", "dossier.supplement_received"} <= set(feed_types(ward, code)))
    # routing stopped its clock and ran it again: the workflow is running, its clock not stopped
    assert not ward.workflow(OFFICIAL, code).clock_stopped


def test_a_dossier_is_withdrawn_once_through_the_gateway(stack, token):
    ward = client_for(stack, token(WARD_3))
    code = ward.receive(OFFICIAL, dossier()).code
    settled_in(ward, code)
    withdrawn = ward.withdraw(OFFICIAL, code, "Công dân xin rút hồ sơ")
    assert withdrawn.status == 7 and withdrawn.status_text
    with pytest.raises(GatewayError) as twice:
        ward.withdraw(OFFICIAL, code, "lần hai")
    assert twice.value.code == grpc.StatusCode.FAILED_PRECONDITION and twice.value.fields == ["status"]
    wait_for(lambda: "dossier.withdrawn" in feed_types(ward, code))
    assert ward.get(OFFICIAL, code).status == 7


@pytest.fixture(scope="module")
def dossiers(stack, token):
    """Ward 3's received dossier (its step handed over), and ward 5's."""
    ward3, ward5 = client_for(stack, token(WARD_3)), client_for(stack, token(WARD_5))
    mine, other = ward3.receive(OFFICIAL, dossier()).code, ward5.receive(OFFICIAL, dossier()).code
    settled_in(ward3, mine)
    settled_in(ward5, other)
    return {"mine": mine, "other": other, "step": step_of(ward3, mine), "other_step": step_of(ward5, other),
            "ward": ward3, "registry": client_for(stack, token(LAND_REGISTRY))}


INVALID, DENIED = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED
MISSING, PRECONDITION = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION
UNKNOWN = f"{WARD_3}-260101-9999"

# (call name, call(d) with d the fixture's dict, status, field)
CASES = [
    ("CheckDossier", lambda d: d["ward"].check("", dossier()), INVALID, "official"),
    ("ReceiveDossier", lambda d: d["ward"].receive(OFFICIAL, dossier(documents=[{**DOCUMENTS[0], "count": -2},
                                                                               DOCUMENTS[1]])),
     INVALID, "submission.documents[0].count"),
    ("ReceiveDossier", lambda d: d["ward"].receive(OFFICIAL, dossier(applicant={**APPLICANT, "phone": "12"})),
     INVALID, "submission.applicant.phone"),
    # (an unknown procedure is named without the "submission." its malformed one gets)
    ("ReceiveDossier", lambda d: d["ward"].receive(OFFICIAL, dossier(procedure_code="9.999999")), MISSING,
     "procedure_code"),
    ("RefuseDossier", lambda d: d["ward"].refuse(OFFICIAL, d["mine"], ""), INVALID, "reason"),
    ("RefuseDossier", lambda d: d["ward"].refuse(OFFICIAL, "", "Không cư trú"), INVALID, "code"),
    ("RefuseDossier", lambda d: d["ward"].refuse(OFFICIAL, d["other"], "Không cư trú"), DENIED, "code"),
    ("RequestSupplement", lambda d: d["ward"].request_supplement(OFFICIAL, d["mine"], "", ADDED), INVALID, "reason"),
    ("RequestSupplement", lambda d: d["ward"].request_supplement(OFFICIAL, d["mine"], "Thiếu chữ ký", []),
     INVALID, "documents"),
    ("RequestSupplement", lambda d: d["ward"].request_supplement(OFFICIAL, d["mine"], "Thiếu chữ ký",
                                                                 [{"name": "", "form": "original"}]),
     INVALID, "documents[0].name"),
    ("RequestSupplement", lambda d: d["ward"].request_supplement(OFFICIAL, d["other"], "Thiếu chữ ký", ADDED),
     DENIED, "code"),
    ("RequestSupplement", lambda d: d["ward"].request_supplement("", d["mine"], "Thiếu chữ ký", ADDED),
     INVALID, "official"),
    ("ReceiveSupplement", lambda d: d["ward"].receive_supplement(OFFICIAL, d["mine"], ADDED), PRECONDITION,
     "status"),
    ("ReceiveSupplement", lambda d: d["ward"].receive_supplement(OFFICIAL, d["other"], ADDED), DENIED, "code"),
    ("ReceiveSupplement", lambda d: d["ward"].receive_supplement(OFFICIAL, UNKNOWN, ADDED), MISSING, "code"),
    ("WithdrawDossier", lambda d: d["ward"].withdraw(OFFICIAL, d["mine"], "   "), INVALID, "reason"),
    ("WithdrawDossier", lambda d: d["ward"].withdraw(OFFICIAL, d["other"], "Công dân xin rút"), DENIED, "code"),
    ("WithdrawDossier", lambda d: d["ward"].withdraw(OFFICIAL, UNKNOWN, "Công dân xin rút"), MISSING, "code"),
    ("ReturnResult", lambda d: d["ward"].return_result(OFFICIAL, d["mine"], ""), INVALID, "collected_by"),
    ("ReturnResult", lambda d: d["ward"].return_result(OFFICIAL, d["mine"], "Nguyễn Thị Lan"), PRECONDITION,
     "status"),
    ("AcceptHandOver", lambda d: d["ward"].accept_step(OFFICIAL, d["mine"], -1), INVALID, "step"),
    ("AcceptHandOver", lambda d: d["ward"].accept_step(OFFICIAL, d["mine"], d["other_step"]), MISSING, "step"),
    ("AcceptHandOver", lambda d: d["registry"].accept_step(OFFICIAL, d["mine"], d["step"]), DENIED, "step"),
    ("CompleteStep", lambda d: d["ward"].complete_step(OFFICIAL, d["mine"], d["step"], result="maybe"), INVALID,
     "result"),
    ("CompleteStep", lambda d: d["ward"].complete_step(OFFICIAL, d["other"], d["other_step"]), DENIED, "step"),
    ("CompleteStep", lambda d: d["ward"].complete_step(OFFICIAL, d["mine"], d["step"]), PRECONDITION, "step"),
    ("TransferDossier", lambda d: d["ward"].transfer(OFFICIAL, d["mine"]), PRECONDITION, "step"),
    ("TransferDossier", lambda d: d["ward"].transfer(OFFICIAL, ""), INVALID, "code"),
    ("ReportDelay", lambda d: d["ward"].report_delay(OFFICIAL, d["mine"], ""), INVALID, "reason"),
    ("ReportDelay", lambda d: d["ward"].report_delay(OFFICIAL, d["mine"], "Chờ xác minh"), PRECONDITION, "code"),
    ("RequestObligation", lambda d: d["ward"].request_obligation(OFFICIAL, d["mine"], "", 100000), INVALID,
     "description"),
    ("RequestObligation", lambda d: d["ward"].request_obligation(OFFICIAL, d["mine"], "Thuế TNCN", 0), INVALID,
     "amount"),
    ("RequestObligation", lambda d: d["ward"].request_obligation(OFFICIAL, d["mine"], "Thuế TNCN", -5), INVALID,
     "amount"),
    ("RecordPayment", lambda d: d["ward"].pay(OFFICIAL, d["mine"], 0), INVALID, "amount"),
    ("RecordPayment", lambda d: d["ward"].pay(OFFICIAL, d["mine"], -1000), INVALID, "amount"),
    ("RecordPayment", lambda d: d["ward"].pay(OFFICIAL, d["mine"], 10 ** 12), PRECONDITION, "amount"),
    ("RecordPayment", lambda d: d["ward"].pay(OFFICIAL, d["mine"], 1000, method="transfer"), INVALID, "reference"),
    ("RecordPayment", lambda d: d["ward"].pay(OFFICIAL, d["other"], 1000), DENIED, "code"),
    ("RecordPayment", lambda d: d["ward"].pay(OFFICIAL, "", 1000), INVALID, "code"),
]


@pytest.mark.parametrize("name, call, status, field", CASES, ids=[f"{c[0]}-{c[3]}-{i}" for i, c in enumerate(CASES)])
def test_a_malformed_call_is_refused_naming_the_field_and_changes_nothing(stack, engine, dossiers,
                                                                          name, call, status, field):
    with unchanged(engine, *SERVICES):
        with pytest.raises(GatewayError) as refused:
            call(dossiers)
    assert refused.value.code == status, (name, refused.value)
    assert field in refused.value.fields, (name, refused.value.violations)


@pytest.mark.parametrize("event, field", [
    ({"type": "step_accepted", "step": 1}, "dossier_code"),
    ({"type": "result_signed", "dossier_code": "{mine}"}, "step"),
    ({"type": "delay_reported", "dossier_code": "{mine}"}, "reason"),
    ({"type": "step_accepted", "dossier_code": "{other}", "step": "{other_step}"}, "step"),   # ward 5's step
])
def test_a_malformed_published_event_is_rejected_naming_the_field_and_changes_nothing(stack, engine, dossiers,
                                                                                      event, field):
    filled = {k: (v.format(**{k2: v2 for k2, v2 in dossiers.items() if isinstance(v2, (str, int))})
                  if isinstance(v, str) and "{" in v else v) for k, v in event.items()}
    if isinstance(filled.get("step"), str):
        filled["step"] = int(filled["step"])
    full = {"idempotency_key": f"bad-{field}-{filled['type']}-{filled.get('dossier_code')}", "official": OFFICIAL,
            "occurred_at": "2026-03-02T10:00:00+07:00", **filled}
    # An event that reaches a service is kept under its key with its outcome (unit_events), so that
    # the same key sent again gets the same answer: that row is the one change allowed.
    with unchanged(engine, *SERVICES, "gateway", skip=("audit_log", "credentials", "unit_events")):
        (ack,) = dossiers["ward"].publish([full])
    assert (grpc_name(ack.outcome), ack.field) == ("EVENT_OUTCOME_REJECTED", field), ack
    with engine.connect() as connection:
        kept = connection.execute(text("SELECT outcome FROM gateway.unit_events WHERE idempotency_key = :k"),
                                  {"k": full["idempotency_key"]}).scalars().all()
    assert kept in ([], ["rejected"])
