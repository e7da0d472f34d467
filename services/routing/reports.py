"""Report II.06a (Circular 01/2020/TT-VPCP): per unit and field, over a period, as JSON or CSV.

The report reads roll-ups (``routing.report_rollups``) instead of the dossiers: for each (unit,
field, channel) and each day, month and year, what was received, what was resolved early, on time
and late, and how the number of dossiers pending, and pending past their due date, changed at the
end of each day. A dossier received on day r, resolved on day x (none yet: never) and due on day d
(none while the clock is stopped) adds:

- ``received`` on r; its class (``early``, ``on_time``, ``late``; none recorded counts as on time) on x;
- ``pending_change`` +1 on r and -1 on x: pending at the end of the days r … x-1;
- ``overdue_change`` +1 on max(r, d+1) and -1 on x: pending past its due date at the end of the days
  max(r, d+1) … x-1 (the scan's "due before the period's last day").

So for a period of the days F … L: carried over (6) = pending at the end of F-1, the sum of
``pending_change`` over every day before F; (4), (5), (8), (9), (10) are sums over F … L; pending (11)
and overdue (13) at the end of L are sums over every day up to L; within the deadline (12) = (11) -
(13). Every figure is a sum of whole days before or within the period, which months and years of the
same deltas cover in few rows (``store.span_ranges``): a city's year is two rows per (unit, field,
channel). These are the scan's figures exactly, with the dossier's current due date and class, as
the scan takes them; they assume a dossier is not resolved before the day it was received.

The repository's save keeps the roll-ups in the transaction of each change: ``rollup_deltas`` of the
workflow as loaded and as saved. A changed due date, class, channel, unit or field moves what the
dossier added from the old rows to the new ones.
"""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import date, timedelta
from typing import Mapping

from sqlalchemy.orm import Session

from motcua.contracts.calendar import local_date
from motcua.contracts.periods import Period
from services.routing import store
from services.routing.domain import II06a

CLASSES = ("early", "on_time", "late")
ONE_DAY = timedelta(days=1)

COLUMNS = [("received", "(3) Tổng số hồ sơ tiếp nhận"), ("online", "(4) Trực tuyến"),
           ("in_person_or_post", "(5) Trực tiếp, bưu chính"), ("carried_over", "(6) Kỳ trước chuyển qua"),
           ("resolved", "(7) Đã giải quyết"), ("early", "(8) Trước hạn"), ("on_time", "(9) Đúng hạn"),
           ("late", "(10) Quá hạn"), ("pending", "(11) Đang giải quyết"), ("within_deadline", "(12) Trong hạn"),
           ("overdue", "(13) Quá hạn"), ("on_time_rate", "Tỷ lệ đúng hạn"), ("overdue_rate", "Tỷ lệ quá hạn"),
           ("online_rate", "Tỷ lệ trực tuyến")]


def ii06a(session: Session, unit: str | None, period: Period, *, scan: bool = False) -> dict:
    """The report: a row per (unit, field), a total per unit and a grand total, each balanced. From
    the roll-ups; ``scan``: counted from the workflows themselves (the reference they are checked
    against, a query that grows with the rows)."""
    rows = (store.scan_report_rows if scan else store.report_rows)(session, unit, period.begin, period.end)
    by_unit: dict[str, list[II06a]] = {}
    for row in rows:
        line = II06a(online=row.online, in_person_or_post=row.in_person_or_post, carried_over=row.carried_over,
                     early=row.early, on_time=row.on_time, late=row.late, within_deadline=row.within_deadline,
                     overdue=row.overdue, label=row.field)
        by_unit.setdefault(row.unit, []).append(line)
    total = II06a(label="Tổng cộng")
    units = []
    for code, lines in by_unit.items():
        unit_total = II06a(label="Cộng")
        for line in lines:
            unit_total.add(line)
        total.add(unit_total)
        units.append({"unit": code, "fields": [line.as_dict() for line in lines], "total": unit_total.as_dict()})
    return {"form": "II.06a", "from": period.first.isoformat(), "to": period.last.isoformat(), "units": units,
            "total": total.as_dict()}


def as_csv(report: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["Đơn vị", "Lĩnh vực", *[title for _, title in COLUMNS]])

    def cells(line: dict) -> list:
        return ["" if line[key] is None else (f"{line[key]:.4f}" if isinstance(line[key], float) else line[key])
                for key, _ in COLUMNS]

    for unit in report["units"]:
        for line in unit["fields"]:
            writer.writerow([unit["unit"], line["label"], *cells(line)])
        writer.writerow([unit["unit"], "Cộng", *cells(unit["total"])])
    writer.writerow(["", "Tổng cộng", *cells(report["total"])])
    return out.getvalue()


# --- the roll-ups -------------------------------------------------------------------------------

def _span_start(span: str, day: date) -> date:
    """The first day of the span of that kind that holds ``day``."""
    return day if span == "day" else day.replace(day=1) if span == "month" else day.replace(month=1, day=1)


def daily_contributions(values: Mapping | None) -> dict[tuple, dict[str, int]]:
    """What one dossier adds to the daily roll-ups, from its workflow's column values (``unit``,
    ``field``, ``channel``, ``received_at``, ``resolved_at``, ``due_date``, ``result_class``):
    {(day, unit, field, channel): {counter: n}}. The module's docstring says why."""
    out: dict[tuple, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    if values is None:
        return out
    key = (values["unit"], values["field"], values["channel"])
    received = local_date(values["received_at"])
    resolved = local_date(values["resolved_at"]) if values["resolved_at"] is not None else None
    out[(received, *key)]["received"] += 1
    if resolved is None or received < resolved:
        out[(received, *key)]["pending_change"] += 1
        if resolved is not None:
            out[(resolved, *key)]["pending_change"] -= 1
    if resolved is not None:
        result_class = values["result_class"] or "on_time"
        if result_class in CLASSES:
            out[(resolved, *key)][result_class] += 1
    if values["due_date"] is not None:
        overdue_from = max(received, values["due_date"] + ONE_DAY)
        if resolved is None or overdue_from < resolved:
            out[(overdue_from, *key)]["overdue_change"] += 1
            if resolved is not None:
                out[(resolved, *key)]["overdue_change"] -= 1
    return out


def rollup_deltas(before: Mapping | None, after: Mapping | None) -> list[dict]:
    """The changes to the roll-ups when a dossier's workflow goes from ``before`` (None: new) to
    ``after``: rows of ``routing.report_rollups`` (every span of every day that changed), each key
    once, in key order, counters that do not change as 0; nothing when the report's figures do not
    change (most saves: a step accepted, an apology...)."""
    changes: dict[tuple, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for sign, values in ((-1, before), (1, after)):
        for (day, *key), counters in daily_contributions(values).items():
            for span in store.SPANS:
                target = changes[(span, _span_start(span, day), *key)]
                for name, n in counters.items():
                    target[name] += sign * n
    rows = []
    for (span, day, unit, field, channel), counters in sorted(changes.items()):
        if any(counters.values()):
            rows.append({"span": span, "day": day, "unit": unit, "field": field, "channel": channel,
                         **{name: counters.get(name, 0) for name in store.ROLLUP_COUNTERS}})
    return rows
