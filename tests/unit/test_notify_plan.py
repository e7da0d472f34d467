"""Quiet hours for SMS to citizens, and the idempotency key of a message (services/notify/messages.py)."""
from datetime import datetime, time, timedelta, timezone

import pytest

from motcua.contracts.events import Envelope
from services.notify.messages import after_quiet_hours, in_quiet_hours, message_key

VN = timezone(timedelta(hours=7))
NIGHT = (time(21, 0), time(7, 0))


@pytest.mark.parametrize("local, quiet", [
    ("20:59", False), ("21:00", True), ("23:30", True), ("00:00", True), ("06:59", True), ("07:00", False),
    ("12:00", False),
])
def test_quiet_hours_across_midnight(local, quiet):
    hour, minute = map(int, local.split(":"))
    assert in_quiet_hours(datetime(2026, 3, 2, hour, minute, tzinfo=VN), NIGHT) is quiet


def test_quiet_hours_are_decided_in_local_time():
    # 14:30 UTC is 21:30 in Vietnam: quiet.
    assert in_quiet_hours(datetime(2026, 3, 2, 14, 30, tzinfo=timezone.utc), NIGHT)


def test_a_message_queued_at_night_waits_for_the_morning():
    assert after_quiet_hours(datetime(2026, 3, 2, 22, 15, tzinfo=VN), NIGHT) == datetime(2026, 3, 3, 7, 0, tzinfo=VN)
    assert after_quiet_hours(datetime(2026, 3, 3, 5, 0, tzinfo=VN), NIGHT) == datetime(2026, 3, 3, 7, 0, tzinfo=VN)
    day = datetime(2026, 3, 3, 9, 0, tzinfo=VN)
    assert after_quiet_hours(day, NIGHT) == day


def test_no_quiet_hours_when_start_equals_end():
    assert not in_quiet_hours(datetime(2026, 3, 2, 23, 0, tzinfo=VN), (time(0, 0), time(0, 0)))


def test_the_idempotency_key_is_per_event_channel_and_recipient_without_the_address():
    event = Envelope(type="dossier.received", payload={}, unit="000.05.20.H29")
    other = Envelope(type="dossier.received", payload={}, unit="000.05.20.H29")
    key = message_key(event.id, "sms", "0903123456")
    assert key == message_key(event.id, "sms", "0903123456")
    assert key != message_key(event.id, "email", "0903123456") and key != message_key(event.id, "sms", "0903123457")
    assert key != message_key(other.id, "sms", "0903123456")
    assert "0903123456" not in key and key.startswith(event.id)
