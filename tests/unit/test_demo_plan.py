"""The demo's simulation plan: pure, seeded, and realistic where it matters."""
import random
from collections import Counter
from datetime import date, datetime, timedelta

import pytest

from motcua.contracts.calendar import TZ, default_calendar
from apps.registry import DEFAULT_CATALOGUE
from apps.demo import catalogue_infos
from apps.demo import plan as planning
from apps.demo.driver import ticks
from services.intake import domain as intake_domain

CALENDAR = default_calendar()
UNITS, PROCEDURES = catalogue_infos(DEFAULT_CATALOGUE)
BY_CODE = {p.code: p for p in PROCEDURES}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


def week(seed=1, days=5, units=None, scale=1.0, start=planning.DEFAULT_START):
    return planning.plan(seed=seed, start=start, days=days, units=units or UNITS, procedures=PROCEDURES,
                         calendar=CALENDAR, scale=scale)


def test_the_default_week_holds_a_public_holiday():
    days = [planning.DEFAULT_START + timedelta(days=i) for i in range(5)]
    assert planning.DEFAULT_START.weekday() == 0
    off = [d for d in days if not CALENDAR.is_working_day(d)]
    assert off == [date(2026, 11, 24)] and CALENDAR.day_off_name(off[0])


def test_the_catalogue_gives_the_17_desks_and_every_procedure():
    assert len(UNITS) == 17 and sum(u.kind == "district" for u in UNITS) == 1
    assert {"2.000815", "1.013831", "9.000001"} <= set(BY_CODE)
    land = BY_CODE["1.013831"]
    assert [stage[0][0] for stage in land.stages] == ["000.41.20.H29", "000.42.20.H29", "000.41.20.H29"]
    assert BY_CODE["2.000815"].per_page and BY_CODE["2.000815"].same_day
    assert not BY_CODE["1.000894"].fees            # marriage registration is free


def test_the_same_seed_gives_the_same_plan_and_another_seed_another():
    assert week(seed=7) == week(seed=7)
    assert week(seed=7) != week(seed=8)


def test_arrivals_come_in_office_hours_of_working_days_except_online():
    arrivals = week()
    assert arrivals == sorted(arrivals, key=lambda a: (a.at, a.unit, a.id))
    desk = [a for a in arrivals if a.channel != "online"]
    online = [a for a in arrivals if a.channel == "online"]
    assert desk and online
    assert all(planning.is_office_hour(a.at, CALENDAR) for a in desk)
    assert not any(a.at.astimezone(TZ).date() == date(2026, 11, 24) for a in desk)      # the holiday
    assert any(not planning.is_office_hour(a.at, CALENDAR) for a in online)               # citizens online at night
    assert all(BY_CODE[a.procedure].online_level != "none" for a in online)
    first, last = planning.DEFAULT_START, planning.DEFAULT_START + timedelta(days=4)
    assert all(first <= a.at.astimezone(TZ).date() <= last for a in arrivals)


def test_each_desk_offers_the_procedures_of_its_level():
    for arrival in week():
        unit = next(u for u in UNITS if u.code == arrival.unit)
        assert BY_CODE[arrival.procedure].level == ("district" if unit.kind == "district" else "ward")


def test_scale_multiplies_arrivals_and_the_mix_is_realistic():
    small, large = len(week(scale=0.5)), len(week(scale=2.0))
    assert 2.5 < large / small < 6
    arrivals = week(scale=3.0)
    procedures = Counter(a.procedure for a in arrivals)
    assert procedures.most_common(1)[0][0] == "2.000815"      # certified copies lead at the wards
    channels = Counter(a.channel for a in arrivals)
    assert channels["in_person"] > channels["online"] > channels["post"] > 0
    fates = planning.summary(arrivals)
    for key in ("guidance_slips", "desk_refusals", "supplements_planned", "agency_refusals_planned",
                "obligations_planned"):
        assert 0 < fates[key] < 0.2 * len(arrivals), key
    late = sum(any(p.work + p.accept_after > planning.stage_budget_hours(max(d for _, d in stage))
                   for p, stage in zip(a.fate.paces, BY_CODE[a.procedure].stages)) for a in arrivals)
    assert 0 < late < 0.3 * len(arrivals)


def test_payments_follow_fees_and_channels():
    for arrival in week(scale=2.0):
        procedure = BY_CODE[arrival.procedure]
        if not procedure.fees:
            assert arrival.fate.payment is None
        elif arrival.channel == "online":
            assert arrival.fate.payment in ("online", "transfer")
        else:
            assert arrival.fate.payment in ("cash", "transfer", "online")
        if arrival.fate.obligation:
            assert any(agency == planning.TAX_AGENCY for stage in procedure.stages for agency, _ in stage)
            assert arrival.fate.obligation % 1_000_000 == 0


def test_citizens_are_fake_but_well_formed():
    rng = random.Random(3)
    for _ in range(300):
        citizen = planning.citizen(rng, "Phường 5")
        applicant = intake_domain.parse_applicant(citizen.as_applicant())     # the desk's own validation
        assert len(applicant.id_number) == 12 and applicant.id_number.startswith("079")
        assert applicant.phone.startswith("0") and len(applicant.phone) == 10
        assert "Phường 5" in citizen.address
        assert citizen.email is None or citizen.email.endswith("@example.vn")


def test_office_time_counts_office_hours_of_working_days_only():
    assert planning.office_time(at("2026-11-23T08:00"), 2, CALENDAR) == at("2026-11-23T10:00")
    # over lunch: 11:00 + 1 h = 11:30 + 0.5 h after 13:00
    assert planning.office_time(at("2026-11-23T11:00"), 1, CALENDAR) == at("2026-11-23T13:30")
    # past closing on Monday, over the Tuesday holiday, to Wednesday morning
    assert planning.office_time(at("2026-11-23T16:00"), 2, CALENDAR) == at("2026-11-25T08:30")
    # from the night, counting starts at the next opening; Friday evening -> Monday
    assert planning.office_time(at("2026-11-27T22:00"), 0.5, CALENDAR) == at("2026-11-30T08:00")
    assert planning.office_time(at("2026-11-23T09:00"), 0, CALENDAR) == at("2026-11-23T09:00")
    # a whole office day is 8 hours
    assert planning.office_time(at("2026-11-25T07:30"), 8, CALENDAR) == at("2026-11-25T17:00")


def test_poisson_has_the_right_mean():
    rng = random.Random(5)
    draws = [planning.poisson(rng, 3.0) for _ in range(4000)]
    assert abs(sum(draws) / len(draws) - 3.0) < 0.15
    assert planning.poisson(rng, 0) == 0


def test_units_are_chosen_by_code_short_name_number_or_district():
    chosen = planning.select_units(UNITS, ["5", "Phường 10", "000.17.20.H29", "district"])
    assert [u.code for u in chosen] == ["000.00.20.H29", "000.05.20.H29", "000.10.20.H29", "000.17.20.H29"]
    assert planning.select_units(UNITS, None) == UNITS
    with pytest.raises(ValueError, match="Phường 2"):
        planning.select_units(UNITS, ["Phường 2"])        # there is no Phường 2


def test_ticks_are_ten_minutes_in_office_hours_and_hourly_otherwise():
    start = at("2026-11-23T00:00")
    moments = ticks(start, start + timedelta(days=2), CALENDAR)
    assert moments[0] == start and at("2026-11-23T07:30") in moments
    monday = [m for m in moments if m.date() == date(2026, 11, 23)]
    office = [m for m in monday if planning.is_office_hour(m, CALENDAR)]
    assert office[1] - office[0] == timedelta(minutes=10)
    holiday = [m for m in moments if m.astimezone(TZ).date() == date(2026, 11, 24)]
    assert len(holiday) == 24                       # nobody works on the holiday: hourly
    assert moments == sorted(set(moments))
