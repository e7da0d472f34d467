"""The simulated week, free of I/O: who arrives when, with which procedure, through which
channel, and what becomes of the dossier (a guidance slip first, a refusal, a supplement, a
late agency, the apology, the payment). Everything comes from one seeded ``random.Random``:
the same seed, units, days and scale give the same plan.

Office hours at every desk and agency: 07:30–11:30 and 13:00–17:00 on working days (the
calendar's: weekends, public holidays and make-up Saturdays). Agencies work "at their own
pace": each has a speed (the share of its time budget it usually uses) and a chance to run
late. Durations in the plan are office hours, turned into instants by :func:`office_time`.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Iterable, Sequence

from motcua.contracts.calendar import TZ, WorkingCalendar

# The default week: Monday 23 Nov 2026, with Tuesday 24 Nov a public holiday (Ngày Văn hóa
# Việt Nam, from 2026), so five days hold four working days and a holiday.
DEFAULT_START = date(2026, 11, 23)

MORNING = (time(7, 30), time(11, 30))
AFTERNOON = (time(13, 0), time(17, 0))
OFFICE_DAY_HOURS = 8.0
SAME_DAY_BUDGET_HOURS = 2.0       # a "same day" step: the citizen waits, or comes back in the afternoon

DISTRICT_KIND = "district"

# Dossiers a desk receives on an average working day at scale 1 (a sample of the real flow:
# the whole district handles several hundred a day; `--scale` multiplies these).
DESK_RATE = {"district": 9.0, "ward": 2.6}
# Online submissions per calendar day (citizens submit at any hour, on any day).
ONLINE_RATE = {"district": 1.6, "ward": 0.7}
# Some wards are busier than others: a fixed weight per ward (by its number), mean about 1.
WARD_WEIGHT = {"01": 0.8, "03": 1.1, "04": 0.7, "05": 1.2, "06": 0.8, "07": 1.0, "08": 1.1, "09": 0.7,
               "10": 1.4, "11": 1.1, "12": 1.3, "13": 0.9, "14": 1.0, "15": 1.2, "16": 0.9, "17": 0.8}

# How often each procedure is asked for at a desk (relative weights; unknown codes weigh 1).
PROCEDURE_WEIGHT = {
    "2.000815": 30, "2.000884": 12, "2.001035": 6, "2.001019": 1, "1.001193": 8, "1.000656": 3,
    "1.000894": 3, "1.001022": 1, "1.004873": 6, "1.004859": 2, "2.000635": 5, "1.004884": 1,
    "1.004837": 1, "1.000689": 1, "9.000001": 4,
    "1.001612": 10, "2.000720": 6, "1.001570": 2, "1.009994": 7, "1.013978": 2, "1.013831": 6, "9.000002": 2,
    "2.000806": 1, "2.000528": 1, "2.000992": 3,
}

# Each agency's pace: the share of its time budget it usually uses, and its chance to run late.
DEFAULT_PACE = (0.45, 0.10)          # a ward's own officers, a district office
AGENCY_PACE = {
    "000.41.20.H29": (0.75, 0.20),    # land registry branch: busy
    "000.42.20.H29": (0.80, 0.25),    # tax: slowest
    "000.25.20.H29": (0.70, 0.12),    # natural resources and environment office
    "000.26.20.H29": (0.60, 0.08),    # urban management office (construction permits)
    "000.43.20.H29": (0.55, 0.06),    # police
    "000.44.20.H29": (0.60, 0.08),    # social insurance
    "000.00.20.H29": (0.65, 0.10),    # the district People's Committee signs
}
TAX_AGENCY = "000.42.20.H29"

SURNAMES = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ",
            "Ngô", "Dương", "Lý")
MIDDLE = {"m": ("Văn", "Minh", "Hữu", "Đức", "Quốc", "Thanh", "Hoàng"), "f": ("Thị", "Ngọc", "Thu", "Thanh", "Mỹ")}
GIVEN = {"m": ("An", "Bình", "Dũng", "Hùng", "Long", "Nam", "Phúc", "Quân", "Tuấn", "Khoa", "Hải", "Sơn"),
         "f": ("Lan", "Linh", "Mai", "Hà", "Hạnh", "Thảo", "Trang", "Vy", "Yến", "Châu", "Ngân", "Hương")}
STREETS = ("Quang Trung", "Nguyễn Văn Nghi", "Lê Đức Thọ", "Phan Văn Trị", "Nguyễn Oanh", "Thống Nhất",
           "Lê Văn Thọ", "Nguyễn Kiệm", "Dương Quảng Hàm", "Phạm Văn Chiêu", "Nguyễn Văn Lượng", "Lê Lợi")
PHONE_PREFIXES = ("090", "091", "093", "094", "096", "097", "098", "032", "033", "035", "037", "038", "070",
                  "077", "079", "081", "083", "085")
ASCII = str.maketrans("àáảãạăằắẳẵặâầấẩẫậèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵđ",
                      "aaaaaaaaaaaaaaaaaeeeeeeeeeeeiiiiiooooooooooooooooouuuuuuuuuuuyyyyyd")

SUPPLEMENT_DOCUMENTS = (
    {"name": "Bản sao giấy tờ chứng minh nơi cư trú", "form": "copy", "count": 1},
    {"name": "Văn bản ủy quyền có chứng thực", "form": "certified_copy", "count": 1},
    {"name": "Bản vẽ hiện trạng có xác nhận", "form": "original", "count": 1},
)
APOLOGY_REASONS = ("Khối lượng hồ sơ tăng đột biến trong kỳ", "Chờ kết quả xác minh của cơ quan liên quan",
                   "Cán bộ thụ lý nghỉ ốm đột xuất", "Hệ thống dữ liệu chuyên ngành gián đoạn")


# --- the catalogue, as the plan sees it -------------------------------------------------------

@dataclass(frozen=True)
class UnitInfo:
    code: str
    short_name: str
    kind: str                 # district or ward (desks only)


@dataclass(frozen=True)
class ProcedureInfo:
    code: str
    name: str
    level: str                # ward or district
    time_limit: str
    online_level: str         # none, partial, full
    documents: tuple          # ({name, form, count}, ...)
    stages: tuple             # ((agency, days), ...) per stage; agency "self" is the receiving unit
    fees: bool                # anything to pay (an item that is not an exemption)
    sets: int = 1
    per_page: bool = False
    per_copy: bool = False

    @property
    def same_day(self) -> bool:
        return self.time_limit.strip().lower() == "same day"


# --- citizens and their dossiers ---------------------------------------------------------------

@dataclass(frozen=True)
class Citizen:
    name: str
    id_number: str            # CCCD: 12 digits, fake but well-formed
    address: str
    phone: str
    email: str | None

    def as_applicant(self) -> dict:
        data = {"name": self.name, "id_number": self.id_number, "address": self.address, "phone": self.phone}
        if self.email:
            data["email"] = self.email
        return data


@dataclass(frozen=True)
class StepPace:
    accept_after: float       # office hours from hand-over to acceptance
    work: float               # office hours from acceptance to completion


@dataclass(frozen=True)
class Fate:
    """What becomes of a dossier; durations are office hours after the event they follow."""
    paces: tuple                      # StepPace per stage
    incomplete_first: bool = False    # a guidance slip first; the citizen comes back complete
    desk_refusal: bool = False        # an online submission the desk refuses (status 3)
    accept_after: float = 0.5         # an online submission waits for the desk this long
    payment: str | None = None        # cash, transfer, online; None: nothing to pay
    pay_after: float = 0.1
    supplement_stage: int | None = None   # the agency of this stage asks for the one supplement
    supplement_after: float = 8.0         # the citizen brings it after this long
    refuse_stage: int | None = None       # the agency of this stage refuses
    obligation: int = 0                   # VND of a financial obligation (tax), 0: none
    obligation_paid_after: float = 6.0
    withdraw_after: float | None = None   # the citizen withdraws (if still running)
    apology_after: float | None = 1.0     # the agency at fault apologises; None: forgets
    apology_reason: str = APOLOGY_REASONS[0]
    collect_after: float = 1.0            # the citizen collects the result


@dataclass(frozen=True)
class Arrival:
    id: int
    unit: str
    at: datetime              # when the citizen comes to the desk (or submits online)
    procedure: str
    channel: str              # in_person, post, online
    citizen: Citizen
    pages: int
    copies: int
    fate: Fate
    documents: tuple = field(default=())


# --- time ------------------------------------------------------------------------------------

def _periods(day: date) -> list[tuple[datetime, datetime]]:
    return [(datetime.combine(day, start, tzinfo=TZ), datetime.combine(day, end, tzinfo=TZ))
            for start, end in (MORNING, AFTERNOON)]


def office_time(start: datetime, hours: float, calendar: WorkingCalendar) -> datetime:
    """The instant when ``hours`` of office time have passed since ``start`` (local office hours
    of working days; from a moment outside them, counting starts at the next opening)."""
    remaining = timedelta(hours=max(hours, 0.0))
    local = start.astimezone(TZ)
    day = local.date()
    while True:
        if calendar.is_working_day(day):
            for begin, end in _periods(day):
                if local >= end:
                    continue
                begin = max(begin, local)
                if begin + remaining <= end:
                    return begin + remaining
                remaining -= end - begin
        day += timedelta(days=1)
        local = datetime.combine(day, time(0), tzinfo=TZ)


def is_office_hour(at: datetime, calendar: WorkingCalendar) -> bool:
    local = at.astimezone(TZ)
    return calendar.is_working_day(local.date()) and any(b <= local < e for b, e in _periods(local.date()))


# --- drawing -----------------------------------------------------------------------------------

def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method, fine for the small means used here)."""
    if mean <= 0:
        return 0
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def citizen(rng: random.Random, ward_name: str) -> Citizen:
    sex = rng.choice("mf")
    name = f"{rng.choice(SURNAMES)} {rng.choice(MIDDLE[sex])} {rng.choice(GIVEN[sex])}"
    born = rng.randint(1950, 2007)
    century_sex = (0 if born < 2000 else 2) + (0 if sex == "m" else 1)
    id_number = f"079{century_sex}{born % 100:02d}{rng.randrange(10**6):06d}"
    phone = rng.choice(PHONE_PREFIXES) + f"{rng.randrange(10**7):07d}"
    address = f"{rng.randint(1, 480)} {rng.choice(STREETS)}, {ward_name}, quận Gò Vấp"
    email = None
    if rng.random() < 0.35:
        email = name.lower().translate(ASCII).replace(" ", ".") + f"{rng.randint(1, 99)}@example.vn"
    return Citizen(name, id_number, address, phone, email)


def _arrival_time(rng: random.Random, day: date) -> datetime:
    """A desk arrival: busier in the morning (60 %), within office hours, to the minute."""
    begin, end = _periods(day)[0] if rng.random() < 0.6 else _periods(day)[1]
    minutes = int((end - begin).total_seconds() // 60) - 1
    return begin + timedelta(minutes=rng.randint(0, minutes))


def _online_time(rng: random.Random, day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=TZ) + timedelta(minutes=rng.randint(6 * 60, 23 * 60 + 59))


def _pick(rng: random.Random, procedures: Sequence[ProcedureInfo]) -> ProcedureInfo:
    weights = [PROCEDURE_WEIGHT.get(p.code, 1) for p in procedures]
    return rng.choices(procedures, weights=weights)[0]


def stage_budget_hours(days: int) -> float:
    return days * OFFICE_DAY_HOURS if days > 0 else SAME_DAY_BUDGET_HOURS


def _pace(rng: random.Random, procedure: ProcedureInfo, stage: int, unit: str) -> StepPace:
    agencies = [unit if agency == "self" else agency for agency, _ in procedure.stages[stage]]
    days = max(d for _, d in procedure.stages[stage])
    speed, late = max((AGENCY_PACE.get(a, DEFAULT_PACE) for a in agencies), key=lambda p: p[1])
    budget = stage_budget_hours(days)
    if rng.random() < late:
        # runs late: past its share (a same-day step spills over into the next days)
        factor = rng.uniform(3.0, 8.0) if days == 0 else rng.uniform(1.1, 1.9)
    else:
        factor = rng.uniform(0.15, 1.0) * speed / 0.6
        factor = min(factor, 0.95)
    accept = rng.uniform(0.05, 0.15 if procedure.same_day else 1.5)
    return StepPace(accept_after=round(accept, 3), work=round(max(budget * factor - accept, 0.1), 3))


def fate(rng: random.Random, procedure: ProcedureInfo, channel: str, unit: str) -> Fate:
    paces = tuple(_pace(rng, procedure, stage, unit) for stage in range(len(procedure.stages)))
    stages = len(procedure.stages)
    payment = None
    if procedure.fees:
        if channel == "online":
            payment = "online" if rng.random() < 0.75 else "transfer"
        else:
            roll = rng.random()
            payment = "cash" if roll < 0.85 else ("transfer" if roll < 0.93 else "online")
    supplement_stage = refuse_stage = None
    roll = rng.random()
    if roll < 0.07:
        if not procedure.same_day:                 # the one supplement the law allows
            supplement_stage = rng.randrange(stages)
    elif roll < 0.095:
        refuse_stage = rng.randrange(stages)
    obligation = 0
    if any(agency == TAX_AGENCY for stage in procedure.stages for agency, _ in stage) and rng.random() < 0.6:
        obligation = rng.randint(5, 150) * 1_000_000
    withdraw = rng.uniform(2, 20) if not procedure.same_day and rng.random() < 0.03 else None
    return Fate(
        paces=paces,
        incomplete_first=channel != "online" and rng.random() < 0.08,
        desk_refusal=channel == "online" and rng.random() < 0.08,
        accept_after=round(rng.uniform(0.1, 3.0), 3),
        payment=payment,
        pay_after=round(rng.uniform(0.05, 0.3) if payment == "cash" else rng.uniform(0.2, 8.0), 3),
        supplement_stage=supplement_stage,
        supplement_after=round(rng.uniform(3, 24), 3),
        refuse_stage=refuse_stage,
        obligation=obligation,
        obligation_paid_after=round(rng.uniform(2, 16), 3),
        withdraw_after=round(withdraw, 3) if withdraw else None,
        apology_after=round(rng.uniform(0.2, 3.0), 3) if rng.random() < 0.9 else None,
        apology_reason=rng.choice(APOLOGY_REASONS),
        collect_after=round(rng.uniform(0.2, 1.5) if procedure.same_day else rng.uniform(0.5, 12.0), 3),
    )


def _quantities(rng: random.Random, procedure: ProcedureInfo) -> tuple[int, int]:
    pages = rng.choice((1, 1, 2, 2, 3, 4, 5, 8, 12)) if procedure.per_page else 1
    copies = rng.choice((1, 1, 1, 2, 2, 3, 5)) if (procedure.per_copy or procedure.per_page) else 1
    return pages, copies


def unit_rate(unit: UnitInfo) -> float:
    if unit.kind == DISTRICT_KIND:
        return 1.0
    return WARD_WEIGHT.get(unit.code.split(".")[1], 1.0)


def plan(*, seed: int, start: date, days: int, units: Sequence[UnitInfo], procedures: Sequence[ProcedureInfo],
         calendar: WorkingCalendar, scale: float = 1.0) -> list[Arrival]:
    """Every arrival of the simulated period, in time order (ties by unit, then draw order)."""
    rng = random.Random(seed)
    arrivals: list[tuple[datetime, str, int, Arrival]] = []
    counter = 0
    for offset in range(days):
        day = start + timedelta(days=offset)
        working = calendar.is_working_day(day)
        for unit in units:
            level = "district" if unit.kind == DISTRICT_KIND else "ward"
            offered = [p for p in procedures if p.level == level]
            online = [p for p in offered if p.online_level in ("partial", "full")]
            weight = unit_rate(unit) * scale
            draws = []
            if working:
                draws += [("desk", _arrival_time)] * poisson(rng, DESK_RATE[level] * weight)
            if online:
                draws += [("online", _online_time)] * poisson(rng, ONLINE_RATE[level] * weight)
            for how, when in draws:
                procedure = _pick(rng, online if how == "online" else offered)
                channel = "online" if how == "online" else ("post" if rng.random() < 0.05 else "in_person")
                at = when(rng, day)
                pages, copies = _quantities(rng, procedure)
                counter += 1
                arrival = Arrival(id=counter, unit=unit.code, at=at, procedure=procedure.code, channel=channel,
                                  citizen=citizen(rng, unit.short_name if level == "ward" else "Phường 10"),
                                  pages=pages, copies=copies, fate=fate(rng, procedure, channel, unit.code),
                                  documents=procedure.documents)
                arrivals.append((at, unit.code, counter, arrival))
    arrivals.sort(key=lambda item: item[:3])
    return [item[3] for item in arrivals]


def select_units(all_units: Iterable[UnitInfo], wanted: Sequence[str] | None) -> list[UnitInfo]:
    """The desks to simulate: all, or those named by code, short name or ward number
    ("000.05.20.H29", "Phường 5", "5", "district"). Unknown names raise ValueError."""
    desks = list(all_units)
    if not wanted:
        return desks
    chosen: list[UnitInfo] = []
    for name in wanted:
        key = name.strip().lower()
        match = [u for u in desks if key in (u.code.lower(), u.short_name.lower())
                 or (u.kind == DISTRICT_KIND and key in ("district", "quận", "quan"))
                 or (u.kind != DISTRICT_KIND and key.lstrip("0") == u.code.split(".")[1].lstrip("0")
                     and key.isdigit())]
        if not match:
            raise ValueError(f"no desk {name!r}: use a unit code, a short name (Phường 5), a ward number or district")
        chosen += [u for u in match if u not in chosen]
    return [u for u in desks if u in chosen]


def summary(arrivals: Sequence[Arrival]) -> dict:
    """What the plan holds, for the report (counts by channel and by fate)."""
    return {
        "arrivals": len(arrivals),
        "online": sum(a.channel == "online" for a in arrivals),
        "post": sum(a.channel == "post" for a in arrivals),
        "guidance_slips": sum(a.fate.incomplete_first for a in arrivals),
        "desk_refusals": sum(a.fate.desk_refusal for a in arrivals),
        "supplements_planned": sum(a.fate.supplement_stage is not None for a in arrivals),
        "agency_refusals_planned": sum(a.fate.refuse_stage is not None for a in arrivals),
        "obligations_planned": sum(a.fate.obligation > 0 for a in arrivals),
    }
