"""The citizen's status page (GET /tra-cuu) shows dates and times as a Vietnamese reader writes them
(``10:16, 04/12/2026``, ``09/12/2026``), while the JSON API keeps ISO values. Catalog and intake run as
real processes; the page is also rendered by headless Chromium."""
import re
from urllib.parse import urlencode

import pytest
import requests

from tests.e2e.conftest import ServiceProcess
from tests.e2e.test_catalog_page import render
from tests.fakes.officials import official_headers

WARD_5 = "000.05.20.H29"
DESK_5 = official_headers("Trần Văn Bình", WARD_5)
MARITAL_STATUS = "1.004873"   # 3 working days
APPLICANT = {"name": "Nguyễn Thị Lan", "id_number": "079203001234", "address": "12 Lê Đức Thọ, Phường 5",
             "phone": "0903123456", "email": "lan@example.vn"}
DOCUMENTS = [{"name": "Tờ khai cấp Giấy xác nhận tình trạng hôn nhân (theo mẫu)", "form": "original", "count": 1},
             {"name": "Giấy tờ tùy thân của người yêu cầu (xuất trình)", "form": "original", "count": 1}]
ISO_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@pytest.fixture(scope="module")
def intake(process_env, catalog_process, clock, tmp_path_factory):
    clock("2026-12-04T10:16:00.723203+07:00")   # a Friday: 3 working days -> Wednesday 9/12
    service = ServiceProcess("intake", {**process_env, "CLOCK_FILE": str(clock.path)},
                             tmp_path_factory.mktemp("intake-dates"))
    service.start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def received(intake):
    body = {"procedure_code": MARITAL_STATUS, "applicant": APPLICANT, "channel": "in_person",
            "documents": DOCUMENTS, "sets": 1}
    answer = requests.post(intake.url + "/api/v1/dossiers", json=body, headers=DESK_5, timeout=10)
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


def page_url(intake, received) -> str:
    return f"{intake.url}/tra-cuu?{urlencode({'code': received['code'], 'secret': received['secret']})}"


def test_the_status_page_shows_vietnamese_dates_and_times(intake, received):
    page = requests.get(page_url(intake, received), timeout=10)
    assert page.status_code == 200
    assert "Ngày hẹn trả kết quả: 09/12/2026" in page.text
    assert "<td>10:16, 04/12/2026</td>" in page.text
    # Friday 10:16 to 11:30 and 13:00 to 17:00, then Monday to Wednesday, in office hours.
    assert "Thời gian còn lại: <strong>còn 3 ngày 5 giờ làm việc</strong>" in page.text
    assert not ISO_INSTANT.search(page.text) and not ISO_DATE.search(page.text)


def test_the_json_api_keeps_iso_values(intake, received):
    status = requests.get(f"{intake.url}/api/v1/status/{received['code']}",
                          params={"secret": received["secret"]}, timeout=10).json()
    assert status["appointment_date"] == "2026-12-09"
    assert status["remaining"] == received["remaining"] == "còn 3 ngày 5 giờ làm việc"
    assert status["history"] and all(ISO_INSTANT.match(h["at"]) for h in status["history"])
    assert status["history"][0]["at"].startswith("2026-12-04T10:16")


def test_the_rendered_page_reads_as_a_vietnamese_reader_expects(intake, received, tmp_path):
    page = render(page_url(intake, received), tmp_path)
    assert page.by_id["appointment"] == "Ngày hẹn trả kết quả: 09/12/2026"
    assert page.by_id["remaining"] == "Thời gian còn lại: còn 3 ngày 5 giờ làm việc"
    history = [row for row in page.rows if "Đã tiếp nhận" in row]
    assert history and history[0].startswith("10:16, 04/12/2026")
