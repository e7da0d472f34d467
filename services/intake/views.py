"""The JSON answers, built from a dossier in memory (never read back after a command)."""
from __future__ import annotations

import hmac

from motcua.contracts.calendar import TZ, WorkingCalendar
from motcua.contracts.remaining import OfficeHours, remaining_text
from motcua.contracts.vocabulary import RESULT_VI, STATUS_VI, Status
from services.intake import domain
from services.intake.dossier import Dossier, iso


# While these, the appointment date is a deadline running (or stopped: waiting on the citizen).
COUNTING = (Status.RECEIVED, Status.PROCESSING, Status.SUPPLEMENT_REQUESTED, Status.OBLIGATION_REQUESTED)


def clock_stopped(d: Dossier) -> bool:
    return bool(d.clock_stops) and d.clock_stops[-1].get("end") is None


def remaining(d: Dossier, now, calendar: WorkingCalendar, hours: OfficeHours) -> str | None:
    """The time left before the appointment date as a person reads it, while it counts."""
    if Status(d.status) not in COUNTING:
        return None
    return remaining_text(now, d.appointment_date, calendar, hours, clock_stopped(d))


def dossier(d: Dossier, left: str | None = None) -> dict:
    """The whole dossier, for officials of the unit (personal data included); ``left``: ``remaining``."""
    stopped = clock_stopped(d)
    return {
        "code": d.code, "unit": d.unit, "status": d.status, "status_text": STATUS_VI[Status(d.status)],
        "channel": d.channel,
        "procedure": {"code": d.procedure_code, "version": d.procedure_version, "name": d.procedure["name"],
                      "time_limit": d.procedure["time_limit"], "handling_agency": d.handling_agency},
        "applicant": {"name": d.applicant_name, "id_number": d.applicant_id_number,
                      "address": d.applicant_address, "phone": d.applicant_phone, "email": d.applicant_email},
        "documents": d.documents, "sets": d.sets, "quantities": d.quantities,
        "fee_conditions": d.fee_conditions, "notifications": d.notifications,
        "submitted_at": iso(d.submitted_at), "received_at": iso(d.received_at),
        "appointment_date": d.appointment_date.isoformat() if d.appointment_date else None,
        "appointment_history": d.appointment_history, "remaining": left,
        "clock_stopped": stopped, "clock_stops": d.clock_stops,
        "supplement": d.supplement, "refusal": d.refusal,
        "tracking_book": ({"year": d.book_year, "volume": d.book_volume, "line": d.book_line}
                          if d.book_line else None),
        "fees": {"required": d.fees_required, "outstanding": d.fees_outstanding, "settled": d.fees_settled},
        "processed_at": iso(d.processed_at), "returned_at": iso(d.returned_at),
        "returned_to": d.returned_to, "result_class": d.result_class, "secret": d.secret,
        "history": [{"at": iso(h.at), "actor": h.actor, "unit": h.actor_unit, "action": h.action,
                     "status_from": h.status_from, "status_to": h.status_to, "note": h.note}
                    for h in d.history],
    }


def public_status(d: Dossier, left: str | None = None) -> dict:
    """What a citizen sees with the code and the secret of the receipt: no personal data but initials."""
    events = [{"at": iso(h.at), "status": h.status_to, "status_text": STATUS_VI[Status(h.status_to)]}
              for h in d.history if h.status_from != h.status_to]
    return {"code": d.code, "procedure": d.procedure["name"], "applicant": domain.initials(d.applicant_name),
            "status": d.status, "status_text": STATUS_VI[Status(d.status)],
            "appointment_date": d.appointment_date.isoformat() if d.appointment_date else None,
            "remaining": left,
            "result_class": RESULT_VI.get(d.result_class) if d.result_class else None,
            "history": events}


def same_secret(given: str, secret: str) -> bool:
    return hmac.compare_digest(given.encode(), secret.encode())


def summary(row) -> dict:
    """A line of a list: enough to find the dossier (a row of a query or a dossier)."""
    return {"code": row.code, "status": row.status, "status_text": STATUS_VI[Status(row.status)],
            "procedure": row.procedure["name"], "applicant": row.applicant_name,
            "received_at": row.received_at.astimezone(TZ).isoformat() if row.received_at else None,
            "appointment_date": row.appointment_date.isoformat() if row.appointment_date else None}
