"""Two replicas of every service on a three-node RabbitMQ cluster with quorum queues: complete
dossier lives go on while the node leading most queues is killed (SIGKILL) and started again, and
another node is restarted; nothing is lost or done twice.

The stack and the lives are the throughput benchmark's (``bench.throughput``: ``Stack``, ``Load``,
``wait_quiet``, ``account``), on the test's own cluster (``tests.e2e.rabbit``), its own vhost
(made with rabbitmqctl: the cluster runs no management plugin) and its own database
(``<test database>_cluster``: the stack drops and migrates every service's schema). The services'
clock is a file: after the lives, a few dossiers left open are moved past their deadline, and
routing's scheduler (two replicas) must announce each ``dossier.overdue`` exactly once."""
from __future__ import annotations

import random
import re
import shutil
import tempfile
import time
from pathlib import Path

import eventlet
import pytest
import requests
from sqlalchemy import text
from sqlalchemy.orm import Session

from bench import throughput
from motcua.runtime.db import make_engine
from services.intake import store as intake_store
from tests.conftest import TEST_DATABASE_URL
from tests.e2e.rabbit import RabbitCluster, RabbitCtl

pytestmark = pytest.mark.skipif(shutil.which("rabbitmq-server") is None, reason="needs rabbitmq-server")

RATE, SECONDS = 2, 30            # lives started per second, for how long: 60 lives
KILL_AFTER, DOWN_FOR = 8, 10     # seconds into the load the leader is killed; how long it stays down
OPEN_DOSSIERS = 6                # received and paid, never processed: overdue once the clock moves
START = "2026-03-02T09:00:00+07:00"       # a Monday
LATER = "2026-03-23T09:00:00+07:00"       # three weeks on: every open dossier is past its due date


def say(*parts):
    print(f"[cluster {time.strftime('%H:%M:%S')}]", *parts, flush=True)


@pytest.fixture(scope="module")
def cluster():
    started = time.monotonic()
    rabbit = RabbitCluster(3)
    try:
        rabbit.start()
        say(f"cluster of {', '.join(n.name for n in rabbit.nodes)} up in {time.monotonic() - started:.0f} s")
        yield rabbit
    finally:
        rabbit.stop()


@pytest.fixture(scope="module")
def stack(cluster):
    """Two replicas of every service, ``AMQP_URI`` listing the three nodes, quorum queues on."""
    run_dir = Path(tempfile.mkdtemp(prefix="motcua-cluster-run-"))
    clock = run_dir / "now"
    clock.write_text(START)
    args = throughput.parse_args([
        "--replicas", "2", "--rates", str(RATE), "--duration", str(SECONDS), "--drain", "120",
        "--life-timeout", "120", "--database-url", TEST_DATABASE_URL + "_cluster",
        "--env", "QUORUM_QUEUES=true", "--env", f"CLOCK_FILE={clock}", "--env", "ROUTING_SCAN_SECONDS=0.5",
        "--env", "EVENT_WAIT_SECONDS=60"])
    throughput.ensure_database(args.database_url)
    stack = throughput.Stack(args, 2, run_dir)
    stack.management = RabbitCtl(cluster)
    stack.amqp_uri = cluster.uri(stack.vhost)
    stack.clock = clock
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        for process in stack.processes:
            if process.popen.poll() is None:
                process.popen.kill()
        shutil.rmtree(run_dir, ignore_errors=True)


def open_dossier(load: throughput.Load, n: int) -> str:
    """Received at a ward desk and paid: it waits at the ward, past its same-day deadline later."""
    unit = throughput.WARDS[n % len(throughput.WARDS)]
    desk = throughput.official("Cán bộ một cửa", unit)
    procedure, amount, quantities = throughput.CERTIFIED_COPY
    status, dossier = load.call("receive", "intake", "POST", "/api/v1/dossiers", desk, {
        "procedure_code": procedure, "documents": load.documents[procedure], "quantities": quantities,
        "applicant": {"name": "Lê Văn Chờ", "id_number": f"07930000{n:04d}", "address": "1 Lê Lợi",
                      "phone": f"0903{n:06d}", "email": f"waiting{n}@example.vn"},
        "notifications": {"channels": ["sms", "email"], "optional": True}})
    assert status == 201, dossier
    life = {"polls": 0}
    deadline = time.monotonic() + 60
    load.until("pay", "fees", "POST", f"/api/v1/dossiers/{dossier['code']}/payments", desk,
               {"method": "cash", "amount": amount, "reference": f"open-{n}"}, 200, (404,), deadline, life)
    load.until("route_view", "routing", "GET", f"/api/v1/dossiers/{dossier['code']}", desk, None, 200, (404,),
               deadline, life)
    return dossier["code"]


def chaos(cluster: RabbitCluster, vhost: str, log: list) -> None:
    """SIGKILL of the node leading most quorum queues; started again; then another node restarted."""
    eventlet.sleep(KILL_AFTER)
    leaders = cluster.leaders(vhost)
    victim = cluster.node(max(leaders, key=leaders.get))
    victim.kill()
    log.append(("killed", victim.name, leaders, time.monotonic()))
    say(f"killed {victim.name} (leader of {leaders[victim.name]} of {sum(leaders.values())} quorum queues)")
    eventlet.sleep(DOWN_FOR)
    victim.start()
    log.append(("started", victim.name, None, time.monotonic()))
    say(f"{victim.name} back")
    eventlet.sleep(3)
    leaders = cluster.leaders(vhost)
    other = cluster.node(max((name for name in leaders if name != victim.name), key=leaders.get))
    other.ctl("stop_app", timeout=120)
    log.append(("stopped_app", other.name, leaders, time.monotonic()))
    say(f"stop_app {other.name} (leader of {leaders[other.name]})")
    eventlet.sleep(5)
    other.ctl("start_app", timeout=120)
    other.await_startup()
    log.append(("started_app", other.name, None, time.monotonic()))
    say(f"start_app {other.name}")


def unit_system(platform, calls: list, running: list) -> None:
    """A unit system asking the catalogue through the gateway's RPC proxies (``Platform.call``) every
    0.3 s: each call ``(when, answered)``."""
    from services.gateway.platform import Unavailable
    while running:
        try:
            answered = platform.call("catalog", "get_unit", throughput.DISTRICT) is not None
        except (Unavailable, TimeoutError):
            answered = False
        calls.append((time.monotonic(), answered))
        eventlet.sleep(0.3)


def gauge(urls: list[str], name: str, label: str, value: str) -> list[float]:
    """Per replica: the sum of ``name``'s samples whose ``label`` is ``value`` (every sample if None)."""
    sums = []
    pattern = re.compile(rf'^{name}\{{([^}}]*)\}} ([0-9.e+-]+)$', re.M)
    for url in urls:
        body = requests.get(url + "/metrics", timeout=10).text
        sums.append(sum(float(v) for labels, v in pattern.findall(body)
                        if label is None or f'{label}="{value}"' in labels))
    return sums


def test_lives_survive_a_killed_and_a_restarted_node_exactly_once(cluster, stack, report):
    started = time.monotonic()
    engine = make_engine(stack.args.database_url, pool_size=2, application_name="cluster-test")
    try:
        load = throughput.Load(stack, stack.args, random.Random(2245))
        load.load_documents()
        waiting = [open_dossier(load, n) for n in range(OPEN_DOSSIERS)]

        # Every queue the services consume is a quorum queue, replicated on the three nodes.
        queues = cluster.list_queues(stack.vhost, "name", "type", "durable")
        kinds = {q["name"]: q["type"] for q in queues}
        assert any(name.startswith("rpc-") for name in kinds) and "motcua.dead-letter" in kinds
        consumed = {name: kind for name, kind in kinds.items() if not name.startswith("rpc.reply-")}
        assert set(consumed.values()) == {"quorum"}, consumed
        say(f"{len(consumed)} quorum queues: {sorted(consumed)}")

        from services.gateway.platform import Platform
        gateway = Platform({"DATABASE_URL": stack.args.database_url, "AMQP_URI": stack.amqp_uri,
                            "RPC_TIMEOUT_SECONDS": 5, "DB_POOL_SIZE": 1})
        calls: list = []
        running = [True]
        caller = eventlet.spawn(unit_system, gateway, calls, running)
        log: list = []
        chaos_thread = eventlet.spawn(chaos, cluster, stack.vhost, log)
        phase = load.run_phase(RATE, SECONDS)
        chaos_thread.wait()
        eventlet.sleep(5)
        running.clear()
        caller.wait()
        gateway.close()
        assert [step[0] for step in log] == ["killed", "started", "stopped_app", "started_app"]
        # RPC through the gateway's proxies: answered while a node was down, and again after it all.
        killed, back, restarted = log[0][3], log[1][3], log[3][3]
        say(f"gateway RPC: {sum(ok for _, ok in calls)} of {len(calls)} calls answered "
            f"({sum(1 for t, ok in calls if not ok)} unanswered, around the failures)")
        assert any(ok for t, ok in calls if killed < t < back), "no answer while a node was down"
        assert all(ok for t, ok in calls if t > restarted + 3), "the gateway did not recover"

        lives = phase["lives"]
        done = [life for life in lives if life["end"] and not life["error"]]
        failed = sorted({life["error"] for life in lives if life["error"]})
        say(f"{len(lives)} lives started, {len(done)} completed, failed: {failed[:5]}")
        assert lives and len(done) == len(lives) and phase["unfinished"] == 0, failed[:5]

        # Three weeks later: the open dossiers are overdue; routing's two scanners announce each once.
        stack.clock.write_text(LATER)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                flagged = connection.execute(text(
                    "SELECT count(*) FROM routing.workflows WHERE code = ANY(:codes) AND overdue_at IS NOT NULL"),
                    {"codes": waiting}).scalar_one()
            if flagged == len(waiting):
                break
            time.sleep(0.5)
        time.sleep(3)          # more scans of both replicas: none may announce it again
        quiet = throughput.wait_quiet(stack, engine, timeout=90)
        assert quiet["quiet"], quiet

        with engine.connect() as connection:
            overdue = connection.execute(text(
                "SELECT envelope->'payload'->>'code', count(*) FROM routing.outbox "
                "WHERE type = 'dossier.overdue' GROUP BY 1")).all()
            sql_running = dict(connection.execute(text(
                "SELECT overdue_at IS NOT NULL, count(*) FROM routing.workflows WHERE state = 'running' "
                "GROUP BY 1")).all())
        with Session(engine) as session:
            sql_open = sum(count for _, _, count in intake_store.open_counts(session))
        assert dict(overdue) == {code: 1 for code in waiting}, overdue

        # Gauges read from the database: both replicas say what SQL says.
        routing_urls, intake_urls = stack.urls["routing"], stack.urls["intake"]
        assert gauge(routing_urls, "motcua_dossiers_running", "deadline", "overdue") == \
            [float(sql_running.get(True, 0))] * 2 == [float(len(waiting))] * 2
        assert gauge(routing_urls, "motcua_dossiers_running", "deadline", "within_deadline") == \
            [float(sql_running.get(False, 0))] * 2
        assert gauge(intake_urls, "motcua_dossiers_open", None, None) == [float(sql_open)] * 2

        # Exactly once, everywhere: the lives and the overdue dossiers, with all their events.
        accounting = throughput.account(stack, engine, {"lives": lives + [{"code": c} for c in waiting]})
        verdict = accounting["exactly_once"]
        rows = {k: f"{v['once']}/{v['expected']}" for k, v in verdict["rows"].items()}
        events = {k: f"{v['once']}/{v['expected']}" for k, v in verdict["events"].items()}
        duplicates = throughput.duplicates_metric(stack)
        say(f"exactly once: {verdict['exactly_once']}; rows {rows}; events {events}; e-mails "
            f"{verdict['messages']['email']}; SMS {verdict['messages']['sms']}; dead-lettered "
            f"{verdict['dead_lettered']}; redeliveries recognised {duplicates:.0f}; "
            f"{accounting['events']} events; {time.monotonic() - started:.0f} s")
        report(f"[RabbitMQ cluster] {len(lives)} lives, {len(done)} completed while {log[0][1]} was killed and "
               f"{log[2][1]} restarted; {len(waiting)} overdue dossiers announced once each by 2 routing replicas; "
               f"lost: {sum(v['missing'] for v in verdict['rows'].values())} rows, "
               f"{sum(v['missing'] for v in verdict['events'].values())} events; doubled: "
               f"{sum(v['duplicated'] for v in verdict['rows'].values())} rows, "
               f"{sum(v['duplicated'] for v in verdict['events'].values())} events; exactly once: "
               f"{verdict['exactly_once']}")
        assert verdict["exactly_once"], verdict

        # Still quorum queues after the failures, every one with its three members.
        after = cluster.list_queues(stack.vhost, "name", "type", "members")
        for queue in after:
            if not queue["name"].startswith("rpc.reply-"):
                assert queue["type"] == "quorum" and len(queue["members"]) == 3, queue
    finally:
        engine.dispose()

