"""notify's copy of the officials' templates (services/notify/repository.py, ``TemplateCache``):
read once, used until it is ``seconds`` old; an edit saved through this process is used by the
next message at once, one saved through another replica within ``seconds``. A stub session
stands in for PostgreSQL: what is asserted is how many times the table is read."""
from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

from motcua.runtime.pii import keyring, new_settings
from services.notify import templates
from services.notify.handlers import SaveTemplate, handle
from services.notify.repository import SqlTemplates, SqlUnitOfWork, TemplateCache

PII = keyring(new_settings())


class Table:
    """The templates table behind a stub session: counts the SELECTs."""

    def __init__(self):
        self.rows = {}
        self.reads = 0

    def edit(self, key, channel, body, subject=None):
        self.rows[key, channel] = SimpleNamespace(key=key, channel=channel, subject=subject, body=body, version=1)


class Session:
    def __init__(self, table: Table):
        self.table = table

    def execute(self, statement):
        if statement.is_select:
            self.table.reads += 1
            return SimpleNamespace(all=lambda: list(self.table.rows.values()))
        params = statement.compile().params                 # the upsert of SqlTemplates.save
        self.table.edit(params["key"], params["channel"], params["body"], params["subject"])
        return None


class Sessions:
    """What the service's motcua.runtime.db.UnitOfWork offers: ``transaction()``."""

    def __init__(self, table: Table):
        self.table = table

    @contextmanager
    def transaction(self):
        session = Session(self.table)
        session.info = {}
        yield session


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_the_table_is_read_once_while_the_copy_is_fresh():
    table, clock = Table(), Clock()
    cache = TemplateCache(5, clock)
    for _ in range(10):
        assert SqlTemplates(Session(table), cache).get("received", "sms") == templates.defaults()["received", "sms"]
    assert table.reads == 1
    clock.now += 5
    SqlTemplates(Session(table), cache).get("received", "sms")
    assert table.reads == 2


def test_without_a_cache_each_unit_of_work_reads_the_table_once():
    table = Table()
    for _ in range(3):
        uow_templates = SqlTemplates(Session(table))
        uow_templates.get("received", "sms")
        uow_templates.get("received", "email")
    assert table.reads == 3


def test_an_edit_saved_here_is_used_by_the_next_message():
    table, clock = Table(), Clock()
    cache = TemplateCache(5, clock)
    assert SqlTemplates(Session(table), cache).get("received", "sms").body == \
        templates.defaults()["received", "sms"].body
    body = "Ho so {{ code }} da duoc tiep nhan. Hen tra: {{ appointment_date | ngay }}."
    handle("notify.save_template", SaveTemplate("received", "sms", None, body, "Trần Văn Bình"),
           SqlUnitOfWork(Sessions(table), cache, pii=PII))
    assert SqlTemplates(Session(table), cache).get("received", "sms").body == body   # same instant


def test_an_edit_through_another_replica_is_seen_within_the_time_to_live():
    table, clock = Table(), Clock()
    cache = TemplateCache(5, clock)
    SqlTemplates(Session(table), cache).get("received", "sms")
    table.edit("received", "sms", "Ho so {{ code }}: da tiep nhan.")              # the other replica
    clock.now += 4.9
    assert SqlTemplates(Session(table), cache).get("received", "sms").body != "Ho so {{ code }}: da tiep nhan."
    clock.now += 0.1
    assert SqlTemplates(Session(table), cache).get("received", "sms").body == "Ho so {{ code }}: da tiep nhan."


def test_a_copy_read_while_an_edit_committed_is_not_kept():
    table, clock = Table(), Clock()
    cache = TemplateCache(5, clock)

    def read_during_an_edit():
        rows = {("received", "sms"): SimpleNamespace(subject=None, body="old")}
        cache.invalidate()                       # the edit commits while the old rows are on their way
        return rows

    assert cache.rows(read_during_an_edit)[("received", "sms")].body == "old"   # this caller used them
    table.edit("received", "sms", "new")
    assert SqlTemplates(Session(table), cache).get("received", "sms").body == "new"  # not kept: read again
    assert table.reads == 1


def test_a_failed_edit_changes_nothing_and_the_listing_always_reads_the_table():
    table, clock = Table(), Clock()
    cache = TemplateCache(5, clock)
    SqlTemplates(Session(table), cache).get("received", "sms")
    try:
        handle("notify.save_template", SaveTemplate("received", "sms", None, "{{ nope }}", "x"),
               SqlUnitOfWork(Sessions(table), cache, pii=PII))
    except templates.TemplateInvalid:
        pass
    assert table.rows == {}
    listing = SqlTemplates(Session(table), cache)
    listing.stored()
    listing.stored()
    assert table.reads == 2                      # one for the cache, one for the listing
