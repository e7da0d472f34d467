"""Issue 16: event consumers under bad input. Thousands of malformed messages (a seeded generator:
bytes that are not UTF-8 or not JSON, JSON that is not an object, envelope fields missing, of the
wrong type or extra, unknown types and versions, payloads missing a field, with a field too many
or of the wrong type, bodies over ``EVENT_MAX_BYTES``, JSON nested too deep, a pickle) are put
straight onto every event consumer's queue of every service (intake, routing, fees, notify,
portal, the gateway), interleaved with the events of real dossier lives driven over HTTP.

Done when: every malformed message is in the dead-letter queue with a reason (category ``invalid``
or ``undecodable``, never tried by a handler) and counted in ``motcua_dead_letters_total``; every
good event is handled, once; no row was changed by the bad ones (each table before and after, but
for the rows of the good lives); and the figures (messages, time) are printed.

The malformed messages are all about "victim" dossiers received before the flood: had one got
through, it would have changed their rows. ``FUZZ_MESSAGES`` (default 2400), ``FUZZ_LIVES``
(default 24) and ``FUZZ_SEED`` (default 16) change the run."""
import collections
import hashlib
import importlib
import inspect
import json
import os
import pickle
import random
import time

import eventlet
import pytest
import requests
from kombu import Exchange, Producer
from kombu.utils.json import loads as kombu_loads
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR
from nameko.testing.utils import find_free_port
from sqlalchemy import text

from apps.registry import SERVICES
from motcua.contracts.events import INVALID_KINDS, KNOWN_TYPES, SCHEMAS, EventInvalid, new_event, parse
from motcua.runtime import broker
from motcua.runtime.inbox import EventConsumer
from tests.conftest import EventTap
from tests.e2e.conftest import ServiceProcess, amqp
from tests.e2e.test_intake_desk import APPLICANT, DOCUMENTS, MARITAL_STATUS, WARD_5, wait_for
from tests.fakes.officials import official_headers

BAD = int(os.environ.get("FUZZ_MESSAGES", 2400))
LIVES = int(os.environ.get("FUZZ_LIVES", 24))
SEED = int(os.environ.get("FUZZ_SEED", 16))
MAX_BYTES = 256 * 1024          # EVENT_MAX_BYTES of the processes: oversized bodies stay cheap to send
CONSUMERS = ("intake", "routing", "fees", "notify", "portal")
SCHEMAS_COMPARED = ("intake", "routing", "fees", "notify", "portal", "gateway", "catalog")
DESK = official_headers("Trần Văn Bình", WARD_5)
PERSONAL = ("0903123456", "079203001234", "+84 903 123 456")


# --- the queues -------------------------------------------------------------------------------

def event_queues() -> dict[str, str]:
    """Every event consumer's queue (``<service>.<method>``) and what it takes, from the services' code."""
    queues = {}
    for name in CONSUMERS:
        module = importlib.import_module(SERVICES[name].module)
        (cls,) = [c for _, c in inspect.getmembers(module, inspect.isclass)
                  if c.__module__ == module.__name__ and getattr(c, "name", None) == name]
        for method, member in inspect.getmembers(cls):
            for entrypoint in getattr(member, ENTRYPOINT_EXTENSIONS_ATTR, ()):
                if isinstance(entrypoint, EventConsumer):
                    queues[f"{name}.{method}"] = entrypoint.event_type
    queues["gateway.feed"] = "dossier.#"
    queues["gateway.unit-events"] = "unit events"
    return queues


def concrete(takes: str) -> str:
    """An event type a queue takes (a pattern's first, for the catalogue copy and the feed)."""
    if takes in KNOWN_TYPES:
        return takes
    return {"catalog.#": "catalog.units_published"}.get(takes, "dossier.withdrawn")


def accepted(takes: str, event_type: str) -> bool:
    if takes == "unit events":
        return False            # the routing key says the type: "unit-events" is none
    if takes.endswith(".#"):
        return event_type.startswith(takes[:-1])
    return event_type == takes


# --- the generator ----------------------------------------------------------------------------

VALID = {"str": "x", "int": 1, "vnd": 1000, "bool": True, "date": "2026-03-02",
         "instant": "2026-03-02T09:00:00+07:00", "unit": WARD_5, "list": [], "object": {}}
WRONG = (None, True, False, 0, -1, 1.5, 10**20, "", " ", "x" * 300, "2026-02-30", "Phường 5", [], [1, "a"], {},
         {"a": 1}, {"__type__": "datetime", "__value__": "2026-03-02T09:00:00"}, {"__type__": "uuid", "__value__": "x"},
         79203001234, *PERSONAL)
ENVELOPE = ("id", "type", "version", "occurred_at", "unit", "correlation_id", "payload")


def valid_value(spec):
    if spec.schema is not None:
        return {name: valid_value(inner) for name, inner in spec.schema.fields.items()}
    return [VALID[spec.items]] if spec.items else VALID[spec.kind]


def good_raw(event_type: str, code: str) -> dict:
    version = max(v for t, v in SCHEMAS if t == event_type)
    schema = SCHEMAS[(event_type, version)]
    payload = {name: code if name == "code" else valid_value(spec) for name, spec in schema.fields.items()}
    return json.loads(new_event(event_type, payload, WARD_5, version=version).to_json())


def inside(rng, raw) -> dict:
    """A field inside one of the payload's objects (or lists) made wrong, or one added to it."""
    inner = [name for name, value in raw["payload"].items() if isinstance(value, (dict, list)) and value]
    if not inner:
        return {**raw, "payload": {**raw["payload"], rng.choice(_fields(raw)): rng.choice(WRONG)}}
    name = rng.choice(inner)
    value = raw["payload"][name]
    if isinstance(value, list):
        value = [rng.choice(WRONG) for _ in value]
    else:
        value = {**value, rng.choice([*value, "id_number", "address"]): rng.choice(WRONG)}
    return {**raw, "payload": {**raw["payload"], name: value}}


def _json(raw) -> tuple[bytes, str]:
    return json.dumps(raw, ensure_ascii=False).encode(), "application/json"


def _fields(raw) -> list[str]:
    return sorted(raw["payload"]) or ["code"]


MUTATIONS = {
    "random bytes": lambda rng, raw: (rng.randbytes(rng.randint(1, 400)),
                                      rng.choice(("application/octet-stream", "application/json"))),
    "not UTF-8": lambda rng, raw: (lambda b, i: (b[:i] + rng.choice((b"\xff", b"\xc3", b"\xed\xa0\x80")) + b[i:],
                                                 rng.choice(("application/octet-stream", "application/json"))))(
        _json(raw)[0], rng.randint(0, len(_json(raw)[0]))),
    "cut short": lambda rng, raw: (_json(raw)[0][:rng.randint(0, len(_json(raw)[0]) - 1)], "application/json"),
    "not an object": lambda rng, raw: _json(rng.choice(([raw], "dossier.withdrawn", 42, None, True, [], 3.5))),
    "envelope field missing": lambda rng, raw: _json({k: v for k, v in raw.items() if k != rng.choice(ENVELOPE)}),
    "envelope field wrong": lambda rng, raw: _json({**raw, rng.choice(ENVELOPE): rng.choice(WRONG)}),
    "envelope field extra": lambda rng, raw: _json({**raw, rng.choice(("phone", "id_number", "Payload", "k" * 90)):
                                                     rng.choice(WRONG)}),
    "unknown type": lambda rng, raw: _json({**raw, "type": rng.choice(("dossier.teleported", "catalog.deleted",
                                                                       "fees.stolen", "a.b", "dossier.received.v2"))}),
    "unknown version": lambda rng, raw: _json({**raw, "version": rng.choice((2, 3, 99, 2**31, 10**30))}),
    "payload field missing": lambda rng, raw: _json({**raw, "payload": {
        k: v for k, v in raw["payload"].items() if k != rng.choice(_fields(raw))}}),
    "payload field extra": lambda rng, raw: _json({**raw, "payload": {
        **raw["payload"], rng.choice(("phone", "id_number", "applicant_phone", "note2")): rng.choice(WRONG)}}),
    "payload field wrong": lambda rng, raw: _json({**raw, "payload": {
        **raw["payload"], rng.choice(_fields(raw)): rng.choice(WRONG)}}),
    "field inside wrong": lambda rng, raw: _json(inside(rng, raw)),
    "payload not an object": lambda rng, raw: _json({**raw, "payload": rng.choice([w for w in WRONG
                                                                                   if not isinstance(w, dict)])}),
    "too large": lambda rng, raw: _json({**raw, "payload": {**raw["payload"],
                                                            "code": "x" * rng.randint(MAX_BYTES, 2 * MAX_BYTES)}}),
    "nested too deep": lambda rng, raw: ((lambda d: b"[" * d + b"]" * d)(rng.randint(20_000, 60_000)),
                                         "application/json"),
    "a pickle": lambda rng, raw: (pickle.dumps(raw), "application/x-python-serialize"),
}
RARE = {"too large": 0.2, "nested too deep": 0.3, "a pickle": 0.3}     # heavy ones: fewer


def malformed(rng: random.Random, takes: str, raw: dict) -> tuple[bytes, str, str]:
    """(body, content type, mutation) that the consumer of a queue taking ``takes`` must refuse: a
    mutation that happens to leave a valid event of the queue's type is drawn again."""
    names = list(MUTATIONS)
    weights = [RARE.get(n, 1.0) for n in names]
    while True:
        mutation = rng.choices(names, weights)[0]
        body, content_type = MUTATIONS[mutation](rng, json.loads(json.dumps(raw)))
        if takes == "unit events" or content_type == "application/x-python-serialize" or len(body) > MAX_BYTES:
            return body, content_type, mutation
        try:
            # As the consumer sees it: kombu decodes JSON (with its own object hook) first.
            decoded = kombu_loads(body.decode("utf-8")) if content_type == "application/json" else body
        except Exception:       # whatever kombu raises: dead-lettered as undecodable
            return body, content_type, mutation
        try:
            envelope = parse(decoded)
        except EventInvalid:
            return body, content_type, mutation
        if not accepted(takes, envelope.type):
            return body, content_type, mutation


def digest(body: bytes) -> str:
    return hashlib.sha256(bytes(body)[:MAX_BYTES]).hexdigest()


# --- the database -----------------------------------------------------------------------------

def snapshot(engine) -> dict[str, collections.Counter]:
    """Every row of every table of the services, as JSON text, per table."""
    rows = {}
    with engine.connect() as connection:
        tables = connection.execute(text(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
            "AND table_schema = ANY(:schemas) AND table_name <> 'alembic_version'"),
            {"schemas": list(SCHEMAS_COMPARED)}).all()
        for schema, table in tables:
            rows[f"{schema}.{table}"] = collections.Counter(connection.execute(text(
                f'SELECT row_to_json(t)::text FROM "{schema}"."{table}" t')).scalars())
    return rows


def received_in_report(engine) -> int:
    """Dossiers received, as report II.06a counts them (its daily roll-ups and the changes not folded yet)."""
    with engine.connect() as connection:
        return connection.execute(text(
            "SELECT coalesce(sum(received), 0) FROM (SELECT received FROM routing.report_rollups WHERE span = 'day' "
            "UNION ALL SELECT received FROM routing.report_rollup_changes WHERE span = 'day') r")).scalar_one()


def processed(engine, service: str) -> set[str]:
    with engine.connect() as connection:
        return {str(i) for i in connection.execute(text(f"SELECT event_id FROM {service}.processed_events")).scalars()}


REFUSED = (*INVALID_KINDS, "rejected")


def refused_count(url: str) -> float:
    """A service's dead letters of messages that are not events (``motcua_dead_letters_total``)."""
    total = 0.0
    for line in requests.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("motcua_dead_letters_total{") and any(f'reason="{kind}"' in line for kind in REFUSED):
            total += float(line.rsplit(" ", 1)[1])
    return total


# --- the stack --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stack(process_env, catalog_process, engine, clock, tmp_path_factory):
    with engine.begin() as connection:
        tables = connection.execute(text(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
            "AND table_schema = ANY(:schemas) AND table_name NOT LIKE 'catalogue_%' AND table_name <> "
            "'alembic_version'"), {"schemas": ["intake", "routing", "fees", "notify", "portal", "gateway"]}).scalars()
        connection.execute(text(f"TRUNCATE {', '.join(tables)} CASCADE"))
    logs = tmp_path_factory.mktemp("fuzz")
    env = {**process_env, "CLOCK_FILE": str(clock.path), "EVENT_MAX_BYTES": str(MAX_BYTES),
           "GATEWAY_REQUIRE_SIGNATURES": "false", "GATEWAY_GRPC_ADDRESS": f"127.0.0.1:{find_free_port()}",
           # No daily digest while the tables are compared: its rows would be nobody's doing here.
           "DIGEST_AT": "23:59"}
    clock("2026-03-02T09:00:00+07:00")
    services = {}
    try:
        for name in (*CONSUMERS, "gateway"):
            services[name] = ServiceProcess(name, env, logs).start()
        yield services
    finally:
        for service in services.values():
            service.stop()


def receive(intake) -> str:
    answer = requests.post(intake.url + "/api/v1/dossiers", headers=DESK, timeout=30, json={
        "procedure_code": MARITAL_STATUS, "applicant": APPLICANT, "channel": "in_person", "documents": DOCUMENTS,
        "sets": 1})
    assert answer.status_code == 201, answer.text
    return answer.json()["code"]


def withdraw(intake, code: str) -> None:
    answer = requests.post(f"{intake.url}/api/v1/dossiers/{code}/withdrawal", headers=DESK, timeout=30,
                           json={"reason": "Người nộp rút hồ sơ"})
    assert answer.status_code == 200, answer.text


def settled(engine, codes: list[str]) -> bool:
    """Every service has seen the dossiers' receipt (and withdrawal)."""
    with engine.connect() as connection:
        counts = [connection.execute(text(f"SELECT count(DISTINCT {column}) FROM {table} WHERE {column} = ANY(:c)"),
                                     {"c": codes}).scalar_one()
                  for table, column in (("routing.workflows", "code"), ("fees.accounts", "code"),
                                        ("notify.dossiers", "code"), ("gateway.feed", "dossier"))]
    return all(count == len(codes) for count in counts)


def test_thousands_of_malformed_messages_are_dead_lettered_and_change_nothing(stack, engine, report):
    queues = event_queues()
    rng = random.Random(SEED)
    with broker.confirmed_connection(amqp()) as connection:
        broker.declare_topology(connection.default_channel)
        broker.dead_letter_queue(connection.default_channel).purge()

    # The victims: real dossiers, received and one withdrawn, settled everywhere before the flood.
    victims = [receive(stack["intake"]) for _ in range(3)]
    withdraw(stack["intake"], victims[0])
    wait_for(lambda: settled(engine, victims), timeout=60)
    eventlet.sleep(3)      # outbox marks, notify's sends: the victims' rows at rest
    before = snapshot(engine)
    received_before = received_in_report(engine)

    # The flood, built first (so that its time is the consumers', not the generator's).
    flood = []
    names = sorted(queues)
    for i in range(BAD):
        queue = names[i % len(names)]
        takes = queues[queue]
        raw = good_raw(concrete(takes), rng.choice(victims))
        body, content_type, mutation = malformed(rng, takes, raw)
        flood.append((queue, body, content_type, mutation))
    rng.shuffle(flood)
    expected = collections.Counter((queue, digest(body)) for queue, body, _, _ in flood)
    dead_before = {name: refused_count(service.url) for name, service in stack.items()}

    tap = EventTap(amqp(), "#")
    started = time.monotonic()
    published = {"bad": 0}

    def publish_flood():
        with broker.confirmed_connection(amqp()) as connection:
            producer = Producer(connection.default_channel, exchange=Exchange(""), auto_declare=False)
            for queue, body, content_type, _ in flood:
                producer.publish(body, routing_key=queue, content_type=content_type, content_encoding="binary"
                                 if content_type != "application/json" else "utf-8", delivery_mode=2,
                                 retry=True)
                published["bad"] += 1
                if published["bad"] % 20 == 0:
                    eventlet.sleep(0)       # the lives go meanwhile

    flooding = eventlet.spawn(publish_flood)
    lives = []
    for i in range(LIVES):
        lives.append(receive(stack["intake"]))
        if i % 3 == 0:
            withdraw(stack["intake"], lives[-1])
        eventlet.sleep(0.05)
    flooding.wait()
    flood_done = time.monotonic() - started

    # Every malformed message is dead-lettered, with a reason, by the consumer of its queue.
    letters, others = collections.Counter(), []
    reasons = collections.Counter()
    deadline = time.monotonic() + 120
    with broker.confirmed_connection(amqp()) as connection:
        queue = broker.dead_letter_queue(connection.default_channel)
        while sum(letters.values()) < BAD and time.monotonic() < deadline:
            message = queue.get(no_ack=True)
            if message is None:
                eventlet.sleep(0.1)
                continue
            headers = message.headers
            key = (headers.get("x-dead-letter-queue"), digest(message.body))
            if expected[key] > letters[key]:
                letters[key] += 1
                # (``rejected``: the gateway's unit events breaking their own schema, ``ingest.parse``)
                assert headers["x-dead-letter-category"] in ("invalid", "undecodable", "rejected"), headers
                reason = headers["x-dead-letter-reason"]
                assert ": " in reason and not any(number in reason for number in PERSONAL), reason
                reasons[headers["x-dead-letter-kind"]] += 1
            elif headers.get("x-dead-letter-category") != "undeliverable":
                # (notify's messages to channels this stack has not configured are dead-lettered
                # after their attempts: not an event consumer's doing)
                others.append(headers)
    dead_lettered = time.monotonic() - started
    missing = expected - letters
    mutations = {(queue, digest(body)): mutation for queue, body, _, mutation in flood}
    assert not missing, (f"{sum(missing.values())} malformed messages not dead-lettered, e.g. "
                         f"{[(queue, mutations[queue, d]) for queue, d in list(missing)[:5]]}; others: {others[:5]}")

    # Every good life is handled everywhere; once.
    wait_for(lambda: settled(engine, victims + lives), timeout=120)
    handled = time.monotonic() - started
    eventlet.sleep(3)
    good = [event for event in tap.drain(settle=1.0)]
    tap.close()
    assert others == [], f"good events dead-lettered: {others[:3]}"
    with engine.connect() as connection:
        for table, column in (("routing.workflows", "code"), ("fees.accounts", "code"), ("notify.dossiers", "code")):
            per_code = dict(connection.execute(text(
                f"SELECT {column}, count(*) FROM {table} WHERE {column} = ANY(:c) GROUP BY {column}"),
                {"c": lives}).all())
            assert per_code == {code: 1 for code in lives}, table
        # Charged once: every dossier kept (not withdrawn) owes what a victim kept owes.
        kept = [code for i, code in enumerate(lives) if i % 3]
        owed = dict(connection.execute(text("SELECT code, charged FROM fees.accounts WHERE code = ANY(:c)"),
                                       {"c": [*kept, victims[1]]}).all())
        assert {code: owed[code] for code in kept} == {code: owed[victims[1]] for code in kept}
    for name in CONSUMERS:
        takes = {t for q, t in queues.items() if q.startswith(name + ".")}
        wanted = {e["id"] for e in good if any(accepted(t, e["type"]) for t in takes)}
        assert wanted <= processed(engine, name), f"{name}: good events not handled"

    # Nothing but the good lives changed a row.
    after = snapshot(engine)
    good_marks = set(lives) | {e["id"] for e in good}
    changed = {}
    for table in sorted(set(before) | set(after)):
        gone = before.get(table, collections.Counter()) - after.get(table, collections.Counter())
        came = after.get(table, collections.Counter()) - before.get(table, collections.Counter())
        foreign = [row for row in (*gone, *came) if not any(mark in row for mark in good_marks)]
        if foreign:
            changed[table] = foreign[:2]
    allowed = {
        # Counters the good lives move (code and book line numbers, per unit and year): no code in them.
        "intake.dossier_code_counters", "intake.tracking_book_counters", "fees.receipt_counters",
        # The gateway's feed heads: the newest position of each unit's feed.
        "gateway.feed_heads",
        # Report II.06a's counts per unit and day (no dossier named): their sum is checked below.
        "routing.report_rollups", "routing.report_rollup_changes",
    }
    assert {t: rows for t, rows in changed.items() if t not in allowed} == {}
    assert received_in_report(engine) == received_before + LIVES
    for table in allowed & set(changed):
        victims_rows = [row for row in changed[table] if any(v in row for v in victims)]
        assert victims_rows == [], table

    # Counted: by service, type (bounded) and reason.
    for name, service in stack.items():
        sent = sum(n for (queue, _), n in expected.items() if queue.startswith(name + "."))
        counted = refused_count(service.url) - dead_before[name]
        assert counted == sent, name
    # Personal numbers, in the bad messages and the good lives alike, are nowhere in clear in the logs.
    for name, service in stack.items():
        log = service.log_path.read_text(encoding="utf-8", errors="replace")
        assert not [number for number in PERSONAL if number in log], name
    report(f"malformed events: {BAD} onto {len(queues)} queues of {len(stack)} services ({dict(reasons)}), "
           f"with {LIVES} dossier lives ({len(good)} good events): all published in {flood_done:.1f} s, all "
           f"dead-lettered after {dead_lettered:.1f} s ({BAD / dead_lettered:.0f} a second; "
           f"{dead_lettered - flood_done:.1f} s after the last was published), the good ones handled after "
           f"{handled:.1f} s")
