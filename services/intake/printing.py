"""The data of each official form, taken from a dossier (the layout lives in ``forms``)."""
from __future__ import annotations

from datetime import date, datetime

from motcua.contracts.calendar import TZ
from services.intake.domain import time_limit_vi


def _unit(unit: dict, parent: dict | None) -> dict:
    return {"code": unit["code"], "name": unit["name"], "short_name": unit["short_name"],
            "parent_name": parent["name"] if parent else unit["name"], "address": unit.get("address")}


def _local(instant: datetime | None) -> str | None:
    return instant.astimezone(TZ).isoformat() if instant else None


def receipt(row, unit: dict, parent: dict | None, status_url: str) -> dict:
    """Mẫu 01: Giấy tiếp nhận hồ sơ và hẹn trả kết quả."""
    return {
        "unit": _unit(unit, parent), "code": row.code, "secret": row.secret, "status_url": status_url,
        "applicant": {"name": row.applicant_name, "address": row.applicant_address, "phone": row.applicant_phone,
                      "email": row.applicant_email},
        "procedure": {"code": row.procedure_code, "name": row.procedure["name"], "version": row.procedure_version},
        "documents": row.documents, "sets": row.sets, "time_limit": time_limit_vi(row.procedure["time_limit"]),
        "received_at": _local(row.received_at), "appointment_date": row.appointment_date.isoformat(),
        "appointment_history": row.appointment_history,
        "collect_at": f"Bộ phận tiếp nhận và trả kết quả, {unit['name']}",
        "tracking": {"year": row.book_year, "volume": row.book_volume, "line": row.book_line},
        "official": row.received_by,
    }


def supplement_request(row, unit: dict, parent: dict | None) -> dict:
    """Mẫu 02: Phiếu yêu cầu bổ sung, hoàn thiện hồ sơ."""
    s = row.supplement
    return {"unit": _unit(unit, parent), "number": s["number"], "code": row.code,
            "applicant": {"name": row.applicant_name, "address": row.applicant_address},
            "procedure": {"code": row.procedure_code, "name": row.procedure["name"]},
            "requested_by": s["requested_by_name"], "requested_at": s["requested_at"], "documents": s["documents"],
            "reason": s["reason"], "contact": s["contact"], "official": s["official"]}


def refusal(row, unit: dict, parent: dict | None) -> dict:
    """Mẫu 03: Phiếu từ chối tiếp nhận giải quyết hồ sơ."""
    r = row.refusal
    return {"unit": _unit(unit, parent), "code": row.code,
            "applicant": {"name": row.applicant_name, "address": row.applicant_address},
            "procedure": {"code": row.procedure_code, "name": row.procedure["name"]},
            "reason": r["reason"], "refused_at": r["refused_at"], "official": r["official"]}


def tracking_book(rows, unit: dict, parent: dict | None, first, last, agency_name) -> dict:
    """Mẫu 06: Sổ theo dõi hồ sơ, for a unit and a period."""
    return {"unit": _unit(unit, parent), "year": first.year, "volume": rows[0].book_volume if rows else 1,
            "from": first.isoformat(), "to": last.isoformat(),
            "lines": [{"line": r.book_line, "code": r.code, "procedure": r.procedure["name"], "sets": r.sets,
                       "applicant": r.applicant_name, "lead_agency": agency_name(r.handling_agency),
                       "received_at": _local(r.received_at), "appointment_date": r.appointment_date.isoformat(),
                       "transferred_at": _local(r.transferred_at), "result_date": _local(r.processed_at),
                       "returned_at": _local(r.returned_at), "notes": _note(r)} for r in rows]}


def _note(row) -> str:
    notes = []
    if row.appointment_history:
        notes.append("Hẹn lại: " + ", ".join(date.fromisoformat(h["date"]).strftime("%d/%m/%Y")
                                             for h in row.appointment_history))
    if row.result_class:
        notes.append({"early": "Trước hạn", "on_time": "Đúng hạn", "late": "Quá hạn"}[row.result_class])
    return "; ".join(notes)
