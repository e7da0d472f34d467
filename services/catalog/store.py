"""Reading and writing the catalogue: every query of the catalog service lives here."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from motcua.runtime import outbox
from motcua.contracts.events import new_event
from motcua.contracts.text import fold
from services.catalog import models
from services.catalog.domain import Catalogue, Procedure, Unit

PROCEDURE_CODE = re.compile(r"^\d\.\d{6}$")
UNIT_FIELDS = ("code", "name", "short_name", "kind", "parent", "admin_code", "desk", "address", "office_hours")
# Set by a reorganisation only: a catalogue load leaves them as they are.
REORGANISED_FIELDS = ("dissolved_on", "successor")


@dataclass
class LoadReport:
    units_written: int = 0
    published: list[tuple[str, int]] = field(default_factory=list)   # (code, version)
    unchanged: int = 0

    def as_dict(self) -> dict:
        return {"units_written": self.units_written, "unchanged": self.unchanged,
                "published": [{"code": code, "version": version} for code, version in self.published]}


def agencies_of(procedure: Procedure) -> list[str]:
    found = [procedure.handling_agency]
    for stage in procedure.steps:
        found.extend(step.agency for step in stage.steps)
    return sorted(set(found))


def load(session: Session, catalogue: Catalogue, *, correlation_id: str | None = None) -> LoadReport:
    """Write units and publish every procedure whose content changed, in one transaction.

    A version is immutable: a changed entry becomes a new version; an unchanged one is left alone.
    The district (the catalogue's owner) is the unit named on ``catalog.procedure_published``.
    """
    report = LoadReport()
    district = next(unit.code for unit in catalogue.units if unit.kind == "district")
    for unit in catalogue.units:
        values = {name: getattr(unit, name) for name in UNIT_FIELDS}
        statement = insert(models.units).values(**values)
        session.execute(statement.on_conflict_do_update(
            index_elements=["code"], set_={**{k: statement.excluded[k] for k in UNIT_FIELDS if k != "code"},
                                           "updated_at": func.now()}))
        report.units_written += 1

    v = models.procedure_versions
    for procedure in catalogue.procedures:
        content = procedure.content()
        latest = session.execute(
            select(v.c.version, v.c.content).where(v.c.code == procedure.code,
                                                   v.c.effective_from == procedure.effective_from)
            .order_by(v.c.version.desc()).limit(1)).first()
        if latest is not None and latest.content == content:
            report.unchanged += 1
            continue
        # Serialise concurrent loads of one code so version numbers never collide.
        session.execute(select(func.pg_advisory_xact_lock(func.hashtext("catalog:" + procedure.code))))
        version = (session.execute(select(func.max(v.c.version)).where(v.c.code == procedure.code))
                   .scalar_one() or 0) + 1
        row = session.execute(v.insert().values(
            code=procedure.code, version=version, effective_from=procedure.effective_from,
            name=procedure.name, search_key=fold(procedure.name), field=procedure.field,
            level=procedure.level, agencies=agencies_of(procedure), content=content).returning(v)).one()
        # Version 2 carries the whole version: the other services keep their copy from it.
        outbox.add(session, models.outbox, new_event(
            "catalog.procedure_published",
            {"code": procedure.code, "version": version, "effective_from": procedure.effective_from.isoformat(),
             "name": procedure.name, "field": procedure.field, "level": procedure.level,
             "time_limit": procedure.time_limit, "procedure": procedure_view(row)},
            unit=district, correlation_id=correlation_id, version=2))
        report.published.append((procedure.code, version))
    # Every unit, on every load: a unit's change has no version of its own.
    outbox.add(session, models.outbox, new_event(
        "catalog.units_published", {"units": [unit_view(row) for row in list_units(session)]},
        unit=district, correlation_id=correlation_id))
    return report


# --- reading -------------------------------------------------------------------------------

def procedure_view(row) -> dict:
    """What the API answers for one version: its identity, then its content."""
    return {"code": row.code, "version": row.version, "effective_from": row.effective_from.isoformat(),
            "published_at": row.published_at.isoformat(), **row.content}


def as_procedure(row) -> Procedure:
    return Procedure.from_content(row.code, row.effective_from, row.content)


def _in_force(at: date):
    """One row per code: the version in force on ``at`` (latest effective date, then latest version)."""
    v = models.procedure_versions
    return (select(v).where(v.c.effective_from <= at)
            .order_by(v.c.code, v.c.effective_from.desc(), v.c.version.desc())
            .distinct(v.c.code))


def get_procedure(session: Session, code: str, at: date):
    subquery = _in_force(at).where(models.procedure_versions.c.code == code)
    return session.execute(subquery).first()


def get_version(session: Session, code: str, version: int):
    v = models.procedure_versions
    return session.execute(select(v).where(v.c.code == code, v.c.version == version)).first()


def all_versions(session: Session) -> list:
    v = models.procedure_versions
    return session.execute(select(v).order_by(v.c.code, v.c.version)).all()


def versions(session: Session, code: str) -> list:
    v = models.procedure_versions
    return session.execute(select(v).where(v.c.code == code).order_by(v.c.version)).all()


def search_procedures(session: Session, at: date, *, unit: Unit | None = None, field_name: str | None = None,
                      query: str | None = None) -> list:
    in_force = _in_force(at).subquery()
    statement = select(in_force)
    if unit is not None:
        # A desk receives the procedures of its level; an office or agency sees what it handles.
        levels = {"ward": "ward", "district": "district"}
        if unit.kind in levels:
            statement = statement.where(or_(in_force.c.level == levels[unit.kind],
                                            in_force.c.agencies.any(unit.code)))
        else:
            statement = statement.where(in_force.c.agencies.any(unit.code))
    if field_name:
        statement = statement.where(func.lower(in_force.c.field) == field_name.lower())
    if query and PROCEDURE_CODE.match(query.strip()):
        statement = statement.where(in_force.c.code == query.strip())
    elif query:
        for word in fold(query).split():
            statement = statement.where(in_force.c.search_key.contains(word, autoescape=True))
    return session.execute(statement.order_by(in_force.c.field, in_force.c.name)).all()


def fields(session: Session, at: date) -> list[str]:
    in_force = _in_force(at).subquery()
    return list(session.execute(select(in_force.c.field).distinct().order_by(in_force.c.field)).scalars())


def list_units(session: Session, kind: str | None = None) -> list:
    u = models.units
    statement = select(u).order_by(u.c.kind, u.c.code)
    if kind:
        statement = statement.where(u.c.kind == kind)
    return session.execute(statement).all()


def get_unit(session: Session, code: str):
    return session.execute(select(models.units).where(models.units.c.code == code)).first()


def unit_view(row) -> dict:
    dissolved_on = row.dissolved_on
    return {**{name: getattr(row, name) for name in UNIT_FIELDS},
            "dissolved_on": dissolved_on.isoformat() if dissolved_on else None, "successor": row.successor}


def as_unit(row) -> Unit:
    return Unit(**{name: getattr(row, name) for name in UNIT_FIELDS})


# --- reorganisations -------------------------------------------------------------------------

def units_by_code(session: Session) -> dict[str, dict]:
    return {row.code: unit_view(row) for row in list_units(session)}


def procedure_codes(session: Session) -> set[str]:
    v = models.procedure_versions
    return set(session.execute(select(v.c.code).distinct()).scalars())


def apply_reorganisation(session: Session, plan, *, correlation_id: str | None = None) -> int:
    """Write a checked reorganisation (``reorganisation.Plan``): the successors that are new, and
    each dissolved unit's date and successor; then announce it (``catalog.units_reorganised`` and
    the units as they now are). Returns the units changed: 0 when it was applied already, and then
    nothing is announced again (the services moved their dossiers when they heard it first)."""
    reorganisation, changed = plan.reorganisation, 0
    session.execute(select(func.pg_advisory_xact_lock(func.hashtext("catalog:reorganise"))))
    for unit in plan.new_units:
        changed += session.execute(insert(models.units).values(
            **{name: getattr(unit, name) for name in UNIT_FIELDS}).on_conflict_do_nothing()).rowcount
    u = models.units
    for transfer in reorganisation.transfers:
        changed += session.execute(u.update().where(
            u.c.code.in_(transfer.dissolved),
            or_(u.c.dissolved_on.is_distinct_from(reorganisation.effective_from),
                u.c.successor.is_distinct_from(transfer.successor)))
            .values(dissolved_on=reorganisation.effective_from, successor=transfer.successor,
                    updated_at=func.now())).rowcount
    if not changed:
        return 0
    units = list_units(session)
    owner = next((row.code for row in units if row.kind == "district"), reorganisation.transfers[0].successor)
    outbox.add(session, models.outbox, new_event(
        "catalog.units_reorganised", reorganisation.payload(), unit=owner, correlation_id=correlation_id))
    outbox.add(session, models.outbox, new_event(
        "catalog.units_published", {"units": [unit_view(row) for row in units]}, unit=owner,
        correlation_id=correlation_id))
    return changed
