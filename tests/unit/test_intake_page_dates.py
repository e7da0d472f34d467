"""The status page's date filters: ISO text (as the JSON API answers) to what a Vietnamese reader writes."""
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.intake.page_dates import vn_date, vn_instant
from services.intake.service import PAGES

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")


@pytest.mark.parametrize("value, shown", [
    ("2026-12-04T10:16:00.723203+07:00", "10:16, 04/12/2026"),
    ("2026-12-04T03:16:59+00:00", "10:16, 04/12/2026"),          # UTC shown on the Vietnamese clock
    ("2026-12-04T18:30:00+00:00", "01:30, 05/12/2026"),          # past local midnight: the next day
    (datetime(2026, 1, 2, 8, 5, tzinfo=VIETNAM), "08:05, 02/01/2026"),
    ("2026-12-04", "04/12/2026"),
    (None, ""),
])
def test_vn_instant(value, shown):
    assert vn_instant(value) == shown


@pytest.mark.parametrize("value, shown", [
    ("2026-12-09", "09/12/2026"),
    (date(2026, 1, 10), "10/01/2026"),
    ("2026-12-04T18:30:00+00:00", "05/12/2026"),
    (None, ""),
])
def test_vn_date(value, shown):
    assert vn_date(value) == shown


@given(st.datetimes(min_value=datetime(2015, 1, 1), max_value=datetime(2040, 12, 31), timezones=st.just(timezone.utc)))
def test_an_instant_reads_back_to_its_minute_in_vietnam(moment):
    shown = vn_instant(moment.isoformat())
    back = datetime.strptime(shown, "%H:%M, %d/%m/%Y").replace(tzinfo=VIETNAM)
    local = moment.astimezone(VIETNAM).replace(second=0, microsecond=0)
    assert back == local
    assert vn_date(moment.isoformat()) == shown.split(", ")[1]
    assert abs(back - moment) < timedelta(minutes=1)


def test_the_status_template_shows_vietnamese_dates():
    status = {"code": "000.05.20.H29-261204-0001", "procedure": "x", "applicant": "N. T. L.",
              "status": "2", "status_text": "Đã tiếp nhận", "appointment_date": "2026-12-09", "result_class": None,
              "history": [{"at": "2026-12-04T10:16:00.723203+07:00", "status": "2", "status_text": "Đã tiếp nhận"}]}
    page = PAGES.get_template("status.html").render(status=status, code=status["code"])
    assert "Ngày hẹn trả kết quả: 09/12/2026" in page
    assert "<td>10:16, 04/12/2026</td>" in page
    assert "2026-12-04T" not in page and "2026-12-09" not in page
