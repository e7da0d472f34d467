"""Report II.06a (Circular 01/2020/TT-VPCP): per unit and field, over a period, as JSON or CSV."""
from __future__ import annotations

import csv
import io

from sqlalchemy.orm import Session

from motcua.contracts.periods import Period
from services.routing import store
from services.routing.domain import II06a

COLUMNS = [("received", "(3) Tổng số hồ sơ tiếp nhận"), ("online", "(4) Trực tuyến"),
           ("in_person_or_post", "(5) Trực tiếp, bưu chính"), ("carried_over", "(6) Kỳ trước chuyển qua"),
           ("resolved", "(7) Đã giải quyết"), ("early", "(8) Trước hạn"), ("on_time", "(9) Đúng hạn"),
           ("late", "(10) Quá hạn"), ("pending", "(11) Đang giải quyết"), ("within_deadline", "(12) Trong hạn"),
           ("overdue", "(13) Quá hạn"), ("on_time_rate", "Tỷ lệ đúng hạn"), ("overdue_rate", "Tỷ lệ quá hạn"),
           ("online_rate", "Tỷ lệ trực tuyến")]


def ii06a(session: Session, unit: str | None, period: Period) -> dict:
    """The report: a row per (unit, field), a total per unit and a grand total, each balanced."""
    by_unit: dict[str, list[II06a]] = {}
    for row in store.report_rows(session, unit, period.begin, period.end):
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
