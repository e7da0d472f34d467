"""A crash of intake between the database commit and the publish loses no event (issue 3).

In a module of its own: no other intake process may run, or its relay would publish the row."""
from tests.conftest import EventTap
from tests.e2e.conftest import amqp, ServiceProcess
from tests.e2e.test_intake_desk import receive


def test_a_crash_between_commit_and_publish_loses_no_event(process_env, catalog_process, clock, tmp_path):
    """intake writes with its relay off, dies by SIGKILL, and on restart the event goes out."""
    tap = EventTap(amqp(), "dossier.received")
    service = ServiceProcess("intake", {**process_env, "CLOCK_FILE": str(clock.path)}, tmp_path)
    try:
        service.start(OUTBOX_RELAY="false")
        code = receive(service).json()["code"]
        service.crash()
        assert [e for e in tap.drain(expect=0, settle=1.0) if e["payload"]["code"] == code] == []
        service.start()
        published = [e for e in tap.drain(expect=1, timeout=10) if e["payload"]["code"] == code]
        assert len(published) == 1
    finally:
        service.stop()
        tap.close()
