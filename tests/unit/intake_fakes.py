"""In-memory fakes of the intake service's repository, unit of work and catalogue: the use cases
run through the real handlers and the real aggregate, without PostgreSQL or a broker."""
from __future__ import annotations

import copy
from datetime import date, datetime

from motcua.contracts.calendar import WorkingCalendar
from motcua.contracts.codes import format_dossier_code
from services.intake.dossier import CLOSED, Dossier

DISTRICT = "000.00.20.H29"
WARD_5 = "000.05.20.H29"
WARD_7 = "000.07.20.H29"
JUSTICE = "000.23.20.H29"

UNITS = {
    WARD_5: {"code": WARD_5, "name": "UBND Phường 5", "short_name": "Phường 5", "kind": "ward", "desk": True},
    WARD_7: {"code": WARD_7, "name": "UBND Phường 7", "short_name": "Phường 7", "kind": "ward", "desk": True},
    DISTRICT: {"code": DISTRICT, "name": "UBND Quận", "short_name": "Quận", "kind": "district", "desk": True},
    JUSTICE: {"code": JUSTICE, "name": "Phòng Tư pháp", "short_name": "Phòng Tư pháp", "kind": "office",
              "desk": False},
}
DOCUMENTS = [{"name": "Tờ khai", "form": "original", "count": 1},
             {"name": "Giấy tờ tùy thân", "form": "original", "count": 1}]
PROCEDURES = {
    # 3 working days, a flat fee, received at the wards
    "1.004873": {"code": "1.004873", "version": 2, "name": "Cấp Giấy xác nhận tình trạng hôn nhân",
                 "level": "ward", "handling_agency": "self", "time_limit": "3 working days", "sets": 1,
                 "documents": DOCUMENTS, "fees": [{"kind": "flat", "amount": 10000}]},
    # same day, free (the 15:00 rule)
    "1.001193": {"code": "1.001193", "version": 1, "name": "Đăng ký khai sinh", "level": "ward",
                 "handling_agency": "self", "time_limit": "same day", "sets": 1, "documents": DOCUMENTS,
                 "fees": [{"kind": "exemption", "when": "on_time_registration"}]},
    # district level, handled by the justice office
    "2.000908": {"code": "2.000908", "version": 1, "name": "Chứng thực bản sao", "level": "district",
                 "handling_agency": JUSTICE, "time_limit": "2 working days", "sets": 1, "documents": DOCUMENTS,
                 "fees": []},
}
CALENDAR = WorkingCalendar()   # package holidays only


class FakeCatalogue:
    def __init__(self, units=UNITS, procedures=PROCEDURES):
        self.units, self.procedures = units, procedures

    def unit(self, code: str) -> dict | None:
        return copy.deepcopy(self.units.get(code))

    def procedure_in_force(self, code: str, at: datetime) -> dict | None:
        return copy.deepcopy(self.procedures.get(code))


class FakeRepository:
    """Dossiers kept as copies, as a database would: a change not saved is lost."""

    def __init__(self):
        self.saved: dict[str, Dossier] = {}
        self.codes: dict[tuple[str, date], int] = {}
        self.lines: dict[tuple[str, int], int] = {}
        self.loads: list[tuple[str, bool]] = []     # (code, for update): one per command

    def get(self, code: str, *, for_update: bool = True) -> Dossier | None:
        self.loads.append((code, for_update))
        stored = self.saved.get(code)
        return copy.deepcopy(stored) if stored else None

    def add(self, dossier: Dossier) -> None:
        assert dossier.code not in self.saved, "a dossier is inserted once"

    def save(self, dossier: Dossier) -> None:
        kept = copy.deepcopy(dossier)
        kept.events = []
        self.saved[dossier.code] = kept

    def in_flight_at(self, units: list[str]) -> list[str]:
        return sorted(code for code, d in self.saved.items() if d.unit in units and d.status not in CLOSED)

    def new_code(self, unit: str, day: date) -> str:
        self.codes[unit, day] = self.codes.get((unit, day), 0) + 1
        return format_dossier_code(unit, day, self.codes[unit, day])

    def next_book_line(self, unit: str, year: int) -> int:
        self.lines[unit, year] = self.lines.get((unit, year), 0) + 1
        return self.lines[unit, year]


class FakeUnitOfWork:
    """Commits on a clean exit; on an exception, everything the command did is rolled back."""

    def __init__(self, catalogue: FakeCatalogue | None = None, lines_per_volume: int = 1000):
        self.dossiers = FakeRepository()
        self.catalogue = catalogue or FakeCatalogue()
        self.calendar = CALENDAR
        self.lines_per_volume = lines_per_volume
        self.outbox: list = []            # every event committed, in order
        self.consumed: set[str] = set()   # the inbox
        self.events: list = []            # the last command's events
        self.commits = 0
        self.saves = 0

    def __enter__(self) -> FakeUnitOfWork:
        self._before = copy.deepcopy((self.dossiers.saved, self.dossiers.codes, self.dossiers.lines,
                                      self.consumed))
        self.dossiers.loads = []
        self.events, self._pending, self.saves = [], [], 0
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.outbox.extend(self._pending)
            self.events = self._pending
            self.commits += 1
        else:
            self.dossiers.saved, self.dossiers.codes, self.dossiers.lines, self.consumed = self._before
            self.events = []

    def save(self, dossier: Dossier) -> None:
        self.saves += 1
        self.dossiers.save(dossier)
        self._pending.extend(dossier.events)
        dossier.events.clear()

    def first_time(self, event) -> bool:
        if event.id in self.consumed:
            return False
        self.consumed.add(event.id)
        return True
