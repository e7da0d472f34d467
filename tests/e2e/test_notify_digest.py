"""The unit heads' daily digest: at the start of a working day, once per unit, with what was
received the working day before, what is due today and what is overdue (issue 5).

In a module of its own: its notify runs on the moved clock, and no other notify may claim the digest."""
from urllib.parse import quote

import requests
from sqlalchemy import text

from tests.e2e.conftest import ServiceProcess, ran_again
from tests.e2e.test_intake_desk import APPLICANT, DOCUMENTS, MARITAL_STATUS, wait_for
from tests.e2e.test_notify import Fake

WARD_5 = "000.05.20.H29"
DESK = {"X-Official": quote("Trần Văn Bình"), "X-Unit": WARD_5}
HEAD = "truong.phuong5@example.gov.vn"


def digests_queued(engine) -> int:
    """Digest messages notify recorded (before any is sent): what "no digest" is read from."""
    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM notify.messages WHERE template = 'daily_digest'")
                                  ).scalar_one()


def test_the_digest_goes_once_at_the_start_of_a_working_day(process_env, catalog_process, clock, engine, tmp_path):
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE notify.dossiers, notify.messages, notify.digests, notify.processed_events"))
    smtp = Fake("tests.fakes.smtp_server", tmp_path / "mail.jsonl")
    officials = tmp_path / "officials.yml"
    officials.write_text(f'units:\n  "{WARD_5}":\n    email: ["{HEAD}"]\n')
    clock("2026-03-02T06:50:00+07:00")                # Monday, before the digest's hour: two dossiers
    env = {**process_env, "CLOCK_FILE": str(clock.path)}
    intake = ServiceProcess("intake", env, tmp_path).start()
    notify = ServiceProcess("notify", {**env, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port),
                                       "OFFICIALS_FILE": str(officials), "DIGEST_CHECK_SECONDS": "0.3",
                                       "QUIET_HOURS": "00:00-00:00"}, tmp_path)
    try:
        notify.start()
        codes = [requests.post(intake.url + "/api/v1/dossiers", headers=DESK, timeout=10, json={
            "procedure_code": MARITAL_STATUS, "applicant": {**APPLICANT, "email": None},
            "notifications": {"channels": ["sms"], "optional": False}, "documents": DOCUMENTS}).json()["code"]
            for _ in range(2)]
        wait_for(lambda: all(requests.get(f"{notify.url}/api/v1/dossiers/{c}/messages", headers=DESK,
                                          timeout=5).status_code == 200 for c in codes), timeout=20)
        ran_again([notify], "daily_digest")           # checks that began after: none queued a digest
        assert digests_queued(engine) == 0 and [m for m in smtp.lines() if m["to"] == HEAD] == []
        clock("2026-03-05T07:25:00+07:00")            # Thursday, before the digest's hour: nothing
        ran_again([notify], "daily_digest")
        assert digests_queued(engine) == 0 and [m for m in smtp.lines() if m["to"] == HEAD] == []
        clock("2026-03-05T07:31:00+07:00")            # the appointment of both (3 working days) is today
        digest = wait_for(lambda: [m for m in smtp.lines() if m["to"] == HEAD], timeout=20)
        ran_again([notify], "daily_digest")           # several more checks: still one digest
        assert digests_queued(engine) == 1 and len([m for m in smtp.lines() if m["to"] == HEAD]) == 1
        body = digest[0]["body"]
        assert all(code in body for code in codes)
        assert "05/03/2026" in body
        clock("2026-03-07T08:00:00+07:00")            # Saturday: no digest
        ran_again([notify], "daily_digest")
        assert digests_queued(engine) == 1 and len([m for m in smtp.lines() if m["to"] == HEAD]) == 1
    finally:
        notify.stop()
        intake.stop()
        smtp.stop()


def test_a_busy_desk_gets_counts_and_n_codes_and_a_broken_template_fails_once_for_the_day(
        process_env, catalog_process, clock, engine, tmp_path):
    """Through the real process and PostgreSQL (SqlDigests): with DIGEST_MAX_CODES=1 the digest counts
    both dossiers due today and lists one; a digest template an official saved that breaks on the
    day's data is recorded as failed (digests.state) once, and nothing is sent or tried again."""
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE notify.dossiers, notify.messages, notify.digests, notify.processed_events, "
                                "notify.templates"))
    smtp = Fake("tests.fakes.smtp_server", tmp_path / "mail.jsonl")
    officials = tmp_path / "officials.yml"
    officials.write_text(f'units:\n  "{WARD_5}":\n    email: ["{HEAD}"]\n')
    clock("2026-03-02T06:50:00+07:00")
    env = {**process_env, "CLOCK_FILE": str(clock.path)}
    intake = ServiceProcess("intake", env, tmp_path).start()
    notify = ServiceProcess("notify", {**env, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port),
                                       "OFFICIALS_FILE": str(officials), "DIGEST_CHECK_SECONDS": "0.3",
                                       "DIGEST_MAX_CODES": "1", "DIGEST_LIST_URL": "http://desk.example/api/v1/due",
                                       "QUIET_HOURS": "00:00-00:00"}, tmp_path)
    try:
        notify.start()
        codes = sorted(requests.post(intake.url + "/api/v1/dossiers", headers=DESK, timeout=10, json={
            "procedure_code": MARITAL_STATUS, "applicant": {**APPLICANT, "email": None},
            "notifications": {"channels": ["sms"], "optional": False}, "documents": DOCUMENTS}).json()["code"]
            for _ in range(2))
        wait_for(lambda: all(requests.get(f"{notify.url}/api/v1/dossiers/{c}/messages", headers=DESK,
                                          timeout=5).status_code == 200 for c in codes), timeout=20)
        clock("2026-03-05T07:31:00+07:00")            # both due today
        [digest] = wait_for(lambda: [m for m in smtp.lines() if m["to"] == HEAD], timeout=20)
        body = digest["body"]
        assert "Hồ sơ đến hạn hôm nay: 2" in body and "… và 1 hồ sơ khác" in body
        assert codes[0] in body and codes[1] not in body                 # the first received
        assert "Danh sách đầy đủ: http://desk.example/api/v1/due" in body

        # an official's template: valid with the sample (it has overdue codes), broken on a day without
        saved = requests.put(f"{notify.url}/api/v1/templates/daily_digest/email", headers=DESK, timeout=10,
                             json={"subject": "Tổng hợp", "body": "Quá hạn lâu nhất: {{ overdue[0] }}"})
        assert saved.status_code == 200, saved.text
        clock("2026-03-06T07:31:00+07:00")            # Friday: nobody is overdue (routing said nothing)

        def failed_row():
            with engine.connect() as connection:
                return connection.execute(text("SELECT state, reason FROM notify.digests WHERE unit = :u AND "
                                               "day = '2026-03-06'"), {"u": WARD_5}).all()
        [(state, reason)] = wait_for(failed_row, timeout=20)
        assert state == "failed" and "daily_digest, email" in reason
        ran_again([notify], "daily_digest")           # several more checks: not tried again, nothing sent
        assert digests_queued(engine) == 1 and len([m for m in smtp.lines() if m["to"] == HEAD]) == 1
        assert len(failed_row()) == 1
        assert "digest failed to render" in notify.log_path.read_text()
    finally:
        notify.stop()
        intake.stop()
        smtp.stop()
