"""Routing's repository and unit of work: a command loads a workflow once (one locked read of its
rows), changes it in memory, and one save writes the changes and the outbox rows in the same
transaction. The scheduler's scan loads a batch of candidates in one locked read, and saves the
batch in a few statements (``save_all``: one per table and kind of change, not one per row)."""
from __future__ import annotations

import copy
import dataclasses
import json
from abc import ABC, abstractmethod
from collections import defaultdict
from datetime import date, datetime
from functools import lru_cache
from typing import Any, Callable, Iterable, Sequence

from sqlalchemy import JSON, Table, Text, bindparam, cast, func, select, union, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from motcua.contracts.calendar import WorkingCalendar
from motcua.contracts.remaining import DEFAULT_OFFICE_HOURS, OfficeHours
from motcua.contracts.events import Envelope
from motcua.runtime.db import rows_as_json, rows_from_json
from motcua.runtime.inbox import first_time
from motcua.contracts.signing import Signer
from services.routing import models, reports, signatures, store
from services.routing.domain import PENDING
from services.routing.workflow import OPEN, Action, Handover, Step, Workflow

w, s, h, a = models.workflows, models.steps, models.handovers, models.actions

WORKFLOW_COLUMNS = [c.name for c in w.columns if c.name != "updated_at"]
STEP_COLUMNS = [c.name for c in s.columns if c.name not in ("id", "code")]


# A workflow and its child rows, as JSON arrays beside its row: one round trip.
_WHOLE = select(w, rows_as_json(s, s.c.code == w.c.code, s.c.stage, s.c.position),
                rows_as_json(h, h.c.code == w.c.code, h.c.id), rows_as_json(a, a.c.code == w.c.code, a.c.id))


def _workflow_values(workflow: Workflow) -> dict:
    # Copies of the mutable values (clock_stops, apology): the others are immutable.
    out = {}
    for name in WORKFLOW_COLUMNS:
        value = getattr(workflow, name)
        out[name] = copy.deepcopy(value) if isinstance(value, (list, dict)) else value
    return out


# What report II.06a's roll-ups depend on (``reports.daily_contributions``).
REPORTED = ("unit", "field", "channel", "received_at", "resolved_at", "due_date", "result_class")


def _rollup_deltas(before: dict | None, after: dict) -> list[dict]:
    """``reports.rollup_deltas``, skipped when nothing the report counts changed (a scan's flags, an
    acceptance, an apology: most saves), which gives no delta anyway."""
    if before is not None and all(before[name] == after[name] for name in REPORTED):
        return []
    return reports.rollup_deltas(before, after)


def _step_values(step: Step) -> dict:
    return {name: getattr(step, name) for name in STEP_COLUMNS}


class SqlRepository:
    """Workflows in the routing schema. Remembers what it loaded, to write only what changed."""

    def __init__(self, session: Session, signer: Signer | None = None):
        self.session = session
        self.signer = signer        # the units' keys the platform signs hand-overs with
        self.seen: dict[str, Workflow] = {}
        self._loaded: dict[str, tuple[dict, dict[int, dict], dict[int, str | None]]] = {}

    # --- reading ---------------------------------------------------------------------------------

    def get(self, code: str, *, for_update: bool = True) -> Workflow | None:
        """The workflow with its steps, handovers and actions in one SELECT; a command first locks
        its row (a SELECT that waited for a lock would show child rows as they were before)."""
        if for_update and self.session.execute(
                select(w.c.code).where(w.c.code == code).with_for_update()).first() is None:
            return None
        found = self._load(self.session.execute(_WHOLE.where(w.c.code == code)).mappings().all())
        return found[0] if found else None

    def scan_candidates(self, today: date, warn_until: date, overdue_before: datetime) -> list[str]:
        """The codes of the workflows with something for the scan to flag, in code order; nothing
        locked (``lock_for_scan`` takes them a batch at a time).

        Index-driven: each predicate is one range of a partial index that holds only what is still
        to flag and carries the code (``models``: ``ix_workflows_scan_*``, ``ix_steps_scan_*``), so
        the query reads index entries, not rows, and a flag set takes the row out: with nothing to
        flag it reads four empty ranges. A UNION of the four, not one OR (an OR with a subquery
        reads every workflow)."""
        running_overdue = select(w.c.code).where(w.c.state == "running", w.c.overdue_at.is_(None),
                                                 w.c.due_date < today)
        apology_missing = select(w.c.code).where(
            w.c.overdue_at <= overdue_before, w.c.apology.is_(None), w.c.apology_missing_at.is_(None),
            w.c.state.in_(["running", "processed"]))
        step_overdue = select(s.c.code).where(s.c.state.in_(OPEN), s.c.overdue_at.is_(None), s.c.due_date < today)
        step_at_risk = select(s.c.code).where(s.c.state.in_(OPEN), s.c.overdue_at.is_(None),
                                              s.c.at_risk_at.is_(None), s.c.due_date <= warn_until)
        candidates = union(running_overdue, apology_missing, step_overdue, step_at_risk).subquery()
        return list(self.session.execute(select(candidates.c.code).order_by(candidates.c.code)).scalars())

    def lock_for_scan(self, codes: list[str]) -> list[Workflow]:
        """Those of ``codes`` that no one else holds, locked and loaded (one locked read for them
        all): the ones another replica is scanning, or a command changing, are skipped (flagged
        there, or next round). What a row says once locked decides what is flagged, not the
        candidate query: a flag already set by another replica is not set again."""
        locked = list(self.session.execute(select(w.c.code).where(w.c.code.in_(codes)).order_by(w.c.code)
                                           .with_for_update(skip_locked=True)).scalars())
        if not locked:
            return []
        return self._load(self.session.execute(_WHOLE.where(w.c.code.in_(locked)).order_by(w.c.code)).mappings().all())

    def running_at(self, units: list[str]) -> list[str]:
        """The codes of the running workflows received at one of ``units`` or with a step not
        finished at one of them, in code order (the order a batch locks them in)."""
        at_desk = select(w.c.code).where(w.c.state == "running", w.c.unit.in_(units))
        at_step = (select(s.c.code).join(w, w.c.code == s.c.code)
                   .where(w.c.state == "running", s.c.agency.in_(units), s.c.state.in_([PENDING, *OPEN])))
        found = union(at_desk, at_step).subquery()
        return list(self.session.execute(select(found.c.code).order_by(found.c.code)).scalars())

    def queue(self, agency: str) -> list:
        return store.queue(self.session, agency)

    def _load(self, rows: list) -> list[Workflow]:
        workflows = []
        for row in rows:
            workflow = Workflow(**{name: row[name] for name in WORKFLOW_COLUMNS})
            steps_by_id: dict[int, Step] = {}
            for values in rows_from_json(s, row["steps"]):
                step = Step(id=values["id"], **{name: values[name] for name in STEP_COLUMNS})
                steps_by_id[step.id] = step
                workflow.steps.append(step)
            for values in rows_from_json(h, row["handovers"]):
                workflow.handovers.append(Handover(
                    id=values["id"], from_agency=values["from_agency"], to_agency=values["to_agency"],
                    at=values["at"], giver=values["giver"], receiver=values["receiver"],
                    step=steps_by_id.get(values["step_id"]), result_class=values["result_class"],
                    note=values["note"]))
            for values in rows_from_json(a, row["actions"]):
                workflow.actions.append(Action(id=values["id"], at=values["at"], actor=values["actor"],
                                               agency=values["agency"], action=values["action"],
                                               step_id=values["step_id"], note=values["note"]))
            self._remember(workflow)
            workflows.append(workflow)
        return workflows

    def _remember(self, workflow: Workflow, values: dict | None = None) -> None:
        """What the workflow is as loaded or saved (``values``: its row's values, when just taken)."""
        self.seen[workflow.code] = workflow
        self._loaded[workflow.code] = (values if values is not None else _workflow_values(workflow),
                                       {st.id: _step_values(st) for st in workflow.steps},
                                       {ho.id: ho.receiver for ho in workflow.handovers})

    # --- writing ---------------------------------------------------------------------------------

    def add(self, workflow: Workflow) -> None:
        self.seen[workflow.code] = workflow

    def save(self, workflow: Workflow) -> None:
        after = _workflow_values(workflow)
        if workflow.code not in self._loaded:
            # None left out: the columns' defaults (SQL NULL, not a JSON null).
            self.session.execute(w.insert().values(**{k: v for k, v in after.items() if v is not None}))
            before = None
            loaded_steps: dict[int, dict] = {}
            receivers: dict[int, str | None] = {}
        else:
            before, loaded_steps, receivers = self._loaded[workflow.code]
            changed = {k: v for k, v in after.items() if before[k] != v}
            if changed:
                self.session.execute(update(w).where(w.c.code == workflow.code)
                                     .values(**changed, updated_at=func.now()))
        # Report II.06a's roll-ups, in the same transaction: what the change moved between its columns.
        store.add_to_rollups(self.session, _rollup_deltas(before, after))
        for step in workflow.steps:
            values = _step_values(step)
            if step.id is None:
                step.id = self.session.execute(s.insert().values(code=workflow.code, **values)
                                               .returning(s.c.id)).scalar_one()
            else:
                changed = {k: v for k, v in values.items() if loaded_steps[step.id][k] != v}
                if changed:
                    self.session.execute(update(s).where(s.c.id == step.id).values(**changed))
        for handover in workflow.handovers:
            if handover.id is None:
                handover.id = self.session.execute(h.insert().values(**self._handover_row(workflow, handover))
                                                   .returning(h.c.id)).scalar_one()
            elif receivers[handover.id] != handover.receiver:
                self.session.execute(update(h).where(h.c.id == handover.id).values(receiver=handover.receiver))
        for action in workflow.actions:
            if action.id is None:
                action.id = self.session.execute(a.insert().values(
                    code=workflow.code, at=action.at, actor=action.actor, agency=action.agency,
                    action=action.action, step_id=action.step_id, note=action.note).returning(a.c.id)).scalar_one()
        self._remember(workflow, after)

    def _handover_row(self, workflow: Workflow, handover: Handover) -> dict:
        """A new hand-over's row, signed by the giving unit's key (once its step has its id)."""
        return signatures.signed(self.signer, workflow.unit, dict(
            code=workflow.code, from_agency=handover.from_agency, to_agency=handover.to_agency, at=handover.at,
            giver=handover.giver, receiver=handover.receiver, step_id=handover.step.id if handover.step else None,
            result_class=handover.result_class, note=handover.note))

    def save_all(self, workflows: Sequence[Workflow]) -> None:
        """Many loaded workflows in a few statements, the rows ``save`` would write one by one: one
        ``UPDATE … FROM unnest(arrays)`` per table and set of changed columns (a scan's batch: the
        workflows flagged overdue, those flagged for a missing apology, the steps overdue, the
        steps at risk), one multi-row INSERT … RETURNING per table of new rows (ids in the order
        given), and one upsert of the II.06a roll-ups with the batch's deltas summed per key.
        A workflow not loaded here (new) is saved alone by ``save``.

        The rows of each statement go in key order (code, id), so two transactions that update
        the same rows lock them in the same order."""
        loaded = sorted((wf for wf in workflows if wf.code in self._loaded), key=lambda wf: wf.code)
        for workflow in workflows:
            if workflow.code not in self._loaded:
                self.save(workflow)
        workflow_rows: dict[tuple, list[dict]] = defaultdict(list)
        step_rows: dict[tuple, list[dict]] = defaultdict(list)
        receiver_rows: list[dict] = []
        deltas: list[dict] = []
        new_steps: list[tuple[Workflow, Step]] = []
        snapshots = {}
        for workflow in loaded:
            before, loaded_steps, receivers = self._loaded[workflow.code]
            after = snapshots[workflow.code] = _workflow_values(workflow)
            changed = {k: v for k, v in after.items() if before[k] != v}
            if changed:
                workflow_rows[tuple(changed)].append({"code": workflow.code, **changed})
            deltas += _rollup_deltas(before, after)
            for step in workflow.steps:
                if step.id is None:
                    new_steps.append((workflow, step))
                    continue
                now_values = _step_values(step)
                changed = {k: v for k, v in now_values.items() if loaded_steps[step.id][k] != v}
                if changed:
                    step_rows[tuple(changed)].append({"id": step.id, **changed})
            receiver_rows += [{"id": ho.id, "receiver": ho.receiver} for ho in workflow.handovers
                              if ho.id is not None and receivers[ho.id] != ho.receiver]
        for columns, rows in workflow_rows.items():
            _update_rows(self.session, w, "code", columns, rows, touch=True)
        store.add_to_rollups(self.session, _summed(deltas))
        for columns, rows in step_rows.items():
            _update_rows(self.session, s, "id", columns, sorted(rows, key=lambda r: r["id"]))
        _insert_returning_ids(self.session, s, new_steps, lambda wf, st: {"code": wf.code, **_step_values(st)})
        new_handovers = [(wf, ho) for wf in loaded for ho in wf.handovers if ho.id is None]
        _insert_returning_ids(self.session, h, new_handovers, self._handover_row)
        if receiver_rows:
            _update_rows(self.session, h, "id", ("receiver",), sorted(receiver_rows, key=lambda r: r["id"]))
        new_actions = [(wf, ac) for wf in loaded for ac in wf.actions if ac.id is None]
        _insert_returning_ids(self.session, a, new_actions, lambda wf, ac: dict(
            code=wf.code, at=ac.at, actor=ac.actor, agency=ac.agency, action=ac.action, step_id=ac.step_id,
            note=ac.note))
        for workflow in loaded:
            self._remember(workflow, snapshots[workflow.code])


def _update_rows(session: Session, table: Table, key: str, columns: tuple[str, ...], rows: list[dict],
                        *, touch: bool = False) -> None:
    """Every row of ``rows`` (each with ``key`` and ``columns``) in one statement:
    ``UPDATE table SET col = v.col … FROM unnest(:key, :col …) AS v (key, col …) WHERE table.key =
    v.key``, one array parameter per column (``touch``: ``updated_at`` too)."""
    session.execute(_update_statement(table, key, columns, touch),
                    {f"v_{name}": [json.dumps(row[name]) if _is_json(table, name) else row[name] for row in rows]
                     for name in (key, *columns)})


def _is_json(table: Table, name: str) -> bool:
    return isinstance(table.c[name].type, JSON)


@lru_cache(maxsize=None)
def _update_statement(table: Table, key: str, columns: tuple[str, ...], touch: bool):
    """Built once per (table, columns): arrays, not a VALUES list, so that SQLAlchemy compiles it
    once (a VALUES list of 500 rows is a new statement every time; compiling it took about as long
    as the server's work). Each array is cast to its column's type (``%(v_col)s::TYPE[]``); a JSON
    column's values go as text (a list value would be taken for a dimension of the array), JSON
    encoded as SQLAlchemy encodes them (None as JSON null), and are cast back in the SET."""
    names = (key, *columns)
    v = func.unnest(*(bindparam(f"v_{name}", type_=ARRAY(Text if _is_json(table, name) else table.c[name].type))
                      for name in names)).table_valued(*names).render_derived(name="v")
    changes = {name: cast(v.c[name], table.c[name].type) if _is_json(table, name) else v.c[name] for name in columns}
    if touch:
        changes["updated_at"] = func.now()
    return update(table).where(table.c[key] == v.c[key]).values(changes)


def _insert_returning_ids(session: Session, table: Table, items: list[tuple], row: Callable[..., dict]) -> None:
    """New rows of ``table`` in one multi-row INSERT … RETURNING id (SQLAlchemy's insertmanyvalues,
    ids in the order of the rows given); each item's ``id`` set from them."""
    if not items:
        return
    ids = session.execute(table.insert().returning(table.c.id, sort_by_parameter_order=True),
                          [row(owner, item) for owner, item in items]).scalars().all()
    for (_, item), id_ in zip(items, ids, strict=True):
        item.id = id_


def _summed(deltas: list[dict]) -> list[dict]:
    """Roll-up deltas of several workflows as one upsert's rows: each key once (an upsert cannot
    change a row twice), counters summed, in key order. A key whose deltas cancel out stays (all
    zeros), as one save after the other would leave its row."""
    keys = ("span", "day", "unit", "field", "channel")
    sums: dict[tuple, dict[str, int]] = {}
    for delta in deltas:
        target = sums.setdefault(tuple(delta[k] for k in keys), dict.fromkeys(store.ROLLUP_COUNTERS, 0))
        for name in store.ROLLUP_COUNTERS:
            target[name] += delta[name]
    return [{**dict(zip(keys, key)), **counters} for key, counters in sorted(sums.items())]


class UnitOfWork(ABC):
    """What a handler gets: the repository, the clock and calendar, the catalogue's read model,
    and ``save``, which writes a workflow with the events it caused. ``emitted`` keeps the events
    written, for the metrics once committed."""

    workflows: Any

    def __init__(self, *, now: datetime, calendar: WorkingCalendar,
                 procedure_version: Callable[[str, int], dict | None], correlation_id: str | None = None,
                 at_risk_working_days: int = 1,
                 office_hours: Callable[[str], OfficeHours] = lambda unit: DEFAULT_OFFICE_HOURS,
                 unit: Callable[[str], dict | None] = lambda code: None):
        self.now = now
        self.calendar = calendar
        self.procedure_version = procedure_version
        self.office_hours = office_hours
        self.unit = unit                  # a unit's catalogue entry (the local copy)
        self.correlation_id = correlation_id
        self.at_risk_working_days = at_risk_working_days
        self.emitted: list[Envelope] = []

    def __enter__(self) -> "UnitOfWork":
        return self

    def __exit__(self, *exc) -> None:
        pass

    @abstractmethod
    def first_time(self, event: Envelope) -> bool:
        """Whether the event is new here (recorded with its effect): False for a redelivery."""

    def save(self, workflow: Workflow, events: Iterable[Envelope]) -> None:
        self.workflows.save(workflow)
        self._emit(events)

    def save_all(self, changes: Iterable[tuple[Workflow, Iterable[Envelope]]]) -> None:
        """Many workflows, each with the events it caused: the rows and outbox rows that ``save``
        would write one by one, in a few statements (``SqlRepository.save_all``)."""
        changes = [(workflow, list(events)) for workflow, events in changes]
        self.workflows.save_all([workflow for workflow, _ in changes])
        for _, events in changes:
            self._emit(events)

    @abstractmethod
    def commit(self) -> None:
        """Commit what was done so far (its outbox rows then go to the relay) and go on in a new
        transaction: the scan's next batch."""

    def _emit(self, events: Iterable[Envelope]) -> None:
        for event in events:
            if self.correlation_id:
                event = dataclasses.replace(event, correlation_id=self.correlation_id)
            self._publish(event)
            self.emitted.append(event)

    @abstractmethod
    def _publish(self, event: Envelope) -> None:
        """The event into the outbox of the unit of work's transaction."""


class SqlUnitOfWork(UnitOfWork):
    """One transaction of the routing database: committed when the block ends without error."""

    def __init__(self, database, emit: Callable[[Session, Envelope], None], *, read_only: bool = False,
                 signer: Callable[[], Signer] | None = None, **settings):
        super().__init__(**settings)
        self.database = database
        self.emit = emit
        self.signer = signer            # the keys as they are now (read again after a rotation)
        self.read_only = read_only      # a question: no transaction around its one SELECT

    def __enter__(self) -> "SqlUnitOfWork":
        self._transaction = self.database.read() if self.read_only else self.database.transaction()
        self.session = self._transaction.__enter__()
        self.workflows = SqlRepository(self.session, self.signer() if self.signer else None)
        return self

    def __exit__(self, *exc):
        transaction, self._transaction = self._transaction, None
        if transaction is not None:         # None: a ``commit`` failed, its transaction is over
            return transaction.__exit__(*exc)
        return None

    def commit(self) -> None:
        """This transaction committed (``Database.transaction``: the relay is handed its outbox
        rows) and a new one opened, with a new repository."""
        transaction, self._transaction = self._transaction, None
        transaction.__exit__(None, None, None)
        self.__enter__()

    def first_time(self, event: Envelope) -> bool:
        return first_time(self.session, models.processed_events, event)

    def _publish(self, event: Envelope) -> None:
        self.emit(self.session, event)
