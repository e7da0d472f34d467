"""The desk's rules of input, free of I/O: what a submission must contain and whether a dossier
is complete for its procedure. The dossier's life cycle is the aggregate's (``dossier``)."""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import date
from typing import Any, Iterable, Mapping, Sequence

from motcua.contracts.calendar import parse_time_limit
from motcua.contracts.documents import Presented, parse_documents  # noqa: F401 (the desk's documents)
from motcua.contracts.documents import count_field as _count, mapping_field as _mapping, text_field as _text
from motcua.contracts.reorganisations import dissolved
from motcua.contracts.refusals import Conflict, Forbidden, Invalid, NotFound, Refusal  # noqa: F401 (the desk's refusals)
from motcua.contracts.text import fold
from motcua.contracts.vocabulary import (
    CHANNELS,
    DOCUMENT_FORM_STRENGTH,
    DOCUMENT_FORM_VI,
)

# The desk's refusals: a field, a reason, an HTTP status; nothing changed.
DeskError = Refusal


# --- input ---------------------------------------------------------------------------------

CCCD = re.compile(r"^[0-9]{12}$")           # ASCII digits only: \d would take any script's digits
PHONE = re.compile(r"^(?:\+84|0)[0-9]{9}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Applicant:
    name: str
    id_number: str
    address: str
    phone: str
    email: str | None = None


def parse_applicant(data: Any) -> Applicant:
    data = _mapping(data, "applicant")
    id_number = _text(data, "id_number", "applicant.id_number")
    if not CCCD.match(id_number):
        raise Invalid("applicant.id_number", "must be a citizen ID (CCCD) of exactly 12 digits")
    phone = re.sub(r"[ .-]", "", _text(data, "phone", "applicant.phone"))
    if not PHONE.match(phone):
        raise Invalid("applicant.phone", "must be a Vietnamese phone number: 0 or +84 then 9 digits")
    phone = "0" + phone[3:] if phone.startswith("+84") else phone   # one form: the national one
    email = _text(data, "email", "applicant.email", required=False, max_length=254)
    if email is not None and not EMAIL.match(email):
        raise Invalid("applicant.email", "is not an e-mail address")
    return Applicant(name=_text(data, "name", "applicant.name", max_length=200),
                     id_number=id_number, address=_text(data, "address", "applicant.address"),
                     phone=phone, email=email)


def parse_channel(value: Any) -> str:
    if not isinstance(value, str) or value not in CHANNELS:
        raise Invalid("channel", f"must be one of {', '.join(CHANNELS)}, got {value!r}")
    return value


# Conditions that exempt from a fee (catalogue exemptions' ``when``), declared by the desk.
FEE_CONDITIONS = ("on_time_registration", "poor_household", "child_under_6", "person_with_disability",
                  "policy_beneficiary")


def parse_conditions(data: Any) -> list[str]:
    if data is None:
        return []
    if not isinstance(data, list) or not all(isinstance(c, str) for c in data):
        raise Invalid("fee_conditions", "must be a list of condition names")
    unknown = sorted(set(data) - set(FEE_CONDITIONS))
    if unknown:
        raise Invalid("fee_conditions", f"unknown condition {unknown[0]!r}; known: {', '.join(FEE_CONDITIONS)}")
    return sorted(set(data))


NOTIFY_CHANNELS = ("email", "sms", "zalo")      # zalo: ZNS messages to the applicant's phone number


def parse_notifications(data: Any, applicant: "Applicant") -> dict:
    """The citizen's choice: channels to be told on, and whether optional messages are wanted
    (legally required ones, like the apology, are always sent)."""
    data = _mapping(data if data is not None else {}, "notifications")
    unknown = sorted(set(data) - {"channels", "optional"})
    if unknown:
        raise Invalid(f"notifications.{unknown[0]}", "is not a notification setting (channels, optional)")
    channels = data.get("channels", ["sms", "email"] if applicant.email else ["sms"])
    if not isinstance(channels, list) or not channels or any(c not in NOTIFY_CHANNELS for c in channels):
        raise Invalid("notifications.channels", f"must be a non-empty list of {', '.join(NOTIFY_CHANNELS)}")
    if "email" in channels and not applicant.email:
        raise Invalid("notifications.channels", "e-mail was chosen but the applicant gave no e-mail address")
    optional = data.get("optional", True)
    if not isinstance(optional, bool):
        raise Invalid("notifications.optional", "must be true or false")
    return {"channels": sorted(set(channels)), "optional": optional}


def parse_quantities(data: Any) -> dict:
    """Pages and copies, for the fees of per-page and per-copy items (both default 1)."""
    data = _mapping(data if data is not None else {}, "quantities")
    unknown = sorted(set(data) - {"pages", "copies"})
    if unknown:
        raise Invalid(f"quantities.{unknown[0]}", "is not a quantity the desk records (pages, copies)")
    return {key: _count(data.get(key, 1), f"quantities.{key}", maximum=10000) for key in ("pages", "copies")}


# --- checking a dossier against its procedure ----------------------------------------------

@dataclass(frozen=True)
class Missing:
    name: str
    form: str
    required: int
    presented: int

    def as_dict(self) -> dict:
        return {"name": self.name, "form": self.form, "required": self.required, "presented": self.presented}

    def guidance(self) -> str:
        """One line of the guidance slip, in Vietnamese."""
        lacking = self.required - self.presented
        return f"{self.name} ({DOCUMENT_FORM_VI[self.form].lower()}): còn thiếu {lacking} bản"


def missing_documents(required: Sequence[Mapping], presented: Iterable[Presented]) -> list[Missing]:
    """Every required document not presented in the right form and number.

    Names match without regard to case and diacritics; a stronger form counts for a weaker one.
    Each sheet counts once: requirements for the strongest forms take sheets first, and each
    takes the weakest sheets that satisfy it, so that one original never serves twice.
    """
    available: dict[str, dict[str, int]] = {}
    for document in presented:
        sheets = available.setdefault(fold(document.name), {})
        sheets[document.form] = sheets.get(document.form, 0) + document.count
    shortfalls: dict[int, Missing] = {}
    order = sorted(range(len(required)), key=lambda i: -DOCUMENT_FORM_STRENGTH[required[i]["form"]])
    for index in order:
        requirement = required[index]
        sheets = available.get(fold(requirement["name"]), {})
        needed = requirement["count"]
        taken = 0
        for form in sorted(sheets, key=DOCUMENT_FORM_STRENGTH.get):
            if DOCUMENT_FORM_STRENGTH[form] < DOCUMENT_FORM_STRENGTH[requirement["form"]] or taken == needed:
                continue
            take = min(sheets[form], needed - taken)
            sheets[form] -= take
            taken += take
        if taken < needed:
            shortfalls[index] = Missing(requirement["name"], requirement["form"], needed, taken)
    return [shortfalls[i] for i in sorted(shortfalls)]


@dataclass(frozen=True)
class CheckResult:
    missing: tuple[Missing, ...]
    sets_required: int
    sets_presented: int

    @property
    def complete(self) -> bool:
        return not self.missing and self.sets_presented >= self.sets_required

    def guidance(self) -> list[str]:
        lines = [m.guidance() for m in self.missing]
        if self.sets_presented < self.sets_required:
            lines.append(f"Số bộ hồ sơ: cần {self.sets_required} bộ, mới có {self.sets_presented} bộ")
        return lines

    def as_dict(self) -> dict:
        return {"complete": self.complete, "missing": [m.as_dict() for m in self.missing],
                "sets_required": self.sets_required, "sets_presented": self.sets_presented,
                "guidance": self.guidance()}


def check(procedure: Mapping, documents: Sequence[Presented], sets: int) -> CheckResult:
    return CheckResult(tuple(missing_documents(procedure["documents"], documents)),
                       procedure.get("sets", 1), sets)


def accepted_at(procedure: Mapping, unit: Mapping) -> None:
    """A procedure is received by the desks of its level only."""
    if not unit.get("desk"):
        raise Invalid("unit", f"{unit['short_name']} has no reception desk")
    if procedure["level"] != unit["kind"]:
        where = {"ward": "UBND phường", "district": "UBND quận"}.get(procedure["level"], procedure["level"])
        raise Invalid("procedure_code", f"{procedure['code']} is received at the desk of the {procedure['level']} "
                                        f"({where}), not at {unit['short_name']}")


def require_receiving(unit: Mapping, day: date, successor: Mapping | None = None) -> None:
    """From a reorganisation's effective date (``day``: the local date) a dissolved desk receives
    nothing; the citizen is told where to go instead."""
    code = dissolved(unit, day)
    if code:
        name = f"{successor['short_name']} ({code})" if successor else code
        raise Conflict("unit", f"{unit['short_name']} no longer receives dossiers from {unit['dissolved_on']} "
                               f"(merged into {name}): submit at {name}")


def handling_agency(procedure: Mapping, unit_code: str) -> str:
    return unit_code if procedure["handling_agency"] == "self" else procedure["handling_agency"]


# --- what citizens see ---------------------------------------------------------------------

SECRET_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"   # no 0/O, 1/I: read aloud at the desk


def new_secret() -> str:
    chars = "".join(secrets.choice(SECRET_ALPHABET) for _ in range(8))
    return f"{chars[:4]}-{chars[4:]}"


def initials(name: str) -> str:
    """"Nguyễn Thị Lan" -> "N. T. L.": enough to recognise one's dossier, nothing more."""
    return " ".join(f"{word[0].upper()}." for word in name.split())


def time_limit_vi(text: str) -> str:
    """A time limit as printed on the forms: "3 ngày làm việc"."""
    return parse_time_limit(text).vietnamese()


@dataclass(frozen=True)
class Submission:
    """A parsed request to receive a dossier: what the applicant hands in, for which procedure."""
    unit: dict
    procedure: dict
    applicant: Applicant
    channel: str
    documents: list
    sets: int
    quantities: dict
    conditions: list
    notifications: dict
