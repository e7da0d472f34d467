"""The catalogue of units and procedures: pure parsing and validation (domain reference §2, §7).

The operator edits ``services/catalog/data/catalogue.yml``; whoever reads that file passes what
``yaml.safe_load`` returned to :func:`parse_catalogue`, which either returns a frozen
:class:`Catalogue` or raises :class:`CatalogueInvalid` listing *every* problem found, each as an
:class:`Issue` that names the entry and the field. Nothing here does I/O.

The vocabulary of the file (keys and enumerated values) is the vocabulary of the dataclasses and
of :meth:`Procedure.content`, so that a procedure version can be stored as JSON, compared with
another version for equality, and read back with :meth:`Procedure.from_content`.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Iterable, Mapping

from motcua.contracts.calendar import TimeLimit, TimeLimitKind, parse_time_limit
from motcua.contracts.remaining import OfficeHours

__all__ = [
    "UNIT_CODE_RE",
    "PROCEDURE_CODE_RE",
    "FEE_ID_RE",
    "SELF",
    "UNIT_KINDS",
    "LEVELS",
    "DOCUMENT_FORMS",
    "FEE_TYPES",
    "FEE_KINDS",
    "CONDITIONS",
    "ONLINE_LEVELS",
    "HANDLING_AGENCY_KINDS",
    "STEP_AGENCY_KINDS",
    "Unit",
    "Document",
    "Tier",
    "FeeItem",
    "Step",
    "Stage",
    "Procedure",
    "Catalogue",
    "Issue",
    "CatalogueInvalid",
    "parse_catalogue",
]

# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------

# QCVN 102:2016/BTTTT unit code V1V2V3.Z1Z2.Y1Y2.MX1X2, e.g. 000.03.20.H29.
UNIT_CODE_RE = re.compile(r"^\d{3}\.\d{2}\.\d{2}\.H\d{2}$")
# National procedure database code, e.g. 2.000815.
PROCEDURE_CODE_RE = re.compile(r"^\d\.\d{6}$")
# Fee item ids: lower-case ASCII words joined by hyphens, e.g. chung-thuc-ban-sao.
FEE_ID_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
# National administrative-division code (province 2, district 3, ward 5 digits).
ADMIN_CODE_RE = re.compile(r"^\d{2,5}$")
ISO_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

SELF = "self"  # the unit whose desk received the dossier

UNIT_KINDS = ("district", "ward", "office", "agency")
LEVELS = ("ward", "district")
DOCUMENT_FORMS = ("original", "certified_copy", "copy")
FEE_TYPES = ("phi", "le_phi")
FEE_KINDS = ("flat", "per_page", "per_copy", "exemption")
# Conditions under which an exemption applies: a fixed list the intake desk knows how to ask about.
CONDITIONS = (
    "on_time_registration",
    "poor_household",
    "child_under_6",
    "person_with_disability",
    "policy_beneficiary",
)
ONLINE_LEVELS = ("none", "partial", "full")
HANDLING_AGENCY_KINDS = ("office", "agency")
STEP_AGENCY_KINDS = ("office", "agency", "district", "ward")

_UNIT_REQUIRED = ("code", "name", "short_name", "kind", "desk")
_UNIT_OPTIONAL = ("parent", "admin_code", "address", "office_hours")
_PROCEDURE_REQUIRED = (
    "code",
    "name",
    "field",
    "level",
    "submitted_at",
    "handling_agency",
    "legal_basis",
    "time_limit",
    "documents",
    "sets",
    "fees",
    "one_stop",
    "inter_agency",
    "steps",
    "online_level",
    "effective_from",
)
_CONTENT_KEYS = tuple(k for k in _PROCEDURE_REQUIRED if k not in ("code", "effective_from"))
_DOCUMENT_KEYS = ("name", "form", "count")
_FEE_COMMON = ("id", "type", "name", "kind")
# Keys each fee kind requires beyond the common ones, and those it may have.
_FEE_REQUIRED = {
    "flat": ("amount",),
    "per_copy": ("amount",),
    "per_page": ("tiers",),
    "exemption": ("waives", "when", "description"),
}
_FEE_OPTIONAL = {
    "flat": ("description",),
    "per_copy": ("description",),
    "per_page": ("cap_per_copy", "description"),
    "exemption": (),
}
_TIER_KEYS = ("from_page", "amount")
_STEP_KEYS = ("agency", "days")


# --------------------------------------------------------------------------------------------
# The catalogue as values
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """A unit: the district, a ward, a district office, or an outside agency (domain §2)."""

    code: str  # QCVN 102:2016 shape
    name: str
    short_name: str
    kind: str  # one of UNIT_KINDS
    parent: str | None  # code of the parent unit
    admin_code: str | None  # national administrative-division code
    desk: bool  # has a reception-and-return desk
    address: str | None
    office_hours: str | None = None  # "07:30-11:30, 13:00-17:00"; None: the default hours (remaining.py)


@dataclass(frozen=True)
class Document:
    """One required document of a dossier, as Mẫu 01 and Mẫu 02 list it."""

    name: str
    form: str  # one of DOCUMENT_FORMS
    count: int


@dataclass(frozen=True)
class Tier:
    """From page ``from_page`` on, each page costs ``amount`` VND (until the next tier)."""

    from_page: int
    amount: int


@dataclass(frozen=True)
class FeeItem:
    """A fee (phí) or charge (lệ phí), or an exemption that waives another item of the procedure."""

    id: str
    type: str  # one of FEE_TYPES
    name: str
    kind: str  # one of FEE_KINDS
    amount: int | None = None  # flat: the amount; per_copy: per copy
    tiers: tuple[Tier, ...] = ()  # per_page only
    cap_per_copy: int | None = None  # per_page only
    waives: str | None = None  # exemption: id of the waived item
    when: str | None = None  # exemption: one of CONDITIONS
    description: str | None = None  # required for an exemption, optional otherwise

    def to_dict(self) -> dict[str, Any]:
        """The item in the file's vocabulary, with only the keys its kind uses."""
        out: dict[str, Any] = {"id": self.id, "type": self.type, "name": self.name, "kind": self.kind}
        if self.kind in ("flat", "per_copy"):
            out["amount"] = self.amount
        elif self.kind == "per_page":
            out["tiers"] = [{"from_page": t.from_page, "amount": t.amount} for t in self.tiers]
            if self.cap_per_copy is not None:
                out["cap_per_copy"] = self.cap_per_copy
        elif self.kind == "exemption":
            out["waives"] = self.waives
            out["when"] = self.when
        if self.description is not None:
            out["description"] = self.description
        return out


@dataclass(frozen=True)
class Step:
    """One agency's part of the workflow and its share of the time limit, in working days."""

    agency: str  # SELF or a unit code
    days: int


@dataclass(frozen=True)
class Stage:
    """Stages run in sequence; a parallel stage's steps run at once and it lasts its longest step."""

    steps: tuple[Step, ...]
    parallel: bool = False

    @property
    def days(self) -> int:
        return max((s.days for s in self.steps), default=0)

    def to_dict(self) -> dict[str, Any]:
        if self.parallel:
            return {"parallel": [{"agency": s.agency, "days": s.days} for s in self.steps]}
        (step,) = self.steps
        return {"agency": step.agency, "days": step.days}


@dataclass(frozen=True)
class Procedure:
    """One version of an administrative procedure, in force from ``effective_from``."""

    code: str
    name: str
    field: str  # lĩnh vực
    level: str  # one of LEVELS
    submitted_at: str
    handling_agency: str  # SELF or a unit code of kind office or agency
    legal_basis: tuple[str, ...]
    time_limit: str  # canonical text, str(TimeLimit)
    documents: tuple[Document, ...]
    sets: int
    fees: tuple[FeeItem, ...]
    one_stop: bool
    inter_agency: bool
    steps: tuple[Stage, ...]
    online_level: str  # one of ONLINE_LEVELS
    effective_from: date

    @property
    def key(self) -> tuple[str, date]:
        return (self.code, self.effective_from)

    def limit(self) -> TimeLimit:
        """The time limit as a value (always parses: it was validated on construction)."""
        return parse_time_limit(self.time_limit)

    def total_step_days(self) -> int:
        """Working days the workflow plans: the sum of the stages, a parallel one its longest."""
        return sum(stage.days for stage in self.steps)

    def agencies(self) -> tuple[str, ...]:
        """Distinct agencies of the workflow in order of first appearance."""
        seen: dict[str, None] = {}
        for stage in self.steps:
            for step in stage.steps:
                seen.setdefault(step.agency, None)
        return tuple(seen)

    def fee(self, fee_id: str) -> FeeItem | None:
        return next((f for f in self.fees if f.id == fee_id), None)

    def content(self) -> dict[str, Any]:
        """Everything but code and effective_from, JSON-serialisable, in the file's vocabulary."""
        return {
            "name": self.name,
            "field": self.field,
            "level": self.level,
            "submitted_at": self.submitted_at,
            "handling_agency": self.handling_agency,
            "legal_basis": list(self.legal_basis),
            "time_limit": self.time_limit,
            "documents": [{"name": d.name, "form": d.form, "count": d.count} for d in self.documents],
            "sets": self.sets,
            "fees": [f.to_dict() for f in self.fees],
            "one_stop": self.one_stop,
            "inter_agency": self.inter_agency,
            "steps": [stage.to_dict() for stage in self.steps],
            "online_level": self.online_level,
        }

    @classmethod
    def from_content(cls, code: str, effective_from: date, content: dict) -> "Procedure":
        """Inverse of :meth:`content`. Validates the content on its own (references to units
        are not checked: that needs the catalogue); raises :class:`CatalogueInvalid`."""
        issues = _Issues()
        entry = f"procedure {code}"
        if not isinstance(content, Mapping):
            issues.add(entry, "", f"content must be a mapping, got {_describe(content)}")
            raise CatalogueInvalid(issues.items)
        extra = [k for k in ("code", "effective_from") if k in content]
        for key in extra:
            issues.add(entry, str(key), "not part of a procedure's content; pass it as an argument")
        raw = {k: v for k, v in content.items() if k not in extra}
        raw["code"] = code
        raw["effective_from"] = effective_from
        procedure = _parse_procedure(issues, entry, raw, units=None)
        if issues.items or procedure is None:
            raise CatalogueInvalid(issues.items)
        return procedure


@dataclass(frozen=True)
class Catalogue:
    units: tuple[Unit, ...]
    procedures: tuple[Procedure, ...]

    def unit(self, code: str) -> Unit | None:
        return next((u for u in self.units if u.code == code), None)

    def desks(self) -> tuple[Unit, ...]:
        """Units with a reception-and-return desk."""
        return tuple(u for u in self.units if u.desk)

    def versions(self, code: str) -> tuple[Procedure, ...]:
        """Every version of a procedure, oldest first."""
        return tuple(sorted((p for p in self.procedures if p.code == code), key=lambda p: p.effective_from))

    def in_force(self, code: str, on: date) -> Procedure | None:
        """The version in force on a date: the latest whose effective_from is not after it."""
        current = None
        for version in self.versions(code):
            if version.effective_from <= on:
                current = version
        return current


@dataclass(frozen=True)
class Issue:
    """One validation failure: which entry, which field (a path inside it), and why."""

    entry: str  # e.g. "procedures[3] 2.000815" or "units[5] 000.03.20.H29"
    field: str  # e.g. "fees[1].tiers[0].amount"; "" for the entry as a whole
    reason: str

    def __str__(self) -> str:
        if self.field:
            return f"{self.entry}: {self.field}: {self.reason}"
        return f"{self.entry}: {self.reason}"


class CatalogueInvalid(ValueError):
    """The catalogue (or a procedure's content) has issues; ``issues`` lists all of them."""

    def __init__(self, issues: Iterable[Issue]):
        self.issues: list[Issue] = list(issues)
        count = len(self.issues)
        lines = "\n".join(f"  {issue}" for issue in self.issues)
        super().__init__(f"{count} issue{'' if count == 1 else 's'} in the catalogue:\n{lines}")


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def parse_catalogue(data: object) -> Catalogue:
    """Validate what ``yaml.safe_load`` returned; collect every issue before raising."""
    issues = _Issues()
    top = "catalogue"
    if not isinstance(data, Mapping):
        issues.add(top, "", f"must be a mapping with the keys units and procedures, got {_describe(data)}")
        raise CatalogueInvalid(issues.items)
    for key in data:
        if key not in ("units", "procedures"):
            issues.add(top, str(key), "unknown key; expected units and procedures")
    raw_units = _top_list(issues, data, "units")
    raw_procedures = _top_list(issues, data, "procedures")

    # Units: each on its own, then across them (duplicates, parents).
    drafts = [_parse_unit(issues, index, raw) for index, raw in enumerate(raw_units)]
    unit_index = _check_units(issues, drafts)

    # Procedures: each on its own with references to units, then duplicates across versions.
    procedures: list[Procedure] = []
    first_seen: dict[tuple[str, date], str] = {}
    for index, raw in enumerate(raw_procedures):
        entry = _entry("procedures", index, raw)
        procedure = _parse_procedure(issues, entry, raw, units=unit_index)
        if procedure is None:
            continue
        if procedure.key in first_seen:
            issues.add(
                entry,
                "effective_from",
                f"{first_seen[procedure.key]} already has code {procedure.code} in force from "
                f"{procedure.effective_from.isoformat()}; a later version needs a later effective_from",
            )
        else:
            first_seen[procedure.key] = entry
        procedures.append(procedure)

    if issues.items:
        raise CatalogueInvalid(issues.items)
    units = tuple(draft.build() for draft in drafts)
    return Catalogue(units=units, procedures=tuple(procedures))


class _Issues:
    def __init__(self) -> None:
        self.items: list[Issue] = []

    def add(self, entry: str, field: str, reason: str) -> None:
        self.items.append(Issue(entry, field, reason))


class _Invalid:
    """Marks a value that failed validation (None is a valid value of optional fields)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<invalid>"


_BAD: Any = _Invalid()


def _describe(value: object) -> str:
    """How a wrong value is shown in a reason: its type, and the value when short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, (int, float)):
        return f"{value!r} (a number)"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"{shown!r} (text)"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, datetime):
        return f"{value.isoformat()} (a date and time)"
    if isinstance(value, date):
        return f"{value.isoformat()} (a date)"
    return type(value).__name__


def _a(word: str) -> str:
    """'a ward', 'an office'."""
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def _entry(section: str, index: int, raw: object) -> str:
    code = raw.get("code") if isinstance(raw, Mapping) else None
    if isinstance(code, str) and code.strip():
        return f"{section}[{index}] {code.strip()}"
    return f"{section}[{index}]"


def _top_list(issues: _Issues, data: Mapping, key: str) -> list:
    if key not in data:
        issues.add("catalogue", key, "missing")
        return []
    value = data[key]
    if not isinstance(value, list):
        issues.add("catalogue", key, f"must be a list, got {_describe(value)}")
        return []
    return value


class _Reader:
    """Reads one mapping of the file: records unknown, missing and ill-typed keys as issues."""

    def __init__(
        self,
        issues: _Issues,
        entry: str,
        path: str,
        raw: object,
        required: Iterable[str],
        optional: Iterable[str] = (),
        what: str = "entry",
    ):
        self.issues = issues
        self.entry = entry
        self.path = path  # "" or e.g. "fees[1]"
        self.raw: Mapping = raw if isinstance(raw, Mapping) else {}
        self.ok = isinstance(raw, Mapping)
        if not self.ok:
            self.add("", f"each {what} must be a mapping of keys, got {_describe(raw)}")
            return
        required = tuple(required)
        optional = tuple(optional)
        allowed = required + optional
        for key in self.raw:
            if key not in allowed:
                self.add(str(key), f"unknown key; a {what} has the keys {', '.join(allowed)}")
        for key in required:
            if key not in self.raw:
                self.add(key, "missing")

    def field(self, key: str) -> str:
        if not key:
            return self.path
        return f"{self.path}.{key}" if self.path else key

    def add(self, key: str, reason: str) -> None:
        self.issues.add(self.entry, self.field(key), reason)

    # Each reader returns the value, None for an absent optional key (or explicit null where
    # null is allowed), or _BAD after recording an issue.

    def text(self, key: str, *, nullable: bool = False) -> Any:
        if key not in self.raw:
            return None if nullable else _BAD
        return self.text_value(key, self.raw[key], nullable=nullable)

    def text_value(self, key: str, value: object, *, nullable: bool = False) -> Any:
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            self.add(key, f"must be text, got {_describe(value)}")
            return _BAD
        value = unicodedata.normalize("NFC", value).strip()
        if not value:
            self.add(key, "must not be empty")
            return _BAD
        return value

    def office_hours(self, key: str) -> Any:
        """Periods as ``OfficeHours`` reads them, kept in its canonical form; None when absent."""
        value = self.text(key, nullable=True)
        if value in (None, _BAD):
            return value
        try:
            return str(OfficeHours.parse(value))
        except ValueError as error:
            self.add(key, str(error))
            return _BAD

    def choice(self, key: str, choices: tuple[str, ...]) -> Any:
        value = self.text(key)
        if value is _BAD:
            return _BAD
        if value not in choices:
            self.add(key, f"must be one of {', '.join(choices)}; got {value!r}")
            return _BAD
        return value

    def pattern(self, key: str, regex: re.Pattern[str], example: str, *, nullable: bool = False) -> Any:
        value = self.text(key, nullable=nullable)
        if value is None or value is _BAD:
            return value
        if not regex.fullmatch(value):
            self.add(key, f"must look like {example}; got {value!r}")
            return _BAD
        return value

    def boolean(self, key: str) -> Any:
        if key not in self.raw:
            return _BAD
        value = self.raw[key]
        if not isinstance(value, bool):
            self.add(key, f"must be true or false, got {_describe(value)}")
            return _BAD
        return value

    def whole(self, key: str, minimum: int, *, nullable: bool = False, vnd: bool = False) -> Any:
        if key not in self.raw:
            return None if nullable else _BAD
        return _whole(self, key, self.raw[key], minimum, nullable=nullable, vnd=vnd)

    def items(self, key: str, *, at_least: int = 0) -> Any:
        if key not in self.raw:
            return _BAD
        value = self.raw[key]
        if not isinstance(value, list):
            self.add(key, f"must be a list, got {_describe(value)}")
            return _BAD
        if len(value) < at_least:
            self.add(key, f"must have at least {at_least} item{'' if at_least == 1 else 's'}")
            return _BAD
        return value

    def iso_date(self, key: str) -> Any:
        if key not in self.raw:
            return _BAD
        value = self.raw[key]
        # YAML reads an unquoted 2026-01-01 as a date; a quoted one is text. Both are fine.
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        if isinstance(value, str) and ISO_DATE_RE.fullmatch(value.strip()):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
        self.add(key, f"must be a date written YYYY-MM-DD, got {_describe(value)}")
        return _BAD


def _whole(
    reader: _Reader, key: str, value: object, minimum: int, *, nullable: bool = False, vnd: bool = False
) -> Any:
    if value is None and nullable:
        return None
    what = "a whole number of VND" if vnd else "a whole number"
    if isinstance(value, bool) or not isinstance(value, int):
        shown = repr(value) if isinstance(value, float) else _describe(value)
        reader.add(key, f"must be {what}, got {shown}")
        return _BAD
    if value < minimum:
        reader.add(key, f"must be {what} of at least {minimum}, got {value}")
        return _BAD
    return value


def _ok(*values: Any) -> bool:
    return all(v is not _BAD for v in values)


# ---- units ---------------------------------------------------------------------------------


@dataclass
class _UnitDraft:
    entry: str
    values: dict[str, Any]  # field -> value or _BAD

    def build(self) -> Unit:
        return Unit(**self.values)


def _parse_unit(issues: _Issues, index: int, raw: object) -> _UnitDraft:
    entry = _entry("units", index, raw)
    r = _Reader(issues, entry, "", raw, _UNIT_REQUIRED, _UNIT_OPTIONAL, what="unit")
    if not r.ok:
        return _UnitDraft(entry, {key: _BAD for key in (*_UNIT_REQUIRED, *_UNIT_OPTIONAL)})
    values = {
        "code": r.pattern("code", UNIT_CODE_RE, "000.03.20.H29"),
        "name": r.text("name"),
        "short_name": r.text("short_name"),
        "kind": r.choice("kind", UNIT_KINDS),
        "parent": r.pattern("parent", UNIT_CODE_RE, "000.00.20.H29", nullable=True),
        "admin_code": r.pattern("admin_code", ADMIN_CODE_RE, "764 or 26896", nullable=True),
        "desk": r.boolean("desk"),
        "address": r.text("address", nullable=True),
        "office_hours": r.office_hours("office_hours"),
    }
    return _UnitDraft(entry, values)


@dataclass(frozen=True)
class _UnitIndex:
    """What procedures need to know of the units to check their references."""

    kinds: Mapping[str, str | None]  # code -> kind (None when the kind itself is invalid)
    desk_kinds: frozenset[str]  # kinds of the units that have a desk


def _check_units(issues: _Issues, drafts: list[_UnitDraft]) -> _UnitIndex:
    """Duplicates and parents across units."""
    kinds: dict[str, str | None] = {}
    first_code: dict[str, str] = {}
    first_admin: dict[str, str] = {}
    for draft in drafts:
        code = draft.values["code"]
        if code is _BAD:
            continue
        if code in first_code:
            issues.add(draft.entry, "code", f"duplicate unit code; {first_code[code]} has it already")
            continue
        first_code[code] = draft.entry
        kind = draft.values["kind"]
        kinds[code] = None if kind is _BAD else kind
        admin = draft.values["admin_code"]
        if admin not in (None, _BAD):
            if admin in first_admin:
                issues.add(
                    draft.entry, "admin_code", f"duplicate admin_code; {first_admin[admin]} has it already"
                )
            else:
                first_admin[admin] = draft.entry
    for draft in drafts:
        kind, parent = draft.values["kind"], draft.values["parent"]
        if kind is _BAD or parent is _BAD:
            continue
        if parent is None:
            if kind in ("ward", "office"):
                issues.add(draft.entry, "parent", f"a unit of kind {kind} needs its parent district")
            continue
        if parent == draft.values["code"]:
            issues.add(draft.entry, "parent", "a unit cannot be its own parent")
            continue
        if parent not in kinds:
            issues.add(draft.entry, "parent", f"no unit has the code {parent}")
            continue
        parent_kind = kinds[parent]
        if kind == "district":
            issues.add(draft.entry, "parent", "a district has no parent unit here; use null")
        elif parent_kind is not None and parent_kind != "district":
            issues.add(
                draft.entry,
                "parent",
                f"the parent of {_a(kind)} must be a district; {parent} is {_a(parent_kind)}",
            )
    desk_kinds = frozenset(
        d.values["kind"] for d in drafts if d.values["desk"] is True and d.values["kind"] is not _BAD
    )
    return _UnitIndex(kinds=kinds, desk_kinds=desk_kinds)


# ---- procedures ----------------------------------------------------------------------------


def _parse_procedure(
    issues: _Issues, entry: str, raw: object, units: _UnitIndex | None
) -> Procedure | None:
    """One procedure version; with ``units`` its references to units are checked too."""
    before = len(issues.items)
    r = _Reader(issues, entry, "", raw, _PROCEDURE_REQUIRED, what="procedure")
    if not r.ok:
        return None
    code = r.pattern("code", PROCEDURE_CODE_RE, "2.000815")
    name = r.text("name")
    field_ = r.text("field")
    level = r.choice("level", LEVELS)
    submitted_at = r.text("submitted_at")
    handling_agency = _agency(
        r, "handling_agency", r.raw.get("handling_agency", _BAD), units, HANDLING_AGENCY_KINDS
    )
    legal_basis = _legal_basis(r)
    limit = _time_limit(r)
    documents = _documents(r)
    sets = r.whole("sets", 1)
    fees = _fees(r)
    one_stop = r.boolean("one_stop")
    inter_agency = r.boolean("inter_agency")
    steps = _stages(r, units)
    online_level = r.choice("online_level", ONLINE_LEVELS)
    effective_from = r.iso_date("effective_from")

    if steps is not _BAD:
        if inter_agency is not _BAD:
            _check_inter_agency(r, inter_agency, steps)
        if limit is not _BAD:
            _check_durations(r, limit, steps)
    if units is not None and level is not _BAD:
        _check_desks(r, level, units)

    if len(issues.items) != before:
        return None
    assert _ok(code, name, field_, level, submitted_at, handling_agency, legal_basis, limit, documents,
               sets, fees, one_stop, inter_agency, steps, online_level, effective_from)
    return Procedure(
        code=code,
        name=name,
        field=field_,
        level=level,
        submitted_at=submitted_at,
        handling_agency=handling_agency,
        legal_basis=legal_basis,
        time_limit=str(limit),
        documents=documents,
        sets=sets,
        fees=fees,
        one_stop=one_stop,
        inter_agency=inter_agency,
        steps=steps,
        online_level=online_level,
        effective_from=effective_from,
    )


def _agency(
    r: _Reader, key: str, value: object, units: _UnitIndex | None, allowed: tuple[str, ...]
) -> Any:
    if value is _BAD:  # missing: already reported
        return _BAD
    value = r.text_value(key, value)
    if value is _BAD:
        return _BAD
    if value == SELF:
        return value
    if not UNIT_CODE_RE.fullmatch(value):
        r.add(key, f"must be {SELF!r} or a unit code like 000.25.20.H29; got {value!r}")
        return _BAD
    if units is None:
        return value
    if value not in units.kinds:
        r.add(key, f"no unit has the code {value}")
        return _BAD
    kind = units.kinds[value]
    if kind is not None and kind not in allowed:
        r.add(key, f"unit {value} is {_a(kind)}; expected {SELF!r} or a unit of kind {' or '.join(allowed)}")
        return _BAD
    return value


def _legal_basis(r: _Reader) -> Any:
    items = r.items("legal_basis", at_least=1)
    if items is _BAD:
        return _BAD
    out = [r.text_value(f"legal_basis[{i}]", v) for i, v in enumerate(items)]
    return tuple(out) if _ok(*out) else _BAD


def _time_limit(r: _Reader) -> Any:
    text = r.text("time_limit")
    if text is _BAD:
        return _BAD
    try:
        return parse_time_limit(text)
    except ValueError as exc:
        r.add("time_limit", str(exc))
        return _BAD


def _documents(r: _Reader) -> Any:
    items = r.items("documents", at_least=1)
    if items is _BAD:
        return _BAD
    out = []
    for i, raw in enumerate(items):
        d = _Reader(r.issues, r.entry, f"documents[{i}]", raw, _DOCUMENT_KEYS, what="document")
        if not d.ok:
            out.append(_BAD)
            continue
        name, form, count = d.text("name"), d.choice("form", DOCUMENT_FORMS), d.whole("count", 1)
        out.append(Document(name, form, count) if _ok(name, form, count) else _BAD)
    return tuple(out) if _ok(*out) else _BAD


def _fees(r: _Reader) -> Any:
    items = r.items("fees")
    if items is _BAD:
        return _BAD
    out: list[Any] = []
    for i, raw in enumerate(items):
        out.append(_fee(r, i, raw))
    valid = [f for f in out if f is not _BAD]

    # Ids unique; exemptions waive a non-exemption item of the same procedure and type.
    seen: dict[str, int] = {}
    for i, item in enumerate(out):
        if item is _BAD:
            continue
        if item.id in seen:
            r.add(f"fees[{i}].id", f"duplicate fee id {item.id!r}; fees[{seen[item.id]}] has it already")
            out[i] = _BAD
        else:
            seen[item.id] = i
    by_id = {f.id: f for f in valid}
    for i, item in enumerate(out):
        if item is _BAD or item.kind != "exemption":
            continue
        target = by_id.get(item.waives)
        if item.waives == item.id:
            r.add(f"fees[{i}].waives", "an exemption cannot waive itself")
            out[i] = _BAD
        elif target is None:
            # The target may exist but be invalid itself; say so without a second guess.
            raw_ids = [f.get("id") for f in items if isinstance(f, Mapping)]
            if item.waives in raw_ids:
                continue
            r.add(f"fees[{i}].waives", f"no fee item of this procedure has the id {item.waives!r}")
            out[i] = _BAD
        elif target.kind == "exemption":
            r.add(f"fees[{i}].waives", f"{item.waives!r} is itself an exemption; waive a fee item")
            out[i] = _BAD
        elif target.type != item.type:
            r.add(
                f"fees[{i}].type",
                f"must match the waived item {item.waives!r}, which is {target.type}; "
                "phí and lệ phí are kept apart",
            )
            out[i] = _BAD
    return tuple(out) if _ok(*out) else _BAD


def _fee(r: _Reader, i: int, raw: object) -> Any:
    path = f"fees[{i}]"
    kind_value = raw.get("kind") if isinstance(raw, Mapping) else None
    if isinstance(kind_value, str) and kind_value.strip() in _FEE_REQUIRED:
        kind_name = kind_value.strip()
        required = _FEE_COMMON + _FEE_REQUIRED[kind_name]
        optional = _FEE_OPTIONAL[kind_name]
        what = f"fee item of kind {kind_name}"
    else:
        # Unknown kind: check only the common keys; the kind's own issue is reported below.
        kind_name = None
        required = _FEE_COMMON
        optional = tuple({k for ks in (*_FEE_REQUIRED.values(), *_FEE_OPTIONAL.values()) for k in ks})
        what = "fee item"
    f = _Reader(r.issues, r.entry, path, raw, required, optional, what=what)
    if not f.ok:
        return _BAD
    fee_id = f.pattern("id", FEE_ID_RE, "chung-thuc-ban-sao (lower-case words and hyphens)")
    fee_type = f.choice("type", FEE_TYPES)
    name = f.text("name")
    kind = f.choice("kind", FEE_KINDS)
    if kind_name is None:
        return _BAD
    amount: Any = None
    tiers: Any = ()
    cap: Any = None
    waives: Any = None
    when: Any = None
    if kind_name in ("flat", "per_copy"):
        amount = f.whole("amount", 0, vnd=True)
    elif kind_name == "per_page":
        tiers = _tiers(f)
        cap = f.whole("cap_per_copy", 0, nullable=True, vnd=True)
        if cap is not None and cap is not _BAD and cap == 0:
            f.add("cap_per_copy", "a cap of 0 VND makes the fee free; remove the item instead")
            cap = _BAD
    else:
        waives = f.pattern("waives", FEE_ID_RE, "the id of another fee item")
        when = f.choice("when", CONDITIONS)
    description = f.text("description", nullable=kind_name != "exemption")
    if not _ok(fee_id, fee_type, name, kind, amount, tiers, cap, waives, when, description):
        return _BAD
    return FeeItem(
        id=fee_id,
        type=fee_type,
        name=name,
        kind=kind,
        amount=amount,
        tiers=tiers,
        cap_per_copy=cap,
        waives=waives,
        when=when,
        description=description,
    )


def _tiers(f: _Reader) -> Any:
    items = f.items("tiers", at_least=1)
    if items is _BAD:
        return _BAD
    out: list[Any] = []
    for j, raw in enumerate(items):
        t = _Reader(f.issues, f.entry, f.field(f"tiers[{j}]"), raw, _TIER_KEYS, what="tier")
        if not t.ok:
            out.append(_BAD)
            continue
        from_page, amount = t.whole("from_page", 1), t.whole("amount", 0, vnd=True)
        out.append(Tier(from_page, amount) if _ok(from_page, amount) else _BAD)
    valid = [(j, t) for j, t in enumerate(out) if t is not _BAD]
    if valid and valid[0][0] == 0 and valid[0][1].from_page != 1:
        f.add("tiers[0].from_page", f"the first tier starts at page 1, got {valid[0][1].from_page}")
        return _BAD
    for (_, prev), (j, tier) in zip(valid, valid[1:]):
        if tier.from_page <= prev.from_page:
            f.add(
                f"tiers[{j}].from_page",
                f"must be greater than the previous tier's from_page {prev.from_page}, got {tier.from_page}",
            )
            return _BAD
    return tuple(out) if _ok(*out) else _BAD


def _stages(r: _Reader, units: _UnitIndex | None) -> Any:
    items = r.items("steps", at_least=1)
    if items is _BAD:
        return _BAD
    out: list[Any] = []
    for i, raw in enumerate(items):
        path = f"steps[{i}]"
        if isinstance(raw, Mapping) and "parallel" in raw:
            s = _Reader(r.issues, r.entry, path, raw, ("parallel",), what="parallel stage")
            group = s.items("parallel", at_least=2)
            if group is _BAD:
                out.append(_BAD)
                continue
            steps = [_step(r, f"{path}.parallel[{j}]", raw_step, units) for j, raw_step in enumerate(group)]
            out.append(Stage(tuple(steps), parallel=True) if _ok(*steps) else _BAD)
        else:
            step = _step(r, path, raw, units)
            out.append(Stage((step,), parallel=False) if step is not _BAD else _BAD)
    return tuple(out) if _ok(*out) else _BAD


def _step(r: _Reader, path: str, raw: object, units: _UnitIndex | None) -> Any:
    s = _Reader(r.issues, r.entry, path, raw, _STEP_KEYS, what="step (or a stage with parallel)")
    if not s.ok:
        return _BAD
    agency = _agency(s, "agency", s.raw.get("agency", _BAD), units, STEP_AGENCY_KINDS)
    days = s.whole("days", 0)
    return Step(agency, days) if _ok(agency, days) else _BAD


def _check_inter_agency(r: _Reader, inter_agency: bool, stages: tuple[Stage, ...]) -> None:
    agencies = {step.agency for stage in stages for step in stage.steps}
    if inter_agency and len(agencies) < 2:
        r.add("inter_agency", "an inter-agency procedure needs at least two distinct agencies in its steps")
    if not inter_agency and (len(stages) != 1 or len(stages[0].steps) != 1):
        r.add(
            "inter_agency",
            f"false requires exactly one stage with one step; the steps have {len(stages)} stage(s) and "
            f"{sum(len(s.steps) for s in stages)} step(s) "
            "(set inter_agency: true for a multi-agency workflow)",
        )


def _check_durations(r: _Reader, limit: TimeLimit, stages: tuple[Stage, ...]) -> None:
    if limit.kind is TimeLimitKind.SAME_DAY:
        for i, stage in enumerate(stages):
            for j, step in enumerate(stage.steps):
                if step.days != 0:
                    where = f"steps[{i}].parallel[{j}].days" if stage.parallel else f"steps[{i}].days"
                    r.add(where, f"a same-day procedure has 0 days for every step, got {step.days}")
    elif limit.kind is TimeLimitKind.WORKING_DAYS:
        total = sum(stage.days for stage in stages)
        if total > limit.days:
            r.add(
                "steps",
                f"the stages take {total} working days in total (a parallel group counts its longest step), "
                f"more than the time limit of {limit}",
            )
    # Calendar-day limits: the steps' working days are not comparable; nothing to check.


def _check_desks(r: _Reader, level: str, units: _UnitIndex) -> None:
    if level == "ward" and "ward" not in units.desk_kinds:
        r.add("level", "a ward-level procedure needs at least one ward with a desk (desk: true)")
    if level == "district" and "district" not in units.desk_kinds:
        r.add("level", "a district-level procedure needs the district's desk (a district with desk: true)")
