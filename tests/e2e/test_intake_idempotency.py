"""A receipt retried with its idempotency key after its replica was killed gives one dossier and
the same code (issue 16: "3 of 450 receipts" made a second dossier on a retry).

In a module of its own: the intake process here is the only one, killed and started again."""
import uuid

import requests
from sqlalchemy import func, select

from motcua.runtime.idempotency import HEADER
from services.intake import models
from tests.e2e.conftest import ServiceProcess, run_cli
from tests.e2e.test_intake_desk import APPLICANT, DOCUMENTS, MARITAL_STATUS, WARD_5
from tests.fakes.officials import official_headers

DESK = official_headers("Trần Văn Bình", WARD_5)


def receive(service, key: str, timeout: float = 10, **overrides):
    body = {"procedure_code": MARITAL_STATUS, "applicant": APPLICANT, "channel": "in_person",
            "documents": DOCUMENTS, "sets": 1, **overrides}
    return requests.post(service.url + "/api/v1/dossiers", json=body, headers={**DESK, HEADER: key},
                         timeout=timeout)


def dossiers(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(models.dossiers)).scalar_one()


def test_a_receipt_retried_with_its_key_after_a_killed_replica_gives_one_dossier(
        process_env, catalog_process, clock, engine, tmp_path):
    service = ServiceProcess("intake", {**process_env, "CLOCK_FILE": str(clock.path)}, tmp_path)
    key = str(uuid.uuid4())
    try:
        service.start()
        before = dossiers(engine)
        first = receive(service, key)
        assert first.status_code == 201, first.text
        service.crash()                                 # kill -9 once it answered
        service.start()
        again = receive(service, key)
        assert (again.status_code, again.json()) == (201, first.json())
        assert again.json()["code"] == first.json()["code"]
        assert dossiers(engine) == before + 1
        other = receive(service, key, sets=2)
        assert other.status_code == 422 and other.json()["field"] == HEADER
        assert dossiers(engine) == before + 1
    finally:
        service.stop()


def test_a_receipt_whose_answer_was_lost_in_a_crash_is_made_once(process_env, catalog_process, clock, engine,
                                                                 tmp_path):
    """The desk gives up waiting and the replica is killed at once: whether the first call
    committed is unknown to the desk; retried with its key, it ends in one dossier either way."""
    service = ServiceProcess("intake", {**process_env, "CLOCK_FILE": str(clock.path)}, tmp_path)
    key = str(uuid.uuid4())
    try:
        service.start()
        before = dossiers(engine)
        try:
            receive(service, key, timeout=0.02)
        except requests.exceptions.Timeout:
            pass                                        # the answer is lost
        service.crash()
        service.start()
        retried = receive(service, key)
        assert retried.status_code == 201, retried.text
        again = receive(service, key)
        assert (again.status_code, again.json()) == (201, retried.json())
        assert dossiers(engine) == before + 1
    finally:
        service.stop()


def test_the_receipts_are_in_intakes_audit_chain_and_it_verifies(process_env, engine):
    with engine.connect() as connection:
        entries = connection.execute(select(models.audit_log).where(models.audit_log.c.idempotency_key != "")
                                     .order_by(models.audit_log.c.seq)).mappings().all()
    assert {e["status"] for e in entries} >= {201, 422}
    assert all(e["route"] == "/api/v1/dossiers" for e in entries)
    assert {e["dossier"] for e in entries if e["status"] == 201} != {""}
    result = run_cli(["audit", "verify", "intake"], process_env)
    assert "intake:" in result.stdout and "chain intact" in result.stdout
