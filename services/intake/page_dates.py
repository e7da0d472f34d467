"""Dates and instants on the citizen's status page as a Vietnamese reader writes them.

The page receives what the JSON API answers (ISO text, which the API keeps); these Jinja filters
turn it into ``04/12/2026`` and ``10:16, 04/12/2026`` on the Vietnamese clock, with the forms'
own helpers (``dmy``, ``in_vietnam``).
"""
from __future__ import annotations

from datetime import date, datetime

from motcua.runtime.documents import dmy, in_vietnam


def _parse(value: date | datetime | str) -> date | datetime:
    if isinstance(value, (date, datetime)):
        return value
    text = str(value).strip()
    # "2026-12-04" is a date; anything with a time part is an instant.
    return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)


def vn_date(value: date | datetime | str | None) -> str:
    """``04/12/2026``; an instant gives its date in Vietnam; empty for None."""
    if value is None or value == "":
        return ""
    parsed = _parse(value)
    return dmy(in_vietnam(parsed) if isinstance(parsed, datetime) else parsed)


def vn_instant(value: datetime | str | None) -> str:
    """``10:16, 04/12/2026`` in Vietnam (a time the way the desk's clock shows it); empty for None."""
    if value is None or value == "":
        return ""
    parsed = _parse(value)
    if not isinstance(parsed, datetime):
        return dmy(parsed)
    moment = in_vietnam(parsed)
    return f"{moment.hour:02d}:{moment.minute:02d}, {dmy(moment)}"


FILTERS = {"vn_date": vn_date, "vn_instant": vn_instant}
