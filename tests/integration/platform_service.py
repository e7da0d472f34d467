"""A small service built only from the platform's parts, to test them against real
PostgreSQL and RabbitMQ without any domain in the way. Its tables live in the
``platform_test`` schema."""
from nameko.rpc import rpc
from sqlalchemy import Column, Integer, Table, Text, func, select

from motcua.runtime import inbox
from motcua.contracts.codes import code_counter_table
from motcua.runtime.db import service_metadata
from motcua.contracts.events import SCHEMAS, new_event, schema
from motcua.runtime.inbox import event_consumer, first_time
from motcua.runtime.observability import PlatformService
from motcua.runtime.outbox import OutboxRelay, outbox_table

metadata = service_metadata("platform_test")
effects = Table("effects", metadata, Column("id", Integer, primary_key=True), Column("note", Text))
outbox = outbox_table(metadata)
processed = inbox.inbox_table(metadata)
counters = code_counter_table(metadata)

# A test-only event type, registered for the duration of the tests.
SCHEMAS[("test.noted", 1)] = schema("A test note.", note="str")
SCHEMAS[("test.explode", 1)] = schema("A handler that fails.", note="str")
UNIT = "000.01.20.H29"
BATCHES: list[int] = []     # the size of every batch on_noted committed, in order
ATTEMPTS: list[list[str]] = []    # the notes of every batch on_noted was given, committed or not


class PlatformTestService(PlatformService):
    name = "platform_test"
    outbox = OutboxRelay(outbox)

    @rpc
    def note(self, text: str, fail: bool = False) -> None:
        """Record an effect and its event in one transaction; ``fail`` rolls both back."""
        with self.db.transaction() as session:
            session.execute(effects.insert().values(note=text))
            self.outbox(session, new_event("test.noted", {"note": text}, UNIT, correlation_id=self.correlation_id))
            if fail:
                raise RuntimeError("rolled back on purpose")

    @event_consumer("test.noted")
    def on_noted(self, events):
        """A batch in one transaction. A note ``poison…`` fails (a bug); ``later…`` is not yet
        possible until the note ``ready`` has been handled (an event that waits for another)."""
        ATTEMPTS.append([event.payload["note"] for event in events])
        with self.db.transaction() as session:
            for event in events:
                with inbox.about(event):
                    if not first_time(session, processed, event):
                        continue
                    note = event.payload["note"]
                    if note.startswith("poison"):
                        raise KeyError("a bug in the handler: " + note)
                    if note.startswith("later") and not session.execute(
                            select(func.count()).select_from(effects).where(effects.c.note == "handled:ready")
                    ).scalar_one():
                        raise inbox.NotYet("waits for the note 'ready'")
                    session.execute(effects.insert().values(note="handled:" + note))
        BATCHES.append(len(events))

    @event_consumer("test.explode")
    def on_explode(self, events):
        raise KeyError("a bug in the handler")

    @rpc
    def count(self, note: str) -> int:
        with self.db.transaction() as session:
            return session.execute(select(func.count()).select_from(effects).where(effects.c.note == note)).scalar_one()
