"""Between the gateway's protobuf messages and the services' dictionaries (no I/O)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from motcua.contracts.pii import KeyRing, open_payload
from motcua.contracts.refusals import Invalid
from motcua.v1 import (agency_service_pb2 as agency_pb, catalogue_service_pb2 as catalogue_pb, dossier_pb2,
                       event_service_pb2 as event_pb)

CHANNELS = {dossier_pb2.CHANNEL_IN_PERSON: "in_person", dossier_pb2.CHANNEL_ONLINE: "online",
            dossier_pb2.CHANNEL_POST: "post"}
CHANNEL_OF = {name: number for number, name in CHANNELS.items()}
FORMS = {dossier_pb2.DOCUMENT_FORM_ORIGINAL: "original", dossier_pb2.DOCUMENT_FORM_CERTIFIED_COPY: "certified_copy",
         dossier_pb2.DOCUMENT_FORM_COPY: "copy"}
STEP_RESULTS = {agency_pb.STEP_RESULT_DONE: "done", agency_pb.STEP_RESULT_NEEDS_SUPPLEMENT: "needs_supplement",
                agency_pb.STEP_RESULT_REFUSE: "refuse", agency_pb.STEP_RESULT_STOP: "stop"}
UNIT_EVENT_TYPES = {event_pb.UNIT_EVENT_TYPE_STEP_ACCEPTED: "step_accepted",
                    event_pb.UNIT_EVENT_TYPE_RESULT_SIGNED: "result_signed",
                    event_pb.UNIT_EVENT_TYPE_STEP_REFUSED: "step_refused",
                    event_pb.UNIT_EVENT_TYPE_SUPPLEMENT_NEEDED: "supplement_needed",
                    event_pb.UNIT_EVENT_TYPE_DELAY_REPORTED: "delay_reported"}
OUTCOMES = {"accepted": event_pb.EVENT_OUTCOME_ACCEPTED, "duplicate": event_pb.EVENT_OUTCOME_DUPLICATE,
            "rejected": event_pb.EVENT_OUTCOME_REJECTED}


def required(value: str, field: str) -> str:
    if not value or not value.strip():
        raise Invalid(field, "is required")
    return value.strip()


def documents(items, field: str) -> list[dict]:
    parsed = []
    for index, item in enumerate(items):
        if item.form not in FORMS:
            raise Invalid(f"{field}[{index}].form", "must be ORIGINAL, CERTIFIED_COPY or COPY")
        parsed.append({"name": item.name, "form": FORMS[item.form], "count": item.count or 1})
    return parsed


def submission(message) -> dict:
    """A ``Submission`` as the desk's JSON body (unset numbers take the desk's defaults)."""
    applicant = message.applicant
    body = {
        "procedure_code": message.procedure_code,
        "applicant": {"name": applicant.name, "id_number": applicant.id_number, "address": applicant.address,
                      "phone": applicant.phone, **({"email": applicant.email} if applicant.email else {})},
        "channel": CHANNELS.get(message.channel, "in_person"),
        "documents": documents(message.documents, "documents"),
        "sets": message.sets or 1,
        "quantities": {"pages": message.pages or 1, "copies": message.copies or 1},
        "fee_conditions": list(message.fee_conditions),
    }
    if message.channel and message.channel not in CHANNELS:
        raise Invalid("channel", f"unknown channel {message.channel}")
    return body


def struct(data: Any) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    json_format.ParseDict(_jsonable(data or {}), result)
    return result


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def timestamp(value: str | datetime | None) -> timestamp_pb2.Timestamp | None:
    if not value:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(datetime.fromisoformat(value) if isinstance(value, str) else value)
    return stamp


def dossier(view: dict) -> dossier_pb2.Dossier:
    procedure = view.get("procedure") or {}
    return dossier_pb2.Dossier(
        code=view["code"], unit=view["unit"], status=view["status"], status_text=view.get("status_text", ""),
        channel=CHANNEL_OF.get(view.get("channel"), 0), procedure_code=procedure.get("code", ""),
        procedure_version=procedure.get("version") or 0, procedure_name=procedure.get("name", ""),
        handling_agency=procedure.get("handling_agency") or "", received_at=timestamp(view.get("received_at")),
        appointment_date=view.get("appointment_date") or "", clock_stopped=bool(view.get("clock_stopped")),
        fees_outstanding=(view.get("fees") or {}).get("outstanding") or 0,
        result_class=view.get("result_class") or "", remaining=view.get("remaining") or "",
        detail=struct(view))


def workflow(view: dict) -> dossier_pb2.Workflow:
    return dossier_pb2.Workflow(
        code=view["code"], unit=view["unit"], state=view["state"], stage=view.get("stage") or 0,
        due_date=view.get("due_date") or "", clock_stopped=bool(view.get("clock_stopped")),
        overdue_agency=view.get("overdue_agency") or "",
        steps=[dossier_pb2.Step(id=s["id"], stage=s["stage"], agency=s["agency"], state=s["state"],
                                due_date=s.get("due_date") or "", result=s.get("result") or "",
                                result_class=s.get("result_class") or "", remaining=s.get("remaining") or "")
               for s in view.get("steps", [])],
        remaining=view.get("remaining") or "", detail=struct(view))


def procedure(data: dict) -> catalogue_pb.Procedure:
    return catalogue_pb.Procedure(
        code=data["code"], version=data.get("version") or 0, name=data.get("name", ""),
        field=data.get("field") or "", level=str(data.get("level") or ""),
        time_limit=str(data.get("time_limit") or ""), detail=struct(data))


def unit_event(message) -> dict:
    """A ``UnitEvent`` as the mapping ``ingest.parse`` validates (the same as over RabbitMQ)."""
    data = {"idempotency_key": message.idempotency_key, "type": UNIT_EVENT_TYPES.get(message.type, ""),
            "dossier_code": message.dossier_code, "official": message.official,
            "occurred_at": (message.occurred_at.ToDatetime(tzinfo=timezone.utc).isoformat()
                            if message.HasField("occurred_at") else ""),
            "step": message.step or None, "note": message.note, "reason": message.reason,
            "proposed_date": message.proposed_date,
            "documents": [{"name": d.name, "form": FORMS.get(d.form, ""), "count": d.count or 1}
                          for d in message.documents],
            "key_id": message.key_id, "signature": message.signature}
    if message.type not in UNIT_EVENT_TYPES:
        data["type"] = f"<{message.type}>"
    return data


def feed_event(row, pii: KeyRing) -> event_pb.SubscribeResponse:
    """A line of a unit's feed; the numbers it keeps sealed (only the receiving desk's lines hold
    any: ``feed.payload_for``) go to the desk's system opened, over its TLS connection."""
    return event_pb.SubscribeResponse(position=row.position, event=event_pb.FeedEvent(
        id=str(row.event_id), type=row.type, dossier_code=row.dossier, occurred_at=timestamp(row.occurred_at),
        payload=struct(open_payload(row.payload, pii))))
