"""The client: one channel, one stub per gateway service, the token on every call."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Iterable, Iterator

import grpc
from google.protobuf import json_format
from google.rpc import error_details_pb2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from grpc_status import rpc_status

from motcua.contracts import signing

from motcua.v1 import (agency_service_pb2 as agency_pb, agency_service_pb2_grpc as agency_grpc,
                       catalogue_service_pb2 as catalogue_pb, catalogue_service_pb2_grpc as catalogue_grpc,
                       desk_service_pb2 as desk_pb, desk_service_pb2_grpc as desk_grpc, dossier_pb2,
                       event_service_pb2 as event_pb, event_service_pb2_grpc as event_grpc,
                       payment_service_pb2 as payment_pb, payment_service_pb2_grpc as payment_grpc)

FORMS = {"original": dossier_pb2.DOCUMENT_FORM_ORIGINAL, "certified_copy": dossier_pb2.DOCUMENT_FORM_CERTIFIED_COPY,
         "copy": dossier_pb2.DOCUMENT_FORM_COPY}
CHANNELS = {"in_person": dossier_pb2.CHANNEL_IN_PERSON, "online": dossier_pb2.CHANNEL_ONLINE,
            "post": dossier_pb2.CHANNEL_POST}
EVENT_TYPES = {"step_accepted": event_pb.UNIT_EVENT_TYPE_STEP_ACCEPTED,
               "result_signed": event_pb.UNIT_EVENT_TYPE_RESULT_SIGNED,
               "step_refused": event_pb.UNIT_EVENT_TYPE_STEP_REFUSED,
               "supplement_needed": event_pb.UNIT_EVENT_TYPE_SUPPLEMENT_NEEDED,
               "delay_reported": event_pb.UNIT_EVENT_TYPE_DELAY_REPORTED}


class GatewayError(Exception):
    """A call the gateway refused: ``code`` (grpc.StatusCode), ``message`` and ``violations``
    (the fields at fault and why, from google.rpc.BadRequest)."""

    def __init__(self, error: grpc.RpcError):
        self.code, self.message = error.code(), error.details()
        self.violations: list[tuple[str, str]] = []
        status = rpc_status.from_call(error)
        for detail in (status.details if status else []):
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                self.violations += [(v.field, v.description) for v in bad.field_violations]
        super().__init__(f"{self.code.name}: {self.message}")

    @property
    def fields(self) -> list[str]:
        return [field for field, _ in self.violations]


def _documents(items: Iterable[dict]) -> list:
    return [dossier_pb2.PresentedDocument(name=d["name"], form=FORMS.get(d.get("form", "original"), 0),
                                          count=d.get("count", 1)) for d in items]


def submission(data: dict) -> dossier_pb2.Submission:
    """A Submission from the desk API's JSON shape (procedure_code, applicant, documents...)."""
    applicant = data.get("applicant") or {}
    quantities = data.get("quantities") or {}
    return dossier_pb2.Submission(
        procedure_code=data.get("procedure_code", ""), applicant=dossier_pb2.Applicant(**applicant),
        channel=CHANNELS.get(data.get("channel", "in_person"), 0), documents=_documents(data.get("documents", [])),
        sets=data.get("sets", 1), pages=quantities.get("pages", 1), copies=quantities.get("copies", 1),
        fee_conditions=data.get("fee_conditions", []))


def unit_event(data: dict) -> event_pb.UnitEvent:
    event = event_pb.UnitEvent(
        idempotency_key=data["idempotency_key"], type=EVENT_TYPES.get(data.get("type"), 0),
        dossier_code=data.get("dossier_code", ""), step=data.get("step") or 0, official=data.get("official", ""),
        note=data.get("note", ""), reason=data.get("reason", ""), proposed_date=data.get("proposed_date", ""),
        documents=_documents(data.get("documents", [])), key_id=data.get("key_id") or "",
        signature=data.get("signature") or "")
    occurred_at = data.get("occurred_at")
    if occurred_at:
        event.occurred_at.FromDatetime(datetime.fromisoformat(occurred_at) if isinstance(occurred_at, str)
                                       else occurred_at)
    return event


def load_signing_key(path: str | Path) -> Ed25519PrivateKey:
    """The unit's private key, as ``motcua keys generate|rotate`` wrote it (PKCS#8 PEM)."""
    key = load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def sign_event(event: dict, unit: str, key_id: str, private_key: Ed25519PrivateKey) -> dict:
    """The event with ``key_id`` and ``signature``: the unit's Ed25519 signature over its canonical
    JSON (``motcua.contracts.signing.unit_event_content``). The same for gRPC and RabbitMQ."""
    signature = signing.sign(private_key, signing.unit_event_content(unit, key_id, event))
    return {**event, "key_id": key_id, "signature": signature}


def as_dict(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


class Client:
    def __init__(self, target: str, token: str, *, timeout: float = 15.0,
                 channel_credentials: grpc.ChannelCredentials | None = None, unit: str | None = None,
                 key_id: str | None = None, signing_key: Ed25519PrivateKey | None = None):
        """``unit``, ``key_id`` and ``signing_key``: the unit's signing key; ``publish`` then signs
        every event with it (the gateway refuses unsigned events unless told otherwise)."""
        if signing_key is not None and not (unit and key_id):
            raise ValueError("a signing key needs its unit and key id")
        self.unit, self.key_id, self.signing_key = unit, key_id, signing_key
        self.channel = (grpc.secure_channel(target, channel_credentials) if channel_credentials
                        else grpc.insecure_channel(target))
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.timeout = timeout
        self.desk = desk_grpc.DeskServiceStub(self.channel)
        self.agency = agency_grpc.AgencyServiceStub(self.channel)
        self.payments = payment_grpc.PaymentServiceStub(self.channel)
        self.catalogue = catalogue_grpc.CatalogueServiceStub(self.channel)
        self.events = event_grpc.EventServiceStub(self.channel)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def _call(self, method, request):
        try:
            return method(request, metadata=self.metadata, timeout=self.timeout)
        except grpc.RpcError as error:
            raise GatewayError(error) from None

    # --- the desk ------------------------------------------------------------------------------
    def check(self, official: str, dossier: dict) -> desk_pb.CheckDossierResponse:
        return self._call(self.desk.CheckDossier, desk_pb.CheckDossierRequest(official=official,
                                                                              submission=submission(dossier)))

    def receive(self, official: str, dossier: dict) -> dossier_pb2.Dossier:
        return self._call(self.desk.ReceiveDossier, desk_pb.ReceiveDossierRequest(
            official=official, submission=submission(dossier))).dossier

    def get(self, official: str, code: str) -> dossier_pb2.Dossier:
        return self._call(self.desk.GetDossier, desk_pb.GetDossierRequest(official=official, code=code)).dossier

    def refuse(self, official: str, code: str, reason: str) -> dossier_pb2.Dossier:
        return self._call(self.desk.RefuseDossier, desk_pb.RefuseDossierRequest(
            official=official, code=code, reason=reason)).dossier

    def request_supplement(self, official: str, code: str, reason: str, documents: list[dict]) -> dossier_pb2.Dossier:
        return self._call(self.desk.RequestSupplement, desk_pb.RequestSupplementRequest(
            official=official, code=code, reason=reason, documents=_documents(documents))).dossier

    def receive_supplement(self, official: str, code: str, documents: list[dict]) -> dossier_pb2.Dossier:
        return self._call(self.desk.ReceiveSupplement, desk_pb.ReceiveSupplementRequest(
            official=official, code=code, documents=_documents(documents))).dossier

    def withdraw(self, official: str, code: str, reason: str) -> dossier_pb2.Dossier:
        return self._call(self.desk.WithdrawDossier, desk_pb.WithdrawDossierRequest(
            official=official, code=code, reason=reason)).dossier

    def return_result(self, official: str, code: str, collected_by: str) -> dossier_pb2.Dossier:
        return self._call(self.desk.ReturnResult, desk_pb.ReturnResultRequest(
            official=official, code=code, collected_by=collected_by)).dossier

    def tracking_book(self, official: str, from_date: str, to_date: str) -> desk_pb.ListTrackingBookResponse:
        return self._call(self.desk.ListTrackingBook, desk_pb.ListTrackingBookRequest(
            official=official, from_date=from_date, to_date=to_date))

    # --- an agency -----------------------------------------------------------------------------
    def workflow(self, official: str, code: str) -> dossier_pb2.Workflow:
        return self._call(self.agency.GetWorkflow, agency_pb.GetWorkflowRequest(official=official,
                                                                                 code=code)).workflow

    def accept_step(self, official: str, code: str, step: int) -> dossier_pb2.Workflow:
        return self._call(self.agency.AcceptHandOver, agency_pb.AcceptHandOverRequest(
            official=official, code=code, step=step)).workflow

    def complete_step(self, official: str, code: str, step: int, result: str = "done", note: str = "",
                      documents: list[dict] = (), reason: str = "") -> dossier_pb2.Workflow:
        results = {"done": agency_pb.STEP_RESULT_DONE, "needs_supplement": agency_pb.STEP_RESULT_NEEDS_SUPPLEMENT,
                   "refuse": agency_pb.STEP_RESULT_REFUSE, "stop": agency_pb.STEP_RESULT_STOP}
        return self._call(self.agency.CompleteStep, agency_pb.CompleteStepRequest(
            official=official, code=code, step=step, result=results.get(result, 0), note=note,
            documents=_documents(documents), reason=reason)).workflow

    def transfer(self, official: str, code: str, note: str = "") -> dossier_pb2.Workflow:
        return self._call(self.agency.TransferDossier, agency_pb.TransferDossierRequest(
            official=official, code=code, note=note)).workflow

    def report_delay(self, official: str, code: str, reason: str, proposed_date: str = "") -> dossier_pb2.Workflow:
        return self._call(self.agency.ReportDelay, agency_pb.ReportDelayRequest(
            official=official, code=code, reason=reason, proposed_date=proposed_date)).workflow

    def request_obligation(self, official: str, code: str, description: str, amount: int) -> dossier_pb2.Workflow:
        return self._call(self.agency.RequestObligation, agency_pb.RequestObligationRequest(
            official=official, code=code, description=description, amount=amount)).workflow

    # --- payments and the catalogue ----------------------------------------------------------------
    def pay(self, official: str, code: str, amount: int, method: str = "cash",
            reference: str = "") -> payment_pb.RecordPaymentResponse:
        methods = {"cash": payment_pb.PAYMENT_METHOD_CASH, "transfer": payment_pb.PAYMENT_METHOD_TRANSFER}
        return self._call(self.payments.RecordPayment, payment_pb.RecordPaymentRequest(
            official=official, code=code, method=methods.get(method, 0), amount=amount, reference=reference))

    def procedure(self, code: str, at: str = "") -> catalogue_pb.Procedure:
        return self._call(self.catalogue.GetProcedure, catalogue_pb.GetProcedureRequest(code=code, at=at)).procedure

    def procedures(self, unit: str = "", field: str = "", query: str = "") -> list:
        return list(self._call(self.catalogue.ListProcedures, catalogue_pb.ListProceduresRequest(
            unit=unit, field=field, query=query)).procedures)

    # --- events --------------------------------------------------------------------------------
    def publish(self, events: list[dict], batch_size: int = 100) -> list[event_pb.EventAck]:
        """Send the unit's events in batches on one stream; one acknowledgement per event."""
        def batches():
            for start in range(0, len(events), batch_size):
                yield event_pb.PublishEventsRequest(events=[unit_event(self._signed(e))
                                                            for e in events[start:start + batch_size]])
        return list(self._call(self.events.PublishEvents, batches()).acks)

    def _signed(self, event: dict) -> dict:
        if self.signing_key is None or event.get("signature"):
            return event
        return sign_event(event, self.unit, self.key_id, self.signing_key)

    def follow(self, after_position: int = 0, types: Iterable[str] = (),
               timeout: float | None = None) -> Iterator[tuple[int, event_pb.FeedEvent]]:
        """The unit's events after ``after_position``, as they come (``timeout``: stop then)."""
        stream = self.events.Subscribe(event_pb.SubscribeRequest(after_position=after_position, types=list(types)),
                                       metadata=self.metadata, timeout=timeout)
        try:
            for message in stream:
                yield message.position, message.event
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise GatewayError(error) from None
        finally:
            stream.cancel()
