"""notify's use cases through its handlers (services/notify/handlers.py), against in-memory fakes
of the repository and the unit of work: no PostgreSQL, no broker, milliseconds each."""
from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from motcua.contracts.events import new_event
from motcua.contracts.refusals import Invalid, NotFound
from services.notify import metrics, templates
from services.notify.handlers import (
    HANDLERS,
    Consume,
    RecordFailure,
    RecordSent,
    ReportDelivery,
    SaveTemplate,
    DigestQueued,
    SendDigest,
    delivery_report,
    handle,
)
from services.notify.messages import (
    REACTIONS,
    Context,
    DossierMessages,
    Message,
    MessageFailed,
    MessageRetried,
    MessageSent,
    Codes,
    DigestFailed,
    DigestFigures,
    Policy,
    UnknownDossier,
    after_quiet_hours,
    backoff,
    digest_figures,
    in_quiet_hours,
)

VN = timezone(timedelta(hours=7))
WARD_5, TAX = "000.05.20.H29", "000.42.20.H29"
CODE = "000.05.20.H29-260302-0001"
PHONE, EMAIL = "0903123456", "lan@example.vn"
OFFICIALS = {TAX: {"email": ["thue@example.gov.vn"], "webhook": "http://127.0.0.1:1/hook"},
             WARD_5: {"email": ["truong.phuong5@example.gov.vn"]}}
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=VN)
NO_QUIET = (time(0, 0), time(0, 0))


# --- fakes ----------------------------------------------------------------------------------------

class FakeDossiers:
    def __init__(self, db: dict):
        self.db = db
        self.seen: list[DossierMessages] = []
        self.lost: list[DossierMessages] = []

    def _track(self, aggregate):
        self.seen.append(aggregate)
        return aggregate

    def get(self, code, *, lock=True):
        messages = [copy.deepcopy(m) for m in self.db["messages"] if m.code == code]
        return self._track(DossierMessages(code, copy.deepcopy(self.db["dossiers"].get(code)), messages))

    def for_unit(self, unit):
        return self._track(DossierMessages(None))

    def open_at(self, units):
        return sorted(code for code, d in self.db["dossiers"].items() if d.unit in units and d.open)

    def _one(self, test):
        found = next((m for m in self.db["messages"] if test(m)), None)
        return None if found is None else self._track(DossierMessages(found.code, None, [copy.deepcopy(found)]))

    def with_message(self, message_id):
        return self._one(lambda m: m.id == message_id)

    def leased(self, row):
        """As the dispatcher's lease returned it: nothing read; saved only while still 'sending'."""
        aggregate = self._track(DossierMessages(row.code, None, [copy.deepcopy(row)]))
        aggregate.leased = True
        return aggregate

    def was_lost(self, aggregate):
        return any(lost is aggregate for lost in self.lost)

    def with_provider_id(self, provider_id):
        return self._one(lambda m: m.provider_id == provider_id)

    def save(self, aggregate):
        if getattr(aggregate, "leased", False):
            [message] = aggregate.messages
            stored = next(m for m in self.db["messages"] if m.id == message.id)
            if stored.state != "sending":            # UPDATE … WHERE state = 'sending' found nothing
                self.lost.append(aggregate)
                aggregate.events = []
                return False
        if aggregate.dossier is not None:
            self.db["dossiers"][aggregate.dossier.code] = copy.deepcopy(aggregate.dossier)
        for message in aggregate.messages:
            if message.id is None:
                if any(m.idempotency_key == message.idempotency_key for m in self.db["messages"]):
                    continue
                message.id = len(self.db["messages"]) + 1
                self.db["messages"].append(copy.deepcopy(message))
            else:
                index = next(i for i, m in enumerate(self.db["messages"]) if m.id == message.id)
                self.db["messages"][index] = copy.deepcopy(message)
        return True


class FakeTemplates:
    def __init__(self, db: dict):
        self.db = db

    def get(self, key, channel):
        return self.db["templates"].get((key, channel)) or templates.defaults()[(key, channel)]

    def save(self, template, by):
        self.pending = (template, by)


class FakeDigests:
    def __init__(self, db: dict):
        self.db = db
        self.pending: set = set()

    def claim(self, unit, day, now):
        if (unit, day) in self.db["digests"] | self.pending:
            return False
        self.pending.add((unit, day))
        return True

    def failed(self, unit, day, reason):
        assert (unit, day) in self.pending, "only a digest claimed in this unit of work is marked failed"
        self.failed_pending = {**getattr(self, "failed_pending", {}), (unit, day): reason}

    def figures(self, unit, since, today, limit=50):
        return digest_figures(list(self.db["dossiers"].values()), unit, since, today, limit)


class FakeInbox:
    def __init__(self, db: dict):
        self.db = db
        self.pending: set = set()

    def first_time(self, event):
        if event.id in self.db["inbox"] | self.pending:
            return False
        self.pending.add(event.id)
        return True


class FakeUnitOfWork:
    """Nothing reaches ``db`` (the committed state) until ``commit``."""

    def __init__(self):
        self.db = {"dossiers": {}, "messages": [], "templates": {}, "digests": set(), "inbox": set(),
                   "failed_digests": {}}
        self.commits = 0

    def __enter__(self):
        self.dossiers, self.templates = FakeDossiers(self.db), FakeTemplates(self.db)
        self.digests, self.inbox = FakeDigests(self.db), FakeInbox(self.db)
        return self

    def __exit__(self, *exc):
        return False

    def commit(self):
        for aggregate in self.dossiers.seen:
            if not self.dossiers.save(aggregate):
                continue
            aggregate.events = []
        if hasattr(self.templates, "pending"):
            self.db["templates"][(self.templates.pending[0].key, self.templates.pending[0].channel)] = \
                self.templates.pending[0]
        self.db["digests"] |= self.digests.pending
        self.db["failed_digests"].update(getattr(self.digests, "failed_pending", {}))
        self.db["inbox"] |= self.inbox.pending
        self.commits += 1


# --- helpers --------------------------------------------------------------------------------------

def context(now=NOON, quiet=NO_QUIET) -> Context:
    return Context(now=now, unit_name=lambda code: f"Unit {code}", procedure_name=lambda code, v: f"Thủ tục {code}",
                   officials=OFFICIALS, public_url="http://status.example", quiet_hours=quiet)


def received(channels=("sms", "email"), optional=True, code=CODE):
    return new_event("dossier.received", {
        "code": code, "procedure_code": "1.000894", "procedure_version": 1, "channel": "desk",
        "received_at": "2026-03-02T02:00:00+00:00", "appointment_date": "2026-03-05", "time_limit": "3 ngày",
        "handling_agency": WARD_5, "applicant": {"name": "Nguyễn Thị Lan", "phone": PHONE, "email": EMAIL},
        "quantities": {}, "secret": "K7QM3XPA", "notifications": {"channels": list(channels), "optional": optional}},
        WARD_5)


AT = "2026-03-03T03:00:00+00:00"
EVENTS = {
    "dossier.supplement_requested": {"code": CODE, "requested_by": "x", "documents": [
        {"name": "Giấy tờ", "form": "copy", "count": 1}], "reason": "thiếu", "requested_at": AT, "number": "1"},
    "dossier.supplement_received": {"code": CODE, "received_at": AT, "previous_appointment_date": "2026-03-05",
                                    "appointment_date": "2026-03-09"},
    "dossier.refused": {"code": CODE, "reason": "không đủ điều kiện", "official": "x", "refused_at": AT},
    "dossier.withdrawn": {"code": CODE, "reason": "rút", "withdrawn_at": AT},
    "dossier.apology_issued": {"code": CODE, "agency": TAX, "reason": "chậm", "original_due_date": "2026-03-05",
                               "new_date": "2026-03-12", "issued_at": AT, "official": "x"},
    "dossier.deadline_changed": {"code": CODE, "due_date": "2026-03-09", "previous_due_date": None,
                                 "reason": "supplement", "changed_at": AT},
    "dossier.processed": {"code": CODE, "agency": WARD_5, "result": "done", "processed_at": AT},
    "dossier.returned": {"code": CODE, "returned_at": AT, "appointment_date": "2026-03-05", "result_class": "on_time"},
    "dossier.overdue": {"code": CODE, "agency": TAX, "due_date": "2026-03-05", "detected_at": AT},
    "dossier.at_risk": {"code": CODE, "agency": TAX, "step": 2, "due_date": "2026-03-05", "detected_at": AT},
    "dossier.step_overdue": {"code": CODE, "agency": TAX, "step": 2, "due_date": "2026-03-05", "detected_at": AT},
    "dossier.apology_missing": {"code": CODE, "agency": TAX, "overdue_since": AT, "detected_at": AT},
    "fees.paid": {"code": CODE, "amount": 50000, "paid_at": AT, "method": "cash", "receipt_number": "BL-1"},
    "fees.refunded": {"code": CODE, "amount": 50000, "reason": "từ chối", "refunded_at": AT,
                      "receipt_number": "BL-1"},
}


def event(kind, **changes):
    payload = {**EVENTS[kind], **changes}
    return new_event(kind, payload, WARD_5)


def consume(uow, envelope, ctx=None):
    return handle(envelope.type, Consume(envelope, ctx or context()), uow)


@pytest.fixture
def uow():
    unit = FakeUnitOfWork()
    consume(unit, received())
    return unit


def messages_of(uow, template):
    return [m for m in uow.db["messages"] if m.template == template]


# --- consuming events -----------------------------------------------------------------------------

def test_every_consumed_event_type_has_its_handler():
    assert set(REACTIONS) <= set(HANDLERS)
    assert {"notify.save_template", "notify.delivery_report", "notify.record_sent", "notify.record_failure",
            "notify.digest"} <= set(HANDLERS)


def test_a_received_dossier_queues_one_message_per_chosen_channel():
    uow = FakeUnitOfWork()
    events = consume(uow, received())
    assert sorted(e.channel for e in events) == ["email", "sms"]
    sms, email = sorted(uow.db["messages"], key=lambda m: m.channel != "sms")
    assert (sms.recipient, email.recipient) == (PHONE, EMAIL)
    assert all(m.state == "queued" and m.code == CODE and m.audience == "citizen" for m in (sms, email))
    assert CODE in sms.text and "K7QM3XPA" in sms.text
    assert sms.next_attempt_at == NOON
    assert uow.db["dossiers"][CODE].unit == WARD_5


def test_a_redelivered_event_causes_nothing(uow):
    again = received()
    assert consume(uow, again) and len(uow.db["messages"]) == 4       # a second, different received event
    before = copy.deepcopy(uow.db["messages"])
    assert consume(uow, again) == []
    assert uow.db["messages"] == before


def test_the_same_event_never_queues_the_same_message_twice_even_past_the_inbox():
    aggregate = DossierMessages(CODE)
    first = received()
    aggregate.received(first, context())
    assert aggregate.received(first, context()) == []      # same event id, template, channel, recipient
    assert len(aggregate.messages) == 2


CITIZEN = {"dossier.supplement_requested": "supplement_requested", "dossier.refused": "refused",
           "dossier.apology_issued": "apology", "dossier.processed": "result_ready", "dossier.returned": "returned",
           "fees.paid": "payment_received", "fees.refunded": "refunded"}


@pytest.mark.parametrize("kind, template", sorted(CITIZEN.items()))
def test_each_event_for_the_citizen_queues_its_message_on_each_channel(uow, kind, template):
    events = consume(uow, event(kind))
    assert sorted((e.template, e.channel) for e in events) == [(template, "email"), (template, "sms")]
    assert {m.recipient for m in messages_of(uow, template)} == {PHONE, EMAIL}


@pytest.mark.parametrize("kind", ["dossier.at_risk", "dossier.step_overdue"])
def test_a_warning_goes_to_the_agencys_officials(uow, kind):
    events = consume(uow, event(kind))
    template = kind.split(".")[1]
    assert sorted(e.channel for e in events) == ["email", "webhook"]
    assert {(m.audience, m.unit, m.recipient) for m in messages_of(uow, template)} == {
        ("official", TAX, "thue@example.gov.vn"), ("official", TAX, "http://127.0.0.1:1/hook")}


def test_a_missing_apology_goes_to_the_agency_and_to_the_desk(uow):
    consume(uow, event("dossier.apology_missing"))
    assert {m.unit for m in messages_of(uow, "apology_missing")} == {TAX, WARD_5}


def test_events_that_only_change_what_notify_keeps(uow):
    assert consume(uow, event("dossier.supplement_received")) == []
    assert uow.db["dossiers"][CODE].appointment_date == "2026-03-09"
    assert consume(uow, event("dossier.overdue")) == []
    assert uow.db["dossiers"][CODE].overdue is True
    assert consume(uow, event("dossier.processed", result="stopped")) == []
    assert consume(uow, event("dossier.withdrawn")) == []
    assert uow.db["dossiers"][CODE].open is False
    assert len(uow.db["messages"]) == 2


def test_a_citizen_who_opted_out_gets_only_the_required_notices():
    uow = FakeUnitOfWork()
    consume(uow, received(channels=("email",), optional=False))
    assert uow.db["messages"] == []
    assert consume(uow, event("fees.paid")) == []
    assert [e.template for e in consume(uow, event("dossier.refused"))] == ["refused"]


def test_an_event_before_its_dossier_is_put_back_and_changes_nothing():
    uow = FakeUnitOfWork()
    early = event("fees.paid")
    with pytest.raises(UnknownDossier, match=CODE):
        consume(uow, early)
    assert uow.db["inbox"] == set() and uow.db["messages"] == [] and uow.commits == 0


def test_an_online_submission_refused_before_receipt_causes_nothing():
    uow = FakeUnitOfWork()
    assert consume(uow, event("dossier.refused", received=False)) == []
    assert uow.db["messages"] == [] and uow.db["dossiers"] == {}


def test_quiet_hours_defer_a_citizens_sms_but_not_the_email():
    uow = FakeUnitOfWork()
    night = datetime(2026, 3, 2, 22, 15, tzinfo=VN)
    consume(uow, received(), context(now=night, quiet=(time(21, 0), time(7, 0))))
    by_channel = {m.channel: m for m in uow.db["messages"]}
    assert by_channel["sms"].next_attempt_at == datetime(2026, 3, 3, 7, 0, tzinfo=VN)
    assert by_channel["email"].next_attempt_at == night


def test_an_officials_template_is_used_for_the_next_messages(uow):
    handle("notify.save_template", SaveTemplate("result_ready", "sms", None, "Ket qua {{ code }} da co", "Bình"), uow)
    consume(uow, event("dossier.processed"))
    assert [m.text for m in messages_of(uow, "result_ready") if m.channel == "sms"] == [f"Ket qua {CODE} da co"]


def test_a_bad_template_is_refused_naming_the_field_and_changes_nothing(uow):
    with pytest.raises(templates.TemplateInvalid) as refused:
        handle("notify.save_template", SaveTemplate("received", "sms", None, "{{ no_such_field }}", "Bình"), uow)
    assert refused.value.field == "body"
    assert uow.db["templates"] == {} and uow.commits == 1


# --- sending, retries, delivery reports ----------------------------------------------------------

def leased(uow, channel="sms", attempts=1):
    """What the dispatcher's lease does to a message (store.claim, in SQL)."""
    message = next(m for m in uow.db["messages"] if m.channel == channel)
    message.state, message.attempts = "sending", attempts
    return message


def test_a_sent_message_is_recorded_once_and_published_to_no_one(uow):
    message = leased(uow)
    later = NOON + timedelta(seconds=3)
    events = handle("notify.record_sent", RecordSent(message, "gw-1", later), uow)
    assert [type(e) for e in events] == [MessageSent] and events[0].waited_seconds == 3.0
    stored = uow.db["messages"][message.id - 1]
    assert (stored.state, stored.provider_id, stored.sent_at) == ("sent", "gw-1", later)
    # recorded twice (another process took the message after its lease ran out): nothing twice
    assert handle("notify.record_sent", RecordSent(message, "gw-2", later), uow) == []
    assert uow.db["messages"][message.id - 1].provider_id == "gw-1"


def test_a_message_reported_meanwhile_is_not_recorded_as_sent_again(uow):
    message = copy.deepcopy(leased(uow))               # what the lease returned
    uow.db["messages"][message.id - 1].state = "failed"   # another process gave up on it meanwhile
    assert handle("notify.record_sent", RecordSent(message, "gw-1", NOON), uow) == []
    assert uow.db["messages"][message.id - 1].state == "failed"


def test_a_failed_attempt_is_retried_after_the_backoff(uow):
    message = leased(uow, attempts=2)
    policy = Policy(max_attempts=5, backoff_seconds=30)
    events = handle("notify.record_failure", RecordFailure(message.id, "sms: 503", False, policy, NOON), uow)
    assert [type(e) for e in events] == [MessageRetried]
    stored = uow.db["messages"][message.id - 1]
    assert (stored.state, stored.next_attempt_at, stored.last_error) == ("queued", NOON + timedelta(seconds=60),
                                                                         "sms: 503")


def test_a_failure_after_the_last_retry_fails_the_message(uow):
    message = leased(uow, attempts=5)
    events = handle("notify.record_failure", RecordFailure(message.id, "sms: 503", False, Policy(max_attempts=5),
                                                           NOON), uow)
    assert [type(e) for e in events] == [MessageFailed] and events[0].attempts == 5
    assert (events[0].reason, events[0].code) == ("sms: 503", CODE)
    assert uow.db["messages"][message.id - 1].state == "failed"


def test_a_permanent_error_fails_the_message_at_once(uow):
    message = leased(uow, attempts=1)
    events = handle("notify.record_failure", RecordFailure(message.id, "sms: 400", True, Policy(), NOON), uow)
    assert [type(e) for e in events] == [MessageFailed]


def test_a_delivery_report_marks_the_message_delivered(uow):
    message = leased(uow)
    handle("notify.record_sent", RecordSent(message, "gw-7", NOON), uow)
    later = NOON + timedelta(minutes=1)
    [report] = handle("notify.delivery_report", ReportDelivery("gw-7", "delivered", later), uow)
    assert (report.channel, report.template, report.state) == ("sms", "received", "delivered")
    stored = uow.db["messages"][message.id - 1]
    assert (stored.state, stored.delivered_at) == ("delivered", later)
    handle("notify.delivery_report", ReportDelivery("gw-7", "failed", later), uow)
    assert (stored := uow.db["messages"][message.id - 1]).state == "failed" and stored.delivered_at is None


def test_a_report_for_an_unknown_message_is_refused_and_changes_nothing(uow):
    before = copy.deepcopy(uow.db)
    with pytest.raises(NotFound) as refused:
        handle("notify.delivery_report", ReportDelivery("nobody", "delivered", NOON), uow)
    assert refused.value.field == "id" and uow.db == before


def test_metrics_are_counted_from_the_events():
    def value():
        return REGISTRY.get_sample_value("motcua_notify_messages_total",
                                         {"channel": "sms", "template": "received", "state": "sent"}) or 0.0
    before = value()
    metrics.count([MessageSent(1, "sms", "received", 1, 2.0), MessageRetried(2, "sms", 1, "x")])
    assert value() == before + 1


# --- the digest -----------------------------------------------------------------------------------

def test_the_digest_goes_once_per_unit_and_day_with_the_overdue_that_routing_reported():
    uow = FakeUnitOfWork()
    consume(uow, received())
    other = "000.05.20.H29-260302-0002"
    consume(uow, received(code=other))
    # the appointment of neither is today; one of them routing said is overdue
    consume(uow, new_event("dossier.overdue", {**EVENTS["dossier.overdue"], "code": other}, WARD_5))
    morning = datetime(2026, 3, 10, 7, 31, tzinfo=VN)
    command = SendDigest(WARD_5, datetime(2026, 3, 2, 0, 0, tzinfo=VN), context(now=morning))
    events = handle("notify.digest", command, uow)
    [digest] = messages_of(uow, "daily_digest")
    assert digest.recipient == "truong.phuong5@example.gov.vn" and digest.code is None
    assert other in digest.text and CODE not in digest.text      # a passed date alone is not overdue for notify
    assert len(events) == 2
    assert handle("notify.digest", command, uow) == []
    assert len(messages_of(uow, "daily_digest")) == 1


def digest_unit(overdue=0, due=0):
    """A fake unit of work holding ``overdue`` dossiers routing said are overdue (appointments from
    2 March on, the newest first in code order) and ``due`` due on 10 March."""
    uow = FakeUnitOfWork()
    for n in range(overdue):
        code = f"{WARD_5}-260302-{n + 1:04d}"
        consume(uow, received(code=code))
        uow.db["dossiers"][code].appointment_date = date(2026, 3, 9) - timedelta(days=n % 7)
        consume(uow, new_event("dossier.overdue", {**EVENTS["dossier.overdue"], "code": code}, WARD_5))
    for n in range(due):
        code = f"{WARD_5}-260305-{n + 1:04d}"
        consume(uow, received(code=code))
        uow.db["dossiers"][code].appointment_date = date(2026, 3, 10)
    return uow


MORNING = datetime(2026, 3, 10, 7, 31, tzinfo=VN)
SINCE = datetime(2026, 3, 9, 0, 0, tzinfo=VN)


def test_a_unit_with_more_codes_than_n_gets_the_counts_n_codes_and_how_many_more():
    uow = digest_unit(overdue=30, due=12)
    events = handle("notify.digest", SendDigest(WARD_5, SINCE, context(now=MORNING), max_codes=10,
                                                list_url="http://desk.example/api/v1/due"), uow)
    assert events[0] == DigestQueued(WARD_5, date(2026, 3, 10))
    [digest] = messages_of(uow, "daily_digest")
    text = digest.text
    assert "Hồ sơ quá hạn: 30" in text and "Hồ sơ đến hạn hôm nay: 12" in text
    assert "… và 20 hồ sơ khác" in text and "… và 2 hồ sơ khác" in text
    assert "Danh sách đầy đủ: http://desk.example/api/v1/due" in text
    listed = [line[2:] for line in text.splitlines() if line.startswith("- ")]
    assert len(listed) == 20
    overdue = {code: uow.db["dossiers"][code].appointment_date for code in uow.db["dossiers"]
               if uow.db["dossiers"][code].overdue}
    expected = sorted(overdue, key=lambda code: (overdue[code], code))[:10]     # the longest overdue first
    assert listed[:10] == expected
    assert listed[10:] == [f"{WARD_5}-260305-{n:04d}" for n in range(1, 11)]     # due today: in order of receipt
    assert listed[0] == f"{WARD_5}-260302-0007" and overdue[listed[0]] == date(2026, 3, 3)   # not code order


def test_a_digest_within_n_lists_every_code_and_no_more_line():
    uow = digest_unit(overdue=2, due=1)
    handle("notify.digest", SendDigest(WARD_5, SINCE, context(now=MORNING)), uow)
    [digest] = messages_of(uow, "daily_digest")
    assert "hồ sơ khác" not in digest.text and "Danh sách đầy đủ" not in digest.text
    assert len([line for line in digest.text.splitlines() if line.startswith("- ")]) == 3


def test_the_webhook_digest_is_bounded_too():
    uow = digest_unit(overdue=80)
    ctx = replace(context(now=MORNING), officials={WARD_5: {"webhook": "http://127.0.0.1:1/hook"}})
    handle("notify.digest", SendDigest(WARD_5, SINCE, ctx, max_codes=5), uow)
    [hook] = messages_of(uow, "daily_digest")
    assert hook.channel == "webhook"
    assert "quá hạn 80 (" in hook.text and "… và 75 hồ sơ khác" in hook.text
    assert hook.text.count(f"{WARD_5}-") == 5


def test_a_template_saved_before_the_bound_still_prints_the_whole_counts():
    """Officials' saved templates used ``{{ overdue|length }}`` and looped over the list: the count
    stays the count of all, the loop prints at most N codes."""
    old = templates.Template("daily_digest", "email", "Tổng hợp {{ day|ngay }}",
                             "Đến hạn: {{ due_today|length }}\n{% for c in due_today %}{{ c }}\n{% endfor %}"
                             "Quá hạn: {{ overdue|length }}{% if overdue %} ({{ overdue[:2]|join(', ') }}){% endif %}")
    templates.validate(old.key, old.channel, old.subject, old.body)              # still valid when saved again
    uow = digest_unit(overdue=7, due=4)
    uow.db["templates"][("daily_digest", "email")] = old
    handle("notify.digest", SendDigest(WARD_5, SINCE, context(now=MORNING), max_codes=3), uow)
    [digest] = messages_of(uow, "daily_digest")
    assert "Đến hạn: 4" in digest.text and "Quá hạn: 7 (" in digest.text
    assert digest.text.count(f"{WARD_5}-260305-") == 3
    codes = Codes(["a", "b"], 9)
    assert len(codes) == 9 and list(iter(codes)) == ["a", "b"] and codes[:1] == ["a"] and bool(Codes([], 0)) is False


def test_a_digest_that_fails_to_render_is_recorded_once_and_not_tried_again_that_day():
    uow = digest_unit(overdue=0, due=3)
    # valid with the sample (which has overdue codes), broken with a desk that has none today
    broken = templates.validate("daily_digest", "email", "Tổng hợp", "Quá hạn lâu nhất: {{ overdue[0] }}")
    uow.db["templates"][("daily_digest", "email")] = broken
    labels = {"channel": "email", "template": "daily_digest", "state": "not_rendered"}
    before = REGISTRY.get_sample_value("motcua_notify_messages_total", labels) or 0.0
    command = SendDigest(WARD_5, SINCE, context(now=MORNING))
    events = handle("notify.digest", command, uow)
    assert [type(e) for e in events] == [DigestFailed]
    assert "daily_digest, email" in events[0].reason and events[0].day == date(2026, 3, 10)
    assert events[0].channel == "email"
    metrics.count(events)
    assert REGISTRY.get_sample_value("motcua_notify_messages_total", labels) == before + 1
    assert messages_of(uow, "daily_digest") == []                      # nothing broken goes out
    assert uow.db["failed_digests"] == {(WARD_5, date(2026, 3, 10)): events[0].reason}
    assert uow.commits == 1 + 3                                          # the failure committed (3 receipts before)
    for minutes in (1, 2, 60):                                           # the timer's next checks: nothing
        later = SendDigest(WARD_5, SINCE, context(now=MORNING + timedelta(minutes=minutes)))
        assert handle("notify.digest", later, uow) == []
    assert messages_of(uow, "daily_digest") == [] and len(uow.db["failed_digests"]) == 1
    del uow.db["templates"][("daily_digest", "email")]                  # fixed; the next working day goes
    next_day = SendDigest(WARD_5, SINCE, context(now=MORNING + timedelta(days=1)))
    assert isinstance(handle("notify.digest", next_day, uow)[0], DigestQueued)
    assert len(messages_of(uow, "daily_digest")) == 1


def test_a_partly_broken_digest_queues_none_of_its_messages():
    uow = digest_unit(due=2)
    ctx = replace(context(now=MORNING), officials={WARD_5: {"email": ["a@example.gov.vn"],
                                                            "webhook": "http://127.0.0.1:1/hook"}})
    uow.db["templates"][("daily_digest", "webhook")] = templates.validate(
        "daily_digest", "webhook", None, "{{ overdue[0] }}")
    [failed] = handle("notify.digest", SendDigest(WARD_5, SINCE, ctx), uow)
    assert isinstance(failed, DigestFailed) and "webhook" in failed.reason
    assert messages_of(uow, "daily_digest") == []


@pytest.mark.parametrize("value, expected", [(None, 50), ("", 50), ("1", 1), (200, 200), ("0", ValueError),
                                             ("201", ValueError), ("many", ValueError)])
def test_digest_max_codes_is_checked(value, expected):
    from services.notify.service import digest_max_codes      # the service module: nameko and its imports
    if expected is ValueError:
        with pytest.raises(ValueError, match="DIGEST_MAX_CODES"):
            digest_max_codes(value)
    else:
        assert digest_max_codes(value) == expected


def test_the_digest_figures_bound_the_lists_but_count_them_all():
    figures = DigestFigures(5, ["a"], ["b", "c"], 40, 90)
    context_ = figures.as_context()
    assert (context_["due_today_more"], context_["overdue_more"], context_["list_url"]) == (39, 88, None)
    assert len(context_["overdue"]) == 90 and list(context_["overdue"]) == ["b", "c"]
    assert DigestFigures(1, ["a", "b"]).due_today_count == 2                      # counts default to the lists
    assert set(templates.sample_context("daily_digest")) == set(context_) | {"unit_name", "day"}


# --- rules with a shape -------------------------------------------------------------------------

instants = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31),
                        timezones=st.just(UTC))
clock_times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 59]))


@settings(max_examples=200, deadline=None)
@given(now=instants, start=clock_times, end=clock_times)
def test_a_citizens_sms_is_never_scheduled_inside_the_quiet_hours(now, start, end):
    aggregate = DossierMessages(CODE)
    aggregate.received(received(channels=("sms", "email")), context(now=now, quiet=(start, end)))
    sms = next(m for m in aggregate.messages if m.channel == "sms")
    email = next(m for m in aggregate.messages if m.channel == "email")
    assert not in_quiet_hours(sms.next_attempt_at, (start, end))
    assert now <= sms.next_attempt_at <= now + timedelta(days=1)
    assert (sms.next_attempt_at == now) is (not in_quiet_hours(now, (start, end)))
    assert email.next_attempt_at == now
    assert after_quiet_hours(sms.next_attempt_at, (start, end)) == sms.next_attempt_at


@settings(max_examples=200, deadline=None)
@given(attempts=st.integers(1, 30), base=st.floats(0.5, 600), max_attempts=st.integers(1, 10))
def test_backoff_doubles_and_the_last_attempt_fails_for_good(attempts, base, max_attempts):
    policy = Policy(max_attempts=max_attempts, backoff_seconds=base)
    # timedelta keeps microseconds: doubling a rounded wait may differ by one
    assert abs(backoff(policy, attempts + 1) - 2 * backoff(policy, attempts)) <= timedelta(microseconds=1)
    assert backoff(policy, 1) == timedelta(seconds=base)
    message = Message("k", CODE, WARD_5, "received", "sms", "citizen", PHONE, None, "x", "sending", NOON, NOON,
                      attempts=attempts, id=1)
    [outcome] = DossierMessages(CODE, None, [message]).attempt_failed(1, "busy", permanent=False, policy=policy,
                                                                      now=NOON)
    if attempts < max_attempts:
        assert isinstance(outcome, MessageRetried) and message.state == "queued"
        assert message.next_attempt_at == NOON + backoff(policy, attempts)
    else:
        assert isinstance(outcome, MessageFailed) and message.state == "failed"
        assert outcome.reason == "busy" and outcome.attempts == attempts


def test_the_appointment_the_digest_counts_follows_routings_deadline():
    aggregate = DossierMessages(CODE)
    aggregate.received(received(), context())
    first = aggregate.dossier.appointment_date
    aggregate.deadline_changed(event("dossier.deadline_changed", due_date=None), context())     # stopped
    assert aggregate.dossier.appointment_date == first
    assert aggregate.deadline_changed(event("dossier.deadline_changed"), context()) == []       # no message
    assert aggregate.dossier.appointment_date == "2026-03-09"
    aggregate.apology_issued(event("dossier.apology_issued", new_date="2026-03-20"), context())
    aggregate.deadline_changed(event("dossier.deadline_changed", due_date="2026-03-16"), context())
    assert aggregate.dossier.appointment_date == "2026-03-20"            # the apology's later date stands
    aggregate.deadline_changed(event("dossier.deadline_changed", due_date="2026-03-24", reason="obligation"),
                               context())
    assert aggregate.dossier.appointment_date == "2026-03-24"


def test_the_digest_figures_count_only_open_dossiers():
    aggregate = DossierMessages(CODE)
    aggregate.received(received(), context())
    dossier = aggregate.dossier
    dossier.appointment_date = date(2026, 3, 5)
    since = datetime(2026, 3, 1, tzinfo=VN)
    assert digest_figures([dossier], WARD_5, since, date(2026, 3, 5)).due_today == [CODE]
    dossier.open = False
    assert digest_figures([dossier], WARD_5, since, date(2026, 3, 5)).due_today == []
    assert digest_figures([dossier], TAX, since, date(2026, 3, 5)).received == 0


# --- the providers' delivery reports, as they come over HTTP -----------------------------------

@pytest.mark.parametrize("raw, field", [
    ("[1, 2, 3]", "body"), ('"delivered"', "body"), ("null", "body"), ("42", "body"), ("{not json", "body"),
    ('{"id": 5, "status": "delivered"}', "id"), ('{"id": ["gw-7"], "status": "delivered"}', "id"),
    ('{"status": "delivered"}', "id"), ('{"id": {"a": 1}, "status": "delivered"}', "id"),
    ('{"id": "gw-7", "status": 3}', "status"), ('{"id": "gw-7", "status": ["delivered"]}', "status"),
    ('{"id": "gw-7", "status": {"x": 1}}', "status"), ('{"id": "gw-7"}', "status"),
    ('{"id": "gw-7", "status": "read"}', "status"),
    ("[" * 100_000 + "]" * 100_000, "body"), ('{"id": "gw\\u0000-7", "status": "delivered"}', "id"),
])
def test_a_malformed_delivery_report_is_refused_naming_the_field(raw, field):
    with pytest.raises(Invalid) as refused:
        delivery_report(raw, NOON)
    assert refused.value.field == field and refused.value.status == 400


def test_a_well_formed_delivery_report_becomes_the_command():
    assert delivery_report('{"id": "gw-7", "status": "delivered"}', NOON) == ReportDelivery("gw-7", "delivered", NOON)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                           max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(body=json_values | st.fixed_dictionaries({"id": json_values, "status": json_values}))
def test_any_json_body_is_either_a_report_or_a_refusal_naming_a_field(body):
    try:
        command = delivery_report(json.dumps(body), NOON)
    except Invalid as refused:
        assert refused.field in ("body", "id", "status")
    else:
        assert isinstance(body, dict) and isinstance(body["id"], str) and body["status"] in ("delivered", "failed")
        assert (command.provider_id, command.status) == (body["id"], body["status"])


def test_the_service_consumes_exactly_the_events_the_handlers_table_knows():
    from services.notify.service import NotifyService
    consumed = {entrypoint.event_type for _, member in vars(NotifyService).items()
                for entrypoint in getattr(member, "nameko_entrypoints", ()) if hasattr(entrypoint, "event_type")}
    # catalog.# is the runtime's catalogue read model keeping its copy, not one of notify's handlers;
    # catalog.units_reorganised moves notify's own rows (a handler of its own).
    own = {"catalog.#", "catalog.units_reorganised"}
    assert consumed - own == set(REACTIONS) and "catalog.units_reorganised" in consumed
    assert all(HANDLERS[kind] is HANDLERS["dossier.received"] for kind in consumed - own)


def test_a_reorganisation_counts_open_dossiers_at_the_successor_once(uow):
    from motcua.contracts.reorganisations import Reorganisation, Transfer

    successor = "000.07.20.H29"
    moved = new_event("catalog.units_reorganised", Reorganisation(
        "test", date(2026, 3, 2), (Transfer((WARD_5,), successor),)).payload(), "000.00.20.H29")
    consume(uow, received(code="000.05.20.H29-260302-0002"))
    consume(uow, event("dossier.withdrawn", code="000.05.20.H29-260302-0002"))
    commits = uow.commits
    consume(uow, moved)
    consume(uow, moved)                      # a redelivery: recorded once, changes nothing
    assert uow.db["dossiers"][CODE].unit == successor
    assert uow.db["dossiers"]["000.05.20.H29-260302-0002"].unit == WARD_5       # closed: stays
    assert uow.commits == commits + 2 and moved.id in uow.db["inbox"]
