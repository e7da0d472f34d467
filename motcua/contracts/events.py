"""The event contract: one envelope for every event, and the payload schema of each type.

Every event crosses the broker as this envelope (JSON):
``{id, type, version, occurred_at, unit, correlation_id, payload}``.
Producers validate before writing to their outbox; consumers validate again on receipt,
so a malformed event is caught on both sides and never reaches domain code.
The vocabulary is one list, ``SCHEMAS``: add a type (or a new version of one) here.

A field that is not in the schema (of the envelope or of the payload) is refused, not ignored:
producers build every event against these same schemas (``new_event``), so an unknown field means
a producer speaks a version this consumer does not know (a new field is a new version, as
``dossier.supplement_received`` 2), and dropping it silently would lose what it says; it also
keeps personal data that no consumer needs from travelling (engineering guide, §3).
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Callable, Mapping

EVENTS_EXCHANGE = "motcua.events"
DEAD_LETTER_EXCHANGE = "motcua.dead-letter"
# Where the units' own systems publish their events (routing key ``<unit code>.<event type>``);
# each unit's RabbitMQ user may publish under its own unit code only (the gateway consumes them).
UNITS_EXCHANGE = "motcua.units"
DEAD_LETTER_QUEUE = "motcua.dead-letter"

_TYPE = re.compile(r"^[a-z]+(\.[a-z_]+)+$")
_UNIT = re.compile(r"^\d{3}\.\d{2}\.\d{2}\.H\d{2}$")


# Why a message is not an event, in a few words (the dead letters' metric label; bounded).
INVALID_KINDS = ("too_large", "not_json", "not_object", "envelope", "unknown_type", "payload")
UNKNOWN_TYPE = "unknown"


class EventInvalid(ValueError):
    """An event that breaks the contract; ``field`` names the offending part, ``kind`` (one of
    ``INVALID_KINDS``) what sort of break it is, and ``event_type`` the type the message claims if
    the contract knows it (else ``"unknown"``: the label stays bounded whatever a sender writes)."""

    def __init__(self, field: str, reason: str, kind: str | None = None):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.kind = kind or ("payload" if field.startswith("payload") else "envelope")
        self.event_type = UNKNOWN_TYPE


def shown(value: Any) -> str:
    """A value quoted in a reason: short, and never a long run of digits or text (a reason goes
    to logs and dead letters; an ID or phone number cut in half would escape the masking)."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, (int, float)):
        return repr(value) if abs(value) < 10**6 else f"a number of {len(str(int(abs(value))))} digits"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else f"a string of {len(value)} characters"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} items"
    if isinstance(value, dict):
        return f"an object of {len(value)} fields"
    return f"a {type(value).__name__}"


def _name(key: Any) -> str:
    """A field name from a message, quoted in a reason: bounded."""
    key = str(key)
    return key if len(key) <= 40 else key[:40] + "…"


# --- payload schemas -------------------------------------------------------------------

def _is_date(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10


def _is_instant(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return False
    return parsed.tzinfo is not None


# Each kind: (check, what a valid value is, for the error message).
KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "str": (lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "vnd": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
            "a whole, non-negative amount of VND"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "date": (_is_date, "an ISO date YYYY-MM-DD"),
    "instant": (_is_instant, "an ISO date-time with a time zone"),
    "unit": (lambda v: isinstance(v, str) and bool(_UNIT.match(v)), "a unit code like 000.00.20.H29"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "object": (lambda v: isinstance(v, dict), "an object"),
}


@dataclass(frozen=True)
class Field:
    kind: str
    required: bool = True
    # An object's own fields (``nested``), or the kind of a list's items (``list_of``): what a
    # consumer reads inside them is checked like the rest, before any handler runs.
    schema: "Schema | None" = None
    items: str | None = None


@dataclass(frozen=True)
class Schema:
    fields: Mapping[str, Field]
    description: str = ""

    def validate(self, payload: Any, path: str = "payload") -> None:
        if not isinstance(payload, dict):
            raise EventInvalid(path, "must be an object")
        unknown = sorted(str(key) for key in set(payload) - set(self.fields))
        if unknown:
            raise EventInvalid(f"{path}.{_name(unknown[0])}", "is not part of this event's schema")
        for name, spec in self.fields.items():
            where = f"{path}.{name}"
            if name not in payload or payload[name] is None:
                if spec.required:
                    raise EventInvalid(where, "is required")
                continue
            value = payload[name]
            check, expected = KINDS[spec.kind]
            if not check(value):
                raise EventInvalid(where, f"must be {expected}, got {shown(value)}")
            if spec.schema is not None:
                spec.schema.validate(value, where)
            if spec.items is not None:
                check, expected = KINDS[spec.items]
                for i, item in enumerate(value):
                    if not check(item):
                        raise EventInvalid(f"{where}[{i}]", f"must be {expected}, got {shown(item)}")


def _field(kind: "str | Field") -> Field:
    return kind if isinstance(kind, Field) else Field(kind.rstrip("?"), required=not kind.endswith("?"))


def schema(doc: str, /, **fields: "str | Field") -> Schema:
    """``schema("...", code="str", note="str?")``: a trailing ``?`` marks an optional field."""
    return Schema({name: _field(kind) for name, kind in fields.items()}, doc)


def nested(required: bool = True, /, **fields: "str | Field") -> Field:
    """An object field with fields of its own: ``applicant=nested(name="str", phone="str?")``."""
    return Field("object", required, schema=schema("", **fields))


def list_of(items: str, required: bool = True) -> Field:
    """A list whose items are all of one kind: ``conditions=list_of("str", False)``."""
    return Field("list", required, items=items)


# (type, version) -> payload schema. The single list of events of the platform.
# Every dossier event carries the dossier code; the envelope's ``unit`` is the receiving desk.
SCHEMAS: dict[tuple[str, int], Schema] = {
    # --- catalog ---
    ("catalog.procedure_published", 1): schema(
        "A new version of a procedure was published in the catalogue.",
        code="str", version="int", effective_from="date", name="str", field="str", level="str",
        time_limit="str",
    ),
    ("catalog.procedure_published", 2): schema(
        "A new version of a procedure was published; ``procedure`` is the whole version as the "
        "catalogue answers it (code, version, effective_from, published_at and its content), for the "
        "other services' copy of the catalogue.",
        code="str", version="int", effective_from="date", name="str", field="str", level="str",
        time_limit="str", procedure="object",
    ),
    ("catalog.units_published", 1): schema(
        "A catalogue was loaded: ``units`` is every unit as the catalogue answers it.",
        units="list",
    ),
    ("catalog.units_reorganised", 1): schema(
        "Units merged from ``effective_from``: each of ``transfers`` names the dissolved units, their "
        "successor and the procedures it takes over (``all`` or a list of codes); every service moves "
        "its own dossiers in flight (``motcua.contracts.reorganisations``).",
        name="str", effective_from="date", transfers="list",
    ),
    # --- intake (the desk) ---
    ("dossier.submitted_online", 1): schema(
        "A citizen submitted a dossier online (status 1); a desk officer has to accept or refuse it.",
        code="str", procedure_code="str", procedure_version="int", submitted_at="instant",
    ),
    ("dossier.received", 1): schema(
        "The desk received a complete dossier (status 2): the clock runs from here. ``applicant`` holds "
        "only the name and the contacts notify needs (the phone sealed, ``motcua.contracts.pii``: opened "
        "only by a service with the keys); ``quantities`` the pages and copies fees needs; "
        "``notifications`` (optional) the citizen's choice, ``{channels: [email | sms | zalo], optional: bool}``: "
        "a consumer that does not know a channel leaves it out; without it notify uses SMS.",
        code="str", procedure_code="str", procedure_version="int", channel="str", received_at="instant",
        appointment_date="date", time_limit="str", handling_agency="unit",
        # What intake writes (``Dossier`` in services/intake/dossier.py), no more: the ID number and
        # address stay at the desk.
        applicant=nested(name="str", phone="str?", email="str?"),
        quantities=nested(pages="int?", copies="int?"), secret="str", conditions=list_of("str", False),
        notifications=nested(False, channels=list_of("str"), optional="bool?"),
    ),
    ("dossier.refused", 1): schema(
        "The desk refused the dossier (status 3, Mẫu 03). ``received``: it had been received (the other "
        "services know it); false for an online submission refused before receipt, which they never saw.",
        code="str", reason="str", official="str", refused_at="instant", received="bool?",
    ),
    ("dossier.supplement_requested", 1): schema(
        "The dossier's one supplement request was made (status 5, Mẫu 02); its clock stops.",
        code="str", requested_by="str", documents="list", reason="str", requested_at="instant",
        number="str",
    ),
    ("dossier.supplement_rejected", 1): schema(
        "An agency's supplement request was not made: the dossier's one request is already used.",
        code="str", agency="unit", reason="str", rejected_at="instant",
    ),
    ("dossier.supplement_received", 1): schema(
        "The citizen brought the supplement: the clock runs again and the appointment moves.",
        code="str", received_at="instant", previous_appointment_date="date", appointment_date="date",
    ),
    ("dossier.supplement_received", 2): schema(
        "The citizen brought the supplement: the clock runs again. The new deadline is routing's to "
        "count and announce (``dossier.deadline_changed``).",
        code="str", received_at="instant",
    ),
    ("dossier.withdrawn", 1): schema(
        "The applicant withdrew the dossier (status 7).",
        code="str", reason="str", withdrawn_at="instant",
    ),
    ("dossier.returned", 1): schema(
        "The result was handed to the citizen (status 10), early, on time or late.",
        code="str", returned_at="instant", appointment_date="date", result_class="str",
    ),
    ("dossier.status_changed", 1): schema(
        "The dossier's national status changed (codes 1-10; ``channel`` the national channel code "
        "1-3). ``seq`` numbers the dossier's status changes from 1, without gaps: the national "
        "portal's sync sends them in that order. Intake, which holds the status, is its only source.",
        code="str", seq="int", status="int", previous_status="int?", channel="int", procedure_code="str",
        handling_agency="str", changed_at="instant",
    ),
    # --- routing (the handling agencies) ---
    ("dossier.step_started", 1): schema(
        "An agency accepted the hand-over of a step: the dossier is being processed (status 4).",
        code="str", agency="unit", step="int", started_at="instant", due_date="date?",
    ),
    ("dossier.supplement_needed", 1): schema(
        "A handling agency needs a supplement; intake makes the request if the one allowed is unused.",
        code="str", agency="unit", documents="list", reason="str", official="str", asked_at="instant",
    ),
    ("dossier.obligation_requested", 1): schema(
        "A handling agency asked for a financial obligation (status 6) of ``amount`` VND.",
        code="str", agency="unit", description="str", requested_at="instant", amount="vnd",
    ),
    ("dossier.transferred", 1): schema(
        "The dossier was handed over to the next agency (or agencies, in parallel).",
        code="str", from_agency="str", to_agencies="list", transferred_at="instant",
    ),
    ("dossier.step_completed", 1): schema(
        "An agency finished its step: result done, refuse or stop; early, on time or late.",
        code="str", agency="unit", step="int", result="str", completed_at="instant", result_class="str",
    ),
    ("dossier.at_risk", 1): schema(
        "A step is close to its deadline (a working day by default): a warning to the agency.",
        code="str", agency="unit", step="int", due_date="date", detected_at="instant",
    ),
    ("dossier.step_overdue", 1): schema(
        "A step passed its own deadline while the agency held it.",
        code="str", agency="unit", step="int", due_date="date", detected_at="instant",
    ),
    ("dossier.deadline_changed", 1): schema(
        "Routing, which keeps the dossier's deadline and its clock stops, moved it: the clock stopped "
        "(no ``due_date``) or ran again (the new ``due_date``). Intake and notify keep it as the "
        "appointment date (an apology's later date stands).",
        code="str", due_date="date?", previous_due_date="date?", reason="str", changed_at="instant",
    ),
    ("dossier.overdue", 1): schema(
        "The dossier passed its legal deadline: once per breach, naming the agency at fault.",
        code="str", agency="unit", due_date="date", detected_at="instant",
    ),
    ("dossier.apology_issued", 1): schema(
        "The agency at fault apologised and set a new return date (Mẫu 04); notify sends it to the citizen.",
        code="str", agency="unit", reason="str", original_due_date="date", new_date="date", issued_at="instant",
        official="str",
    ),
    ("dossier.apology_missing", 1): schema(
        "A dossier overdue for a working day still has no apology: flagged to the officials.",
        code="str", agency="unit", overdue_since="instant", detected_at="instant",
    ),
    ("dossier.processed", 1): schema(
        "Processing ended and the dossier is back at the desk: result ``done`` (status 9) or "
        "``stopped`` (status 8).",
        code="str", agency="unit", result="str", processed_at="instant", note="str?",
    ),
    # --- fees ---
    ("fees.charged", 1): schema(
        "Charges were added to a dossier (on receipt, or a later obligation).",
        code="str", amount="vnd", charged_at="instant", items="list?",
    ),
    ("fees.paid", 1): schema(
        "A payment was recorded against a dossier.",
        code="str", amount="vnd", method="str", paid_at="instant", receipt_number="str?",
    ),
    ("fees.payment_cancelled", 1): schema(
        "A receipt was cancelled (it keeps its number): its amount is owed again.",
        code="str", amount="vnd", receipt_number="str", reason="str", cancelled_at="instant",
    ),
    ("fees.refunded", 1): schema(
        "Money was paid back to the citizen (a refused or withdrawn dossier).",
        code="str", amount="vnd", reason="str", refunded_at="instant", receipt_number="str",
    ),
    ("fees.settled", 1): schema(
        "A dossier's balance reached zero: nothing is outstanding.",
        code="str", settled_at="instant",
    ),
}


# --- the envelope ------------------------------------------------------------------------

@dataclass(frozen=True)
class Envelope:
    type: str
    payload: dict
    unit: str
    version: int = 1
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    occurred_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    correlation_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "type": self.type,
            "version": self.version,
            "occurred_at": self.occurred_at.astimezone(timezone.utc).isoformat(),
            "unit": self.unit,
            "correlation_id": self.correlation_id,
            "payload": self.payload,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)


_ENVELOPE_KEYS = {"id", "type", "version", "occurred_at", "unit", "correlation_id", "payload"}
KNOWN_TYPES = frozenset(type_ for type_, _ in SCHEMAS)


def type_label(value: Any) -> str:
    """A metric's event type label: a type of the contract, else ``"unknown"``."""
    return value if isinstance(value, str) and value in KNOWN_TYPES else UNKNOWN_TYPE


def validate(envelope: Envelope) -> Envelope:
    """Check an envelope against the contract; return it unchanged or raise EventInvalid."""
    try:
        uuid.UUID(envelope.id)
    except (ValueError, TypeError, AttributeError):
        raise EventInvalid("id", f"must be a UUID, got {shown(envelope.id)}") from None
    if not isinstance(envelope.type, str) or not _TYPE.match(envelope.type):
        raise EventInvalid("type", f"must look like owner.fact, got {shown(envelope.type)}")
    if not isinstance(envelope.version, int) or isinstance(envelope.version, bool) or envelope.version < 1:
        raise EventInvalid("version", f"must be a positive integer, got {shown(envelope.version)}")
    if not isinstance(envelope.occurred_at, datetime) or envelope.occurred_at.tzinfo is None:
        raise EventInvalid("occurred_at", "must be a date-time with a time zone")
    if not isinstance(envelope.unit, str) or not _UNIT.match(envelope.unit):
        raise EventInvalid("unit", f"must be a unit code like 000.00.20.H29, got {shown(envelope.unit)}")
    # At most 100 characters, as the services cut it (``observability``): it is bound to every log line.
    if (not isinstance(envelope.correlation_id, str) or not envelope.correlation_id.strip()
            or len(envelope.correlation_id) > 100):
        raise EventInvalid("correlation_id", "must be a non-empty string of at most 100 characters")
    known = SCHEMAS.get((envelope.type, envelope.version))
    if known is None:
        raise EventInvalid("type", f"unknown event {shown(envelope.type)} version {shown(envelope.version)}",
                           "unknown_type")
    known.validate(envelope.payload)
    return envelope


def parse(raw: bytes | str | Mapping, max_bytes: int | None = None) -> Envelope:
    """Read an envelope from JSON text (UTF-8 bytes or a string) or a decoded mapping, validating
    everything. ``max_bytes``: a longer text is refused before it is read."""
    if isinstance(raw, (bytes, bytearray, str)):
        size = len(raw) if not isinstance(raw, str) else len(raw.encode("utf-8", "surrogatepass"))
        if max_bytes is not None and size > max_bytes:
            raise EventInvalid("body", f"is {size} bytes, over the limit of {max_bytes}", "too_large")
        if not isinstance(raw, str):
            try:
                raw = bytes(raw).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise EventInvalid("body", f"is not UTF-8 text (byte {exc.start})", "not_json") from None
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise EventInvalid("body", f"is not valid JSON: {exc}", "not_json") from None
        except RecursionError:
            raise EventInvalid("body", "is JSON nested too deep to read", "not_json") from None
    if not isinstance(raw, Mapping):
        raise EventInvalid("body", "must be a JSON object", "not_object")
    event_type = raw.get("type")
    try:
        return _envelope(raw)
    except EventInvalid as invalid:
        invalid.event_type = type_label(event_type)
        raise


def _envelope(raw: Mapping) -> Envelope:
    missing = sorted(_ENVELOPE_KEYS - set(raw))
    if missing:
        raise EventInvalid(missing[0], "is required")
    unknown = sorted(str(key) for key in set(raw) - _ENVELOPE_KEYS)
    if unknown:
        raise EventInvalid(_name(unknown[0]), "is not part of the envelope")
    occurred_at = raw["occurred_at"]
    if not _is_instant(occurred_at):
        raise EventInvalid("occurred_at", f"must be an ISO date-time with a time zone, got {shown(occurred_at)}")
    return validate(Envelope(
        id=raw["id"], type=raw["type"], version=raw["version"],
        occurred_at=datetime.fromisoformat(occurred_at), unit=raw["unit"],
        correlation_id=raw["correlation_id"], payload=raw["payload"],
    ))


def new_event(type: str, payload: dict, unit: str, *, correlation_id: str | None = None,
              occurred_at: datetime | None = None, version: int = 1) -> Envelope:
    """Build and validate an event, ready for the outbox."""
    extra = {}
    if correlation_id:
        extra["correlation_id"] = correlation_id
    if occurred_at is not None:
        extra["occurred_at"] = occurred_at
    return validate(Envelope(type=type, payload=payload, unit=unit, version=version, **extra))
