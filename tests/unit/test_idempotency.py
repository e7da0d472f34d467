"""The idempotency step of HTTP writes (``motcua.runtime.idempotency.around``) against fakes of
the service's store: what is run, replayed, refused, committed and audited. The SQL side is in
tests/integration/test_idempotency.py, the whole in tests/e2e/test_intake_idempotency.py."""
import json
from contextlib import contextmanager
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from motcua.contracts.refusals import Conflict, Invalid
from motcua.runtime import idempotency
from motcua.runtime.db import WRITE_ENVIRON_KEY, UnitOfWork
from motcua.runtime.idempotency import HEADER, REPLAYED_HEADER, KeyTaken
from motcua.runtime.observability import error_response, json_response
from motcua.runtime.web import answer, official, official_name_and_unit
from tests.fakes.officials import official_headers, signed_in

HOA = official_headers("Nguyễn Thị Hoa", "000.05.20.H29")
BINH = official_headers("Trần Văn Bình", "000.05.20.H29")


class FakeDatabase:
    """What committed: effects, keys with their answers, audit entries."""

    def __init__(self):
        self.effects, self.keys, self.audit, self.purges = [], {}, [], 0


class FakeWrite:
    def __init__(self, db: FakeDatabase, key, fingerprint, now, ttl):
        self.db, self.key, self.fingerprint, self.now, self.ttl = db, key, fingerprint, now, ttl
        self.session, self.taken, self.busy = None, False, False

    @contextmanager
    def join(self):
        if self.session is None:
            if self.key is not None and self.key in self.db.keys:
                self.taken = True
                raise KeyTaken(self.key)
            self.session = []
        try:
            yield self.session
        except BaseException:
            self.rollback()
            raise

    def finish(self, response, entry):
        if self.key is not None:
            self.db.keys[self.key] = SimpleNamespace(
                fingerprint=self.fingerprint, status=response.status_code, body=response.get_data(),
                headers=json.dumps({"Content-Type": response.headers["Content-Type"]}),
                expires_at=self.now + self.ttl)
        self.db.effects += self.session
        if entry is not None:
            self.db.audit.append(dict(entry))
        self.session = None

    def finish_result(self, result):
        self.finish(json_response(result), None)

    def rollback(self):
        self.session = None


class FakeStore:
    def __init__(self, db: FakeDatabase, keys=True, log=True):
        self.db, self.keys, self.log = db, keys or None, log or None

    def stored(self, key, now):
        row = self.db.keys.get(key)
        return row if row is not None and row.expires_at > now else None

    def write(self, key, fingerprint, now, ttl):
        return FakeWrite(self.db, key, fingerprint, now, ttl)

    def append_alone(self, entry):
        self.db.audit.append(dict(entry))

    def purge_now_and_then(self, entrypoint, now):
        self.db.purges += 1


def entrypoint(hours=None):
    def response_from_exception(exc):
        return error_response(503, f"service unavailable, try again: {type(exc).__name__}")
    config = {"IDEMPOTENCY_KEY_HOURS": hours} if hours else {}
    return SimpleNamespace(container=SimpleNamespace(service_name="intake", config=config),
                           response_from_exception=response_from_exception)


def request(body=None, key=None, headers=HOA, method="POST", path="/api/v1/dossiers"):
    extra = {HEADER: key} if key is not None else {}
    environ = EnvironBuilder(method=method, path=path, json=body, headers={**headers, **extra}).get_environ()
    return signed_in(Request(environ))      # as the entry point leaves it before this step


def receive(req, *, refuse=False, status=201, code="000.05.20.H29-260213-0001", before=None):
    """A service's write: its commands through the unit of work, which joins the request's write."""
    def call():
        uow = UnitOfWork(None, [], req.environ.get(WRITE_ENVIRON_KEY))
        if before:
            before()
        with uow.transaction() as session:
            session.append(("dossier", code, json.loads(req.get_data())))
            if refuse:
                raise Conflict("status", "refused inside the transaction")
        return {"code": code, "official": official(req).name}
    return lambda: answer(call, status=status)


def run(db, req, call=None, store=None, **kwargs):
    return idempotency.around(entrypoint(), req, call or receive(req, **kwargs), official_name_and_unit,
                              store or FakeStore(db))


@pytest.fixture
def db():
    return FakeDatabase()


def test_a_read_runs_as_before_without_a_write_or_an_entry(db):
    req = request(method="GET", path="/api/v1/dossiers/X")
    seen = []
    response = run(db, req, lambda: (seen.append(req.environ.get(WRITE_ENVIRON_KEY)), json_response({}))[1])
    assert response.status_code == 200 and seen == [None] and db.audit == []


def test_a_service_without_the_tables_runs_as_before(db):
    req = request({"a": 1}, key="k")
    response = idempotency.around(SimpleNamespace(container=SimpleNamespace(
        service_name="nothing", config={}, dependencies=[])), req, lambda: json_response({"ok": 1}), official_name_and_unit)
    assert response.status_code == 200 and db.keys == {}


def test_a_write_without_a_key_commits_and_is_audited_each_time(db):
    assert run(db, request({"a": 1})).status_code == 201
    assert run(db, request({"a": 1})).status_code == 201
    assert len(db.effects) == 2 and db.keys == {} and db.purges == 0
    assert [(e["status"], e["idempotency_key"]) for e in db.audit] == [(201, ""), (201, "")]


def test_the_same_key_gives_the_first_answer_without_running_again(db):
    first = run(db, request({"a": 1}, key="k1"))
    again = run(db, request({"a": 1}, key="k1"))
    assert (again.status_code, again.get_data()) == (first.status_code, first.get_data()) == (201, first.get_data())
    assert again.headers[REPLAYED_HEADER] == "true" and REPLAYED_HEADER not in first.headers
    assert again.headers["Content-Type"] == first.headers["Content-Type"]
    assert len(db.effects) == 1
    assert [(e["status"], e["idempotency_key"], e["dossier"]) for e in db.audit] == [
        (201, "k1", "000.05.20.H29-260213-0001")] * 2


@pytest.mark.parametrize("other", [
    dict(body={"a": 2}), dict(headers=BINH), dict(path="/api/v1/dossiers/check"), dict(method="PUT")])
def test_the_same_key_with_another_request_is_422_naming_the_header(db, other):
    run(db, request({"a": 1}, key="k2"))
    response = run(db, request(**{"body": {"a": 1}, "key": "k2", **other}))
    assert response.status_code == 422 and json.loads(response.get_data())["field"] == HEADER
    assert len(db.effects) == 1 and [e["status"] for e in db.audit] == [201, 422]


@pytest.mark.parametrize("key", ["", "k" * 201, "khóa", "a\tb"])
def test_a_malformed_key_is_400_naming_the_header_and_nothing_runs(db, key):
    ran = []
    response = run(db, request({"a": 1}, key=key), lambda: ran.append(1))
    assert response.status_code == 400 and json.loads(response.get_data())["field"] == HEADER
    assert ran == [] and db.effects == []


def test_a_key_of_200_characters_is_taken(db):
    assert run(db, request({"a": 1}, key="k" * 200)).status_code == 201
    assert "k" * 200 in db.keys


def test_a_refusal_inside_the_transaction_changes_nothing_and_is_not_remembered(db):
    refused = run(db, request({"a": 1}, key="k3"), refuse=True)
    assert refused.status_code == 409 and db.effects == [] and db.keys == {}
    assert [e["status"] for e in db.audit] == [409]
    assert run(db, request({"a": 1}, key="k3")).status_code == 201 and len(db.effects) == 1


def test_a_refusal_before_any_transaction_is_audited_alone(db):
    req = request({"a": 1}, key="k4")
    response = run(db, req, lambda: answer(lambda: (_ for _ in ()).throw(Invalid("body", "bad"))))
    assert response.status_code == 400 and db.keys == {} and [e["status"] for e in db.audit] == [400]


def test_a_5xx_answer_rolls_the_write_back(db):
    req = request({"a": 1}, key="k5")
    response = run(db, req, lambda: (receive(req)(), error_response(500, "broken"))[1])
    assert response.status_code == 500 and db.effects == [] and db.keys == {}
    assert [e["status"] for e in db.audit] == [500]


def test_a_key_committed_by_another_request_meanwhile_gives_its_answer(db):
    other = request({"a": 1}, key="k6")
    first = run(db, other)
    db.effects.clear()
    later = request({"a": 1}, key="k6")
    store = FakeStore(db)
    store.stored = lambda key, now, calls=[]: calls.append(1) or (None if len(calls) == 1 else db.keys[key])
    response = run(db, later, store=store)
    assert (response.status_code, response.get_data()) == (201, first.get_data()) and db.effects == []


def test_a_key_held_too_long_by_another_request_is_409_with_retry_after(db):
    store = FakeStore(db)
    write = store.write

    def held(*args):
        made = write(*args)

        @contextmanager
        def join():
            made.busy = True
            raise KeyTaken(made.key)
            yield
        made.join = join
        return made
    store.write = held
    response = run(db, request({"a": 1}, key="k10"), store=store)
    assert response.status_code == 409 and response.headers["Retry-After"]
    assert json.loads(response.get_data())["field"] == HEADER and db.effects == []


def test_a_failed_commit_is_answered_as_the_entry_point_answers_an_exception(db):
    store = FakeStore(db)
    write = store.write

    def failing(*args):
        made = write(*args)
        made.finish = lambda response, entry: (_ for _ in ()).throw(ConnectionError("the database went away"))
        return made
    store.write = failing
    response = run(db, request({"a": 1}, key="k7"), store=store)
    assert response.status_code == 503 and db.effects == [] and db.keys == {}


def test_an_expired_key_runs_again_and_keys_last_the_configured_hours(db):
    req = request({"a": 1}, key="k8")
    idempotency.around(entrypoint(hours="2"), req, receive(req), official_name_and_unit, FakeStore(db))
    row = db.keys["k8"]
    assert row.expires_at - db.audit[0]["at"] == timedelta(hours=2)
    row.expires_at = datetime(2000, 1, 1, tzinfo=row.expires_at.tzinfo)
    del db.keys["k8"]         # purged
    assert run(db, request({"a": 1}, key="k8")).headers.get(REPLAYED_HEADER) is None
    assert len(db.effects) == 2 and db.purges == 2


def test_the_audit_entry_has_who_what_and_a_hash_of_the_body_never_the_body(db):
    body = {"applicant": {"id_number": "079203001234", "phone": "0903123456"}}
    run(db, request(body, key="k9"))
    entry = db.audit[0]
    assert (entry["official"], entry["unit"], entry["method"], entry["route"]) == (
        "Nguyễn Thị Hoa", "000.05.20.H29", "POST", "/api/v1/dossiers")
    assert entry["body_sha256"] == idempotency.audit.body_hash(request(body).get_data())
    assert "079203001234" not in json.dumps(entry, default=str) and "0903123456" not in json.dumps(entry, default=str)


def test_who_is_empty_when_no_official_acts(db):
    req = request({"a": 1}, headers={})
    idempotency.around(entrypoint(), req, lambda: json_response({"ok": 1}, status=202), official_name_and_unit, FakeStore(db))
    assert (db.audit[0]["official"], db.audit[0]["unit"], db.audit[0]["status"]) == ("", "", 202)


# --- RPC calls with a key (the gateway's writes) ------------------------------------------------

def rpc_call(db, args, key="grpc:000.03.20.H29:k1", store=None, fail=False):
    """One RPC call through the step: the worker's commands join its write, then its result."""
    container = SimpleNamespace(service_name="intake", config={})
    body = {"args": args, "kwargs": {}}
    step = idempotency.rpc_step(container, "receive", body, {idempotency.RPC_CONTEXT_KEY: key} if key else {},
                                store or FakeStore(db))
    if step is None or step.write is None:
        return step
    exc_info = None
    try:
        with UnitOfWork(None, [], step.write).transaction() as session:
            session.append(("dossier", args))
            if fail:
                raise Conflict("status", "refused")
        result = {"code": "000.03.20.H29-260302-0001", "args": args}
    except Exception as error:      # what the worker raised goes back to nameko as exc_info
        result, exc_info = None, (type(error), error, None)
    return idempotency.rpc_result(step, result, exc_info)


def test_an_rpc_call_without_a_key_or_a_table_runs_as_before(db):
    assert rpc_call(db, ["Hoa"], key=None) is None
    assert rpc_call(db, ["Hoa"], store=FakeStore(db, keys=False)) is None


def test_an_rpc_call_sent_again_with_its_key_gets_its_result_without_running(db):
    result, exc_info = rpc_call(db, ["Hoa", {"a": 1}])
    assert exc_info is None and len(db.effects) == 1
    again = rpc_call(db, ["Hoa", {"a": 1}])
    assert again.write is None and again.refusal is None and again.result == result
    assert len(db.effects) == 1


def test_an_rpc_key_used_for_another_call_is_refused_naming_it(db):
    rpc_call(db, ["Hoa", {"a": 1}])
    other = rpc_call(db, ["Hoa", {"a": 2}])
    assert isinstance(other.refusal, Invalid) and other.refusal.field == "idempotency-key"
    assert len(db.effects) == 1


def test_a_failed_rpc_call_is_rolled_back_and_not_remembered(db):
    result, exc_info = rpc_call(db, ["Hoa"], fail=True)
    assert result is None and exc_info[0] is Conflict and db.effects == [] and db.keys == {}
    assert rpc_call(db, ["Hoa"])[1] is None and len(db.effects) == 1


def test_an_rpc_key_committed_meanwhile_gives_that_calls_result(db):
    first, _ = rpc_call(db, ["Hoa"])
    store = FakeStore(db)
    store.stored = lambda key, now, calls=[]: calls.append(1) or (None if len(calls) == 1 else db.keys[key])
    assert rpc_call(db, ["Hoa"], store=store) == (first, None) and len(db.effects) == 1


def test_a_malformed_rpc_key_is_refused(db):
    refused = rpc_call(db, ["Hoa"], key="k" * 400)
    assert isinstance(refused.refusal, Invalid) and db.effects == []
