"""The gateway's pure parts: the audit chain, the feeds' audience, unit events, tokens, the API files."""
import filecmp
import shutil
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from motcua.contracts.refusals import Conflict, Forbidden, Invalid, Unauthenticated
from motcua.contracts.events import new_event
from services.gateway import audit, credentials, feed, ingest
from tests.conftest import ROOT

AT = datetime(2026, 3, 2, 3, 0, tzinfo=timezone.utc)
PROTO_DIR = ROOT / "services" / "gateway" / "proto"


def chain(n: int) -> list[dict]:
    entries, prev = [], audit.GENESIS
    for seq in range(1, n + 1):
        entry = {"seq": seq, "at": AT, "unit": "000.03.20.H29", "credential": "t1", "method": "GetDossier",
                 "dossier": f"D{seq}", "result": "OK", "detail": ""}
        entry.update(prev_hash=prev, hash=audit.entry_hash(prev, entry))
        prev = entry["hash"]
        entries.append(entry)
    return entries


def test_an_intact_chain_verifies():
    assert audit.verify(chain(5)) == (5, [])
    assert audit.verify([]) == (0, [])


@pytest.mark.parametrize("field,value", [("result", "PERMISSION_DENIED"), ("unit", "000.05.20.H29"),
                                         ("dossier", "D9"), ("at", datetime(2026, 3, 2, tzinfo=timezone.utc))])
def test_an_altered_entry_is_named(field, value):
    entries = chain(5)
    entries[2][field] = value
    count, breaks = audit.verify(entries)
    assert count == 5 and [(b.seq, b.problem.split(":")[0]) for b in breaks] == [(3, "altered")]


def test_a_removed_or_rehashed_entry_breaks_the_chain_after_it():
    entries = chain(5)
    del entries[1]
    assert {b.seq for b in audit.verify(entries)[1]} == {3}
    entries = chain(5)
    entries[1]["result"] = "X"
    entries[1]["hash"] = audit.entry_hash(entries[1]["prev_hash"], entries[1])   # a forger re-hashes one entry
    assert [b.seq for b in audit.verify(entries)[1]] == [3], "the next entry no longer follows"


def test_the_feed_audience_and_what_an_agency_does_not_see():
    received = new_event("dossier.received", {
        "code": "000.00.20.H29-260302-0001", "procedure_code": "1.013831", "procedure_version": 1,
        "channel": "in_person", "received_at": "2026-03-02T09:00:00+07:00", "appointment_date": "2026-03-16",
        "time_limit": "10 working days", "handling_agency": "000.41.20.H29",
        "applicant": {"name": "Nguyễn Thị Lan", "phone": "0903123456", "email": "lan@example.vn"},
        "quantities": {"pages": 1, "copies": 1}, "secret": "s3cret"}, "000.00.20.H29")
    assert feed.audience(received) == ["000.00.20.H29", "000.41.20.H29"]
    assert feed.payload_for("000.00.20.H29", received)["secret"] == "s3cret"
    agency = feed.payload_for("000.41.20.H29", received)
    assert "secret" not in agency and agency["applicant"] == {"name": "Nguyễn Thị Lan"}
    transferred = new_event("dossier.transferred", {
        "code": "X", "from_agency": "000.41.20.H29", "to_agencies": ["000.42.20.H29", "000.43.20.H29"],
        "transferred_at": "2026-03-03T09:00:00+07:00"}, "000.00.20.H29")
    assert feed.audience(transferred) == ["000.00.20.H29", "000.41.20.H29", "000.42.20.H29", "000.43.20.H29"]


EVENT = {"idempotency_key": "k1", "type": "result_signed", "dossier_code": "000.03.20.H29-260302-0001",
         "step": 7, "official": "Chủ tịch UBND Phường 3", "occurred_at": "2026-03-02T10:32:00+07:00"}


@pytest.mark.parametrize("change,field", [
    ({"idempotency_key": ""}, "idempotency_key"), ({"idempotency_key": "x" * 201}, "idempotency_key"),
    ({"type": "signed"}, "type"), ({"dossier_code": None}, "dossier_code"), ({"official": 5}, "official"),
    ({"occurred_at": "10:32"}, "occurred_at"), ({"occurred_at": "2026-03-02T10:32:00"}, "occurred_at"),
    ({"step": 0}, "step"), ({"step": True}, "step"), ({"type": "step_refused"}, "note"),
    ({"type": "delay_reported"}, "reason"), ({"type": "delay_reported", "reason": "r", "proposed_date": "3/3"},
                                             "proposed_date"),
    ({"type": "supplement_needed", "reason": "r"}, "documents"),
    ({"type": "supplement_needed", "reason": "r", "documents": [{"name": "Tờ khai", "form": "scan"}]},
     "documents[0].form"),
])
def test_a_malformed_unit_event_names_its_field(change, field):
    with pytest.raises(Invalid) as refused:
        ingest.parse({**EVENT, **change})
    assert refused.value.field == field


def test_unit_events_become_routing_actions():
    signed = ingest.parse(EVENT)
    action, step, body = ingest.routing_action(signed)
    assert (action, step, body["result"]) == ("complete", 7, "done")
    assert "Chủ tịch UBND Phường 3" in body["note"] and "10:32" in body["note"]
    delay = ingest.parse({**EVENT, "type": "delay_reported", "reason": "Chờ xác minh", "proposed_date": "2026-03-10"})
    assert ingest.routing_action(delay) == ("apologise", None, {"reason": "Chờ xác minh", "new_date": "2026-03-10"})


def view(stage, steps, state="running"):
    return {"state": state, "stage": stage,
            "steps": [{"stage": s, "agency": a, "state": st} for s, a, st in steps]}


def test_after_a_signed_result_the_dossier_moves_on_once_its_stage_is_done():
    ward, tax, land = "000.03.20.H29", "000.42.20.H29", "000.41.20.H29"
    assert ingest.next_move(view(0, [(0, ward, "done")]), ward) == "return_to_desk"
    assert ingest.next_move(view(0, [(0, land, "done"), (1, tax, "pending")]), land) == "transfer"
    assert ingest.next_move(view(1, [(1, tax, "done"), (1, land, "held")]), tax) is None, "a parallel step works"
    assert ingest.next_move(view(0, [(0, ward, "done")], state="processed"), ward) is None
    assert ingest.next_move(view(0, [(0, land, "done")]), ward) is None


class FakeRouting:
    """routing's RPC as the gateway sees it: answers, or refuses as routing would."""

    def __init__(self, *answers):
        self.answers, self.calls = list(answers), []

    def __call__(self, method, *args):
        self.calls.append((method, args[3] if method == "act" else None))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_a_retry_after_a_crash_counts_what_was_done_as_done():
    done = view(0, [(0, "W", "done")])
    routing = FakeRouting(Conflict("step", "already done"), done, {})
    ingest.apply(routing, "W", ingest.parse(EVENT), retry=True)
    assert routing.calls == [("act", "complete"), ("get_dossier", None), ("act", "return_to_desk")]
    with pytest.raises(Conflict):
        ingest.apply(FakeRouting(Conflict("step", "already done")), "W", ingest.parse(EVENT), retry=False)
    with pytest.raises(Forbidden):
        ingest.apply(FakeRouting(Forbidden("code", "not yours")), "W", ingest.parse(EVENT), retry=True)


def test_tokens_are_parsed_strictly_and_stored_as_hashes():
    assert credentials.parse_token("abcd.s3cr3t") == ("abcd", "s3cr3t")
    for bad in ("", "abcd", ".s3cr3t", "abcd."):
        with pytest.raises(Unauthenticated):
            credentials.parse_token(bad)
    with pytest.raises(Unauthenticated):
        credentials.bearer({"authorization": "Basic abc"})
    assert credentials.bearer({"authorization": "Bearer a.b"}) == "a.b"
    assert credentials.secret_hash("s") != "s" and len(credentials.secret_hash("s")) == 64


def test_the_api_files_pass_bufs_standard_lint():
    buf = ROOT / ".tools" / "node_modules" / ".bin" / "buf"
    assert buf.exists(), "buf is installed by `make tools` (make test does it)"
    result = subprocess.run([str(buf), "lint"], cwd=PROTO_DIR, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_generated_code_is_what_the_protos_make(tmp_path):
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.glob("motcua/v1/*.proto"))
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", str(PROTO_DIR), f"--python_out={tmp_path}",
                    f"--grpc_python_out={tmp_path}", f"--pyi_out={tmp_path}", *protos], check=True, cwd=PROTO_DIR)
    generated = sorted(p.name for p in (tmp_path / "motcua" / "v1").iterdir())
    assert len(generated) == 3 * len(protos)
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "motcua" / "v1", ROOT / "motcua" / "v1", generated,
                                               shallow=False)
    assert not mismatch and not errors, f"run `make proto`: {mismatch or errors} differ from the protos"
    shutil.rmtree(tmp_path / "motcua")


def test_a_unit_events_signature_is_checked_as_the_gateway_reads_the_event():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from motcua.contracts import signing
    from motcua_client import sign_event
    private = Ed25519PrivateKey.generate()
    registry = signing.KeyRegistry([signing.UnitKey("000.03.20.H29", "k1", signing.public_key_text(private), AT)])
    sent = sign_event({**EVENT, "note": " Đã ký "}, "000.03.20.H29", "k1", private)
    assert ingest.check_signature(registry, "000.03.20.H29", ingest.parse(sent), sent, AT) == \
        ingest.Signature("k1", sent["signature"])
    with pytest.raises(ingest.BadSignature) as other:          # Phường 5 cannot use Phường 3's key
        ingest.check_signature(registry, "000.05.20.H29", ingest.parse(sent), sent, AT)
    assert other.value.why == signing.OTHER_UNIT
    with pytest.raises(ingest.BadSignature) as malformed:
        ingest.check_signature(registry, "000.03.20.H29", ingest.parse(EVENT), {**EVENT, "signature": 5}, AT)
    assert malformed.value.why == signing.MALFORMED
    assert ingest.check_signature(registry, "000.03.20.H29", ingest.parse(EVENT), EVENT, AT,
                                  required=False) == ingest.Signature()
    with pytest.raises(ingest.BadSignature) as unsigned:
        ingest.check_signature(registry, "000.03.20.H29", ingest.parse(EVENT), EVENT, AT)
    assert (unsigned.value.field, unsigned.value.why) == ("signature", signing.MISSING)


def test_a_dissolved_units_tokens_are_refused_from_the_effective_date_naming_the_successor():
    from datetime import date

    entry = {"code": "000.10.20.H29", "dissolved_on": "2025-07-01", "successor": "000.60.20.H29"}
    credentials.require_active_unit("000.10.20.H29", entry, date(2025, 6, 30))      # the day before: acts
    credentials.require_active_unit("000.03.20.H29", {"code": "000.03.20.H29"}, date(2025, 7, 1))
    with pytest.raises(Forbidden) as refused:
        credentials.require_active_unit("000.10.20.H29", entry, date(2025, 7, 1))
    assert refused.value.field == "authorization"
    assert "dissolved on 2025-07-01 (merged into 000.60.20.H29)" in str(refused.value)
    assert "issue a token of 000.60.20.H29" in str(refused.value)


def test_a_proxy_whose_broker_node_went_away_is_replaced(monkeypatch):
    """nameko's standalone proxy never reconnects: the call answers UNAVAILABLE, the next call gets a
    new proxy (connected to a node of AMQP_URI that is up)."""
    from types import SimpleNamespace

    from amqp.exceptions import NotFound

    from services.gateway import platform as gateway_platform
    made = []

    class Standalone:
        def __init__(self, config, timeout, context_data=None):
            self.config, self.stopped = config, False
            self._reply_listener = SimpleNamespace(queue_consumer=SimpleNamespace(timeout=None))
            made.append(self)

        def start(self):
            return SimpleNamespace(catalog=SimpleNamespace(ping=self.ping))

        def ping(self):
            if self is made[0]:
                raise RuntimeError("This consumer has been disconnected, and can no longer be used")
            if self is made[1]:      # reconnected to another node, its durable reply queue's node down
                raise NotFound("home node 'n1@localhost' of durable queue 'rpc.reply-…' is down or inaccessible")
            return "pong"

        def stop(self):
            self.stopped = True

    monkeypatch.setattr(gateway_platform, "ClusterRpcProxy", Standalone)
    nodes = "amqp://guest:guest@127.0.0.1:5701//;amqp://guest:guest@127.0.0.1:5702//"
    platform = gateway_platform.Platform({"DATABASE_URL": "postgresql+psycopg2://nobody@127.0.0.1:1/none",
                                          "AMQP_URI": nodes})
    with pytest.raises(gateway_platform.Unavailable, match="connection to the broker was lost"):
        platform.call("catalog", "ping")
    assert made[0].stopped
    with pytest.raises(gateway_platform.Unavailable):
        platform.call("catalog", "ping")
    assert platform.call("catalog", "ping") == "pong"
    assert len(made) == 3 and made[2].config["AMQP_URI"] == nodes
    platform.close()


def test_the_management_api_is_the_first_node_of_the_list_that_answers(monkeypatch):
    import requests

    from services.gateway import admin
    asked = []

    class Answer:
        def raise_for_status(self):
            pass

    def get(url, auth, timeout):
        asked.append(url)
        if "15701" in url:
            raise requests.ConnectionError("connection refused")
        return Answer()

    monkeypatch.setattr(admin.requests, "get", get)
    nodes = "http://127.0.0.1:15701; http://127.0.0.1:15702/ ;http://127.0.0.1:15703"
    assert admin._management_api(nodes, ("guest", "guest")) == "http://127.0.0.1:15702/api"
    assert asked == ["http://127.0.0.1:15701/api/overview", "http://127.0.0.1:15702/api/overview"]
    monkeypatch.setattr(admin.requests, "get", lambda *a, **k: (_ for _ in ()).throw(requests.ConnectionError("down")))
    with pytest.raises(RuntimeError, match="no RabbitMQ management API answers"):
        admin._management_api(nodes, ("guest", "guest"))
