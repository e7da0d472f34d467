"""A crash of intake between the database commit and the publish loses no event (issue 3).

In a module of its own: no other intake process may run, or its relay would publish the row."""
from sqlalchemy import text

from tests.conftest import EventTap
from tests.e2e.conftest import amqp, ServiceProcess
from tests.e2e.test_intake_desk import receive, wait_for


def published_at(engine, code):
    with engine.connect() as connection:
        return connection.execute(text("SELECT published_at FROM intake.outbox WHERE type = 'dossier.received' "
                                       "AND envelope->'payload'->>'code' = :c"), {"c": code}).scalar_one()


def test_a_crash_between_commit_and_publish_loses_no_event(process_env, catalog_process, clock, tmp_path, engine):
    """intake writes with its relay off, dies by SIGKILL, and on restart the event goes out."""
    tap = EventTap(amqp(), "dossier.received")
    service = ServiceProcess("intake", {**process_env, "CLOCK_FILE": str(clock.path)}, tmp_path)
    try:
        service.start(OUTBOX_RELAY="false")
        code = receive(service).json()["code"]
        service.crash()
        # Not published: its outbox row is unmarked (the relay marks a row once the broker confirmed
        # it), a fact read at once rather than a while of silence on the tap.
        assert published_at(engine, code) is None
        service.start()
        # The tap holds everything published since before the write: one, the restarted relay's.
        published = [e for e in tap.drain(expect=1, timeout=10) if e["payload"]["code"] == code]
        assert len(published) == 1
        wait_for(lambda: published_at(engine, code) is not None)
    finally:
        service.stop()
        tap.close()
