"""A small service with HTTP writes built only from the platform's parts, to test the idempotency
step and the audit log (``motcua.runtime.idempotency``, ``motcua.runtime.audit``) against real
PostgreSQL and RabbitMQ. Its tables live in the ``idem_test`` schema."""
import eventlet
from sqlalchemy import Column, Integer, Table, Text, func, insert, select

from motcua.contracts.events import SCHEMAS, new_event, schema
from motcua.contracts.refusals import Conflict
from motcua.runtime.audit import audit_table
from motcua.runtime.db import service_metadata
from motcua.runtime.idempotency import idempotency_table
from motcua.runtime.observability import PlatformService
from motcua.runtime.outbox import OutboxRelay, outbox_table
from motcua.runtime.web import answer, http, json_body, official

metadata = service_metadata("idem_test")
notes = Table("notes", metadata, Column("id", Integer, primary_key=True), Column("text", Text, nullable=False),
              Column("official", Text, nullable=False))
outbox = outbox_table(metadata)
keys = idempotency_table(metadata)
audit_log = audit_table(metadata)

SCHEMAS[("test.note_written", 1)] = schema("A note written over HTTP.", note="str")
UNIT = "000.01.20.H29"


class IdempotentTestService(PlatformService):
    name = "idem_test"
    outbox = OutboxRelay(outbox)

    @http("POST", "/notes")
    def write(self, request):
        """A note and its event in one transaction; ``slow`` holds the transaction a moment (a
        request with the same key comes meanwhile); ``refuse`` is refused after the insert."""
        def call():
            name, _ = official(request)
            body = json_body(request)
            with self.db.transaction() as session:
                number = session.execute(insert(notes).values(text=body["note"], official=name)
                                         .returning(notes.c.id)).scalar_one()
                self.outbox(session, new_event("test.note_written", {"note": body["note"]}, UNIT))
                if body.get("slow"):
                    eventlet.sleep(float(body["slow"]))
                if body.get("refuse"):
                    raise Conflict("note", "refused after the insert, on purpose")
            return {"id": number, "note": body["note"]}
        return answer(call, status=201)

    @http("PUT", "/notes/<int:number>")
    def fail(self, request, number):
        """A write that fails with a bug after its insert: a 500, nothing kept."""
        with self.db.transaction() as session:
            session.execute(insert(notes).values(text=f"failing {number}", official=""))
            raise RuntimeError("a bug, on purpose")

    @http("GET", "/notes/count")
    def count(self, request):
        with self.db.transaction() as session:
            total = session.execute(select(func.count()).select_from(notes)).scalar_one()
        return answer(lambda: {"count": total})
