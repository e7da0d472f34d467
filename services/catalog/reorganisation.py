"""A reorganisation file: units that merge on a date, as data (domain reference §2). Pure.

The operator writes one YAML file per reorganisation (guide: ``services/catalog/data/README.md``);
``parse_reorganisation`` checks it against the units the catalogue has (and the procedure codes it
knows) and returns the ``Reorganisation`` the services share, with the successors' new catalogue
entries, or raises ``ReorganisationInvalid`` listing every issue, each naming the entry, the field
and the reason, as ``parse_catalogue`` does for the catalogue.

    name: "2025-07-01 Gò Vấp"
    effective_from: 2025-07-01
    source: "Nghị quyết ..."               # optional: where the facts come from
    mergers:
      - successor: "000.30.20.H29"
        dissolved: ["000.10.20.H29", "000.17.20.H29"]
        procedures: all                    # or a list of procedure codes it takes over
        unit: {code: "000.30.20.H29", name: ..., short_name: ..., kind: ward, ...}  # only if new
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

from motcua.contracts.reorganisations import ALL, Reorganisation, Transfer
from services.catalog.domain import (_BAD, PROCEDURE_CODE_RE, UNIT_CODE_RE, CatalogueInvalid, Issue, Unit,
                                     _describe, _Issues, _parse_unit, _Reader)

_TOP_REQUIRED = ("name", "effective_from", "mergers")
_TOP_OPTIONAL = ("source",)
_MERGER_REQUIRED = ("successor", "dissolved", "procedures")
_MERGER_OPTIONAL = ("unit",)
MERGING_KINDS = ("ward", "district")     # units with a desk that a reorganisation dissolves


class ReorganisationInvalid(CatalogueInvalid):
    def __init__(self, issues: Iterable[Issue]):
        super().__init__(issues)
        count = len(self.issues)
        lines = "\n".join(f"  {issue}" for issue in self.issues)
        self.args = (f"{count} issue{'' if count == 1 else 's'} in the reorganisation:\n{lines}",)


@dataclass(frozen=True)
class Plan:
    reorganisation: Reorganisation
    new_units: tuple[Unit, ...]     # successors the catalogue does not have yet


def parse_reorganisation(data: object, units: Mapping[str, Mapping],
                         procedures: Iterable[str] | None = None) -> Plan:
    """``units``: the catalogue's units by code (each as the catalogue answers it, with
    ``dissolved_on`` and ``successor``); ``procedures``: the codes it knows (None: not checked).
    A file applied already checks clean against the units it changed (apply is idempotent)."""
    issues = _Issues()
    top = _Reader(issues, "reorganisation", "", data, _TOP_REQUIRED, _TOP_OPTIONAL, what="reorganisation")
    if not top.ok:
        raise ReorganisationInvalid(issues.items)
    name = top.text("name")
    effective = top.iso_date("effective_from")
    top.text("source", nullable=True)
    raw_mergers = top.items("mergers", at_least=1)
    known_procedures = None if procedures is None else set(procedures)

    drafts = []
    for index, raw in enumerate(raw_mergers if raw_mergers is not _BAD else []):
        drafts.append(_merger(issues, index, raw, units, known_procedures))

    # Across mergers: a unit dissolved once, never both dissolved and a successor.
    dissolved_by: dict[str, str] = {}
    for entry, successor, dissolved, _, _ in drafts:
        for code in dissolved:
            if code in dissolved_by:
                issues.add(entry, "dissolved", f"{code} is merged twice: {dissolved_by[code]} dissolves it already")
            else:
                dissolved_by[code] = entry
    for entry, successor, dissolved, _, _ in drafts:
        if successor is not _BAD and successor in dissolved_by:
            issues.add(entry, "successor", f"{successor} is one of the units this file dissolves "
                                           f"({dissolved_by[successor]}): a successor must go on receiving")
    # Applied before: the same facts are fine (idempotent), other ones are not.
    if effective is not _BAD:
        for entry, successor, dissolved, _, _ in drafts:
            for code in dissolved:
                unit = units.get(code) or {}
                if unit.get("dissolved_on") and (str(unit["dissolved_on"]) != effective.isoformat()
                                                 or unit.get("successor") != successor):
                    issues.add(entry, "dissolved", f"{code} was already dissolved on {unit['dissolved_on']} "
                                                   f"into {unit.get('successor')}")
    if issues.items:
        raise ReorganisationInvalid(issues.items)
    transfers = tuple(Transfer(tuple(dissolved), successor, taken) for _, successor, dissolved, taken, _ in drafts)
    new_units = tuple(unit for *_, unit in drafts if unit is not None and unit.code not in units)
    return Plan(Reorganisation(name, effective, transfers), new_units)


def _merger(issues: _Issues, index: int, raw: object, units: Mapping[str, Mapping],
            known_procedures: set[str] | None) -> tuple:
    successor_code = raw.get("successor") if isinstance(raw, Mapping) else None
    entry = f"mergers[{index}]" + (f" {successor_code.strip()}" if isinstance(successor_code, str) else "")
    r = _Reader(issues, entry, "", raw, _MERGER_REQUIRED, _MERGER_OPTIONAL, what="merger")
    if not r.ok:
        return entry, _BAD, [], None, None
    successor = r.pattern("successor", UNIT_CODE_RE, "000.30.20.H29")
    new_unit = _new_unit(issues, entry, r, successor, units)
    known = dict(units)
    if new_unit is not None and new_unit is not _BAD:
        known.setdefault(new_unit.code, asdict(new_unit))

    dissolved: list[str] = []
    kinds = set()
    raw_dissolved = r.items("dissolved", at_least=1)
    for i, code in enumerate(raw_dissolved if raw_dissolved is not _BAD else []):
        path = f"dissolved[{i}]"
        if not isinstance(code, str) or not UNIT_CODE_RE.fullmatch(code.strip()):
            r.add(path, f"must be a unit code like 000.10.20.H29, got {_describe(code)}")
            continue
        code = code.strip()
        unit = units.get(code)
        if unit is None:
            r.add(path, f"no unit has the code {code} in the catalogue")
            continue
        if code in dissolved:
            r.add(path, f"{code} is listed twice")
            continue
        if not unit.get("desk") or unit.get("kind") not in MERGING_KINDS:
            r.add(path, f"{code} ({unit.get('short_name')}) is {unit.get('kind')} without a desk of its own to "
                        f"merge; a reorganisation merges the desks of wards or districts")
            continue
        if code == successor:
            r.add(path, f"{code} is the successor itself: a successor stays, list only the units it takes over")
            continue
        dissolved.append(code)
        kinds.add(unit["kind"])

    if successor is not _BAD:
        target = known.get(successor)
        if target is None:
            r.add("successor", f"no unit has the code {successor}: give its catalogue entry under unit")
        else:
            if not target.get("desk"):
                r.add("successor", f"{successor} has no desk: it cannot take over receiving")
            for kind in sorted(kinds - {target.get("kind")}):
                r.add("successor", f"{successor} is {target.get('kind')}; the {kind} it takes over needs a "
                                   f"successor of kind {kind}")
            if target.get("dissolved_on"):
                r.add("successor", f"{successor} was itself dissolved on {target['dissolved_on']}")

    taken = _procedures(r, known_procedures)
    return entry, successor, dissolved, taken, (new_unit if new_unit is not _BAD else None)


def _new_unit(issues: _Issues, entry: str, r: _Reader, successor: Any, units: Mapping[str, Mapping]):
    """The successor's own catalogue entry, when it is new: the same keys as in catalogue.yml."""
    if "unit" not in r.raw:
        return None
    sub = _Issues()
    draft = _parse_unit(sub, 0, r.raw["unit"])
    for issue in sub.items:
        issues.add(entry, "unit" + (f".{issue.field}" if issue.field else ""), issue.reason)
    if sub.items:
        return _BAD
    unit = draft.build()
    if successor is not _BAD and unit.code != successor:
        r.add("unit.code", f"must be the successor's code {successor}, got {unit.code!r}")
        return _BAD
    if unit.parent is not None and unit.parent not in units:
        r.add("unit.parent", f"no unit has the code {unit.parent}")
        return _BAD
    existing = units.get(unit.code)
    if existing is not None and any(existing.get(k) != v for k, v in asdict(unit).items()):
        r.add("unit", f"{unit.code} is already in the catalogue with other values: leave unit out, or change "
                      f"the catalogue")
        return _BAD
    return unit


def _procedures(r: _Reader, known: set[str] | None):
    if "procedures" not in r.raw:
        return None
    value = r.raw["procedures"]
    if value == ALL:
        return None
    if not isinstance(value, list) or not value:
        r.add("procedures", f"must be all or a list of procedure codes, got {_describe(value)}")
        return None
    codes = set()
    for i, code in enumerate(value):
        if not isinstance(code, str) or not PROCEDURE_CODE_RE.fullmatch(code.strip()):
            r.add(f"procedures[{i}]", f"must be a procedure code like 2.000815, got {_describe(code)}")
        elif known is not None and code.strip() not in known:
            r.add(f"procedures[{i}]", f"no procedure has the code {code.strip()} in the catalogue")
        else:
            codes.add(code.strip())
    return frozenset(codes)
