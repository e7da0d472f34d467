"""Throughput benchmark: complete dossier lives against the real processes, on RabbitMQ and PostgreSQL.

    .venv/bin/python -m bench.throughput                          # the target runs (about 15 minutes)
    .venv/bin/python -m bench.throughput --rates 20 --duration 15 --replicas 1    # a quick look

For each replica count (``--replicas 1,2``) it builds a fresh stack: the database ``motcua_bench``
(every service's schema dropped, migrated, the catalogue loaded as ``motcua catalog load`` does), a
RabbitMQ vhost of its own (created through the management API, deleted at the end), a fake SMTP
server and a fake SMS gateway (``tests/fakes``), and every service (``python -m apps.cli run
NAME``) that many times, each replica on a free port; with ``--layout one-process`` the five services
share one process per replica (``python -m apps.cli run catalog intake ...``, as ``motcua up
--one-process`` runs them), each still on its own port. Then for each rate (``--rates 50,100``) it
starts complete lives at that rate for ``--duration`` seconds, over HTTP as the officials do:

    receive at a desk (intake) -> pay in cash at the desk once fees has charged (fees) -> every
    agency of the workflow accepts, completes and transfers its step, the last one returns the result
    to the desk (routing) -> the desk returns the result to the citizen (intake)

with the citizen told by SMS and e-mail (notify) along the way. 80 % are certified copies at the 16
ward desks (one step, the ward itself), 20 % land transfers at the district desk (three steps
through the land registry and the tax office): ``--land-share``. Requests go round-robin to the
replicas, as a load balancer would. It reports:

- complete lives per second sustained (completions in the steady window: from ``--warmup`` seconds
  or the p90 duration of a life after the start, whichever is later but at most half-way, to the end
  of the load) and every life's duration;
- desk-call latency p50/p99 per call (client side; also intake's own histogram for the receipt);
- event lag, from the producer's outbox row to the consumer's processed-events row, per service;
- CPU (% of one core) and resident memory of every process, and the machine's load;
- whether every dossier arrived everywhere exactly once: one row per dossier in each service, one
  payment per dossier, every event delivered once to every service that consumes its type (the
  broker's bindings say which), every message to a citizen handed to the fake provider once,
  nothing dead-lettered;
- the raw baseline on the same broker and database (``bench/baseline.py``: persistent messages with
  confirms through one queue with kombu alone; INSERT+COMMIT transactions) and our figures as a
  ratio to it.

Results: ``--out`` (default bench/results/) ``throughput-<timestamp>.json`` and ``.png``, copied to
``throughput-latest.json`` / ``.png``. Progress on stderr. Every process it starts is stopped at the
end, also on error or Ctrl-C.
"""
from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import argparse  # noqa: E402
import http.client  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import defaultdict  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import quote  # noqa: E402

import psutil  # noqa: E402
import requests  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import stats  # noqa: E402
from motcua.runtime.pii import new_settings  # noqa: E402

SERVICES = ("catalog", "intake", "routing", "fees", "notify")
DEFAULT_DB = "postgresql+psycopg2://motcua@127.0.0.1:5432/motcua_bench"
MANAGEMENT = "http://127.0.0.1:15672/api"
DISTRICT = "000.00.20.H29"
WARDS = [f"000.{n:02d}.20.H29" for n in range(1, 18) if n != 2]
CERTIFIED_COPY = ("2.000815", 4000, {"pages": 2, "copies": 1})   # 2 pages x 2,000 VND, same day
LAND_TRANSFER = ("1.013831", 28000, {})                           # land registry -> tax -> land registry
FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ"]
GIVEN = ["Văn An", "Thị Bình", "Minh Châu", "Quốc Dũng", "Thị Hoa", "Văn Hùng", "Ngọc Lan", "Thanh Tâm"]


STOP = threading.Event()      # SIGTERM or Ctrl-C: the run winds down and stops what it started
STARTED: list = []            # every child process, to make sure none outlives the run


def say(*parts) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}]", *parts, file=sys.stderr, flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="2,50,100",
                        help="lives started per second, one phase each: a light load, then the targets (%(default)s)")
    parser.add_argument("--duration", type=float, default=60, help="seconds of load per phase (%(default)s)")
    parser.add_argument("--replicas", default="1,2", help="replicas of every service, one stack each (%(default)s)")
    parser.add_argument("--layout", choices=("per-service", "one-process"), default="per-service",
                        help="per-service: every service its own process (motcua up); one-process: the five "
                             "services in one process per replica (motcua up --one-process) (%(default)s)")
    parser.add_argument("--warmup", type=float, default=10,
                        help="seconds at the start of a phase left out of the sustained rate, at least (%(default)s)")
    parser.add_argument("--land-share", type=float, default=0.2, help="share of three-agency land transfers")
    parser.add_argument("--max-in-flight", type=int, default=150,
                        help="lives running at once, at most: past it, new lives start late (counted) instead of "
                             "piling up (%(default)s)")
    parser.add_argument("--drain", type=float, default=240, help="seconds to let running lives finish")
    parser.add_argument("--life-timeout", type=float, default=180, help="a life waiting longer has failed")
    parser.add_argument("--baseline-seconds", type=float, default=10, help="0: no baseline")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB),
                        help="its own database, created if missing; every service schema in it is dropped")
    parser.add_argument("--amqp-host", default="127.0.0.1:5672")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the services (e.g. OUTBOX_POLL_SECONDS=0.2); repeatable")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--label", default="", help="a word for the result file names")
    parser.add_argument("--keep-logs", action="store_true", help="keep the services' logs (their folder is printed)")
    parser.add_argument("--seed", type=int, default=2245)
    args = parser.parse_args(argv)
    args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    args.replicas = [int(r) for r in args.replicas.split(",") if r.strip()]
    return args


# --- HTTP: a small keep-alive client (http.client under eventlet) -------------------------------

class Http:
    """Keep-alive connections per host, for thousands of green threads: a pool of idle ones."""

    def __init__(self, timeout: float = 30):
        self.idle: dict[tuple, list] = defaultdict(list)
        self.timeout = timeout

    def request(self, method: str, base: str, path: str, headers: dict, body=None) -> tuple[int, bytes]:
        host, port = base.removeprefix("http://").split(":")
        key = (host, int(port))
        data = json.dumps(body).encode() if body is not None else None
        send_headers = {**headers, "Connection": "keep-alive"}
        if data is not None:
            send_headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            connection = self.idle[key].pop() if self.idle[key] else http.client.HTTPConnection(
                host, int(port), timeout=self.timeout)
            try:
                connection.request(method, path, body=data, headers=send_headers)
                response = connection.getresponse()
                payload = response.read()
            except (http.client.HTTPException, ConnectionError, BrokenPipeError) as exc:
                connection.close()
                if attempt == 2:
                    raise ConnectionError(f"{method} {base}{path}: {exc!r}") from exc
                continue   # a kept-alive connection the server had closed: once more on a new one
            if response.will_close:
                connection.close()
            else:
                self.idle[key].append(connection)
            return response.status, payload
        raise AssertionError("unreachable")


def official(name: str, unit: str) -> dict:
    return {"X-Official": quote(name), "X-Unit": unit}


# --- the stack ------------------------------------------------------------------------------

class Management:
    def __init__(self):
        self.session = requests.Session()
        self.session.auth = ("guest", "guest")

    def create_vhost(self, name: str) -> None:
        self.session.put(f"{MANAGEMENT}/vhosts/{name}", timeout=10).raise_for_status()
        self.session.put(f"{MANAGEMENT}/permissions/{name}/guest", timeout=10,
                         json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()

    def delete_vhost(self, name: str) -> None:
        self.session.delete(f"{MANAGEMENT}/vhosts/{name}", timeout=30)

    def queues(self, vhost: str) -> list[dict]:
        answer = self.session.get(f"{MANAGEMENT}/queues/{quote(vhost, safe='')}", timeout=10,
                                  params={"columns": "name,messages,consumers"})
        answer.raise_for_status()
        return answer.json()

    def consumers_by_type(self, vhost: str) -> dict[str, set]:
        """{event type: services consuming it}, from the bindings of the events exchange."""
        answer = self.session.get(f"{MANAGEMENT}/exchanges/{quote(vhost, safe='')}/motcua.events/bindings/source",
                                  timeout=10)
        answer.raise_for_status()
        out: dict[str, set] = defaultdict(set)
        for binding in answer.json():
            if binding["destination_type"] == "queue" and "." in binding["destination"]:
                out[binding["routing_key"]].add(binding["destination"].split(".")[0])
        return dict(out)

    def vhost_stats(self, vhost: str) -> dict:
        answer = self.session.get(f"{MANAGEMENT}/vhosts/{quote(vhost, safe='')}", timeout=10)
        answer.raise_for_status()
        details = answer.json().get("message_stats", {})
        return {k: details.get(k, 0) for k in ("publish", "deliver_get", "ack", "redeliver")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def libpq_url(url: str) -> str:
    """What psycopg2 takes (several hosts of a failover URL too): ``motcua.runtime.db.libpq_dsn``."""
    from motcua.runtime.db import libpq_dsn
    return libpq_dsn(url)


def database_name(url: str) -> str:
    from sqlalchemy.engine import make_url
    return make_url(url).database


def ensure_database(url: str) -> None:
    import psycopg2
    from sqlalchemy.engine import make_url
    dbname = database_name(url)
    admin = libpq_url(make_url(url).set(database="postgres"))
    connection = psycopg2.connect(admin)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
        if cursor.fetchone() is None:
            say(f"creating database {dbname}")
            cursor.execute(f'CREATE DATABASE "{dbname}"')
    connection.close()


def fresh_schemas(url: str, env: dict) -> None:
    from sqlalchemy import text

    from motcua.runtime.db import make_engine
    from motcua.runtime.migrations import upgrade
    engine = make_engine(url, pool_size=1, application_name="bench-setup")
    with engine.begin() as connection:
        for name in SERVICES:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    engine.dispose()
    for name in SERVICES:
        upgrade(ROOT / "services" / name / "migrations", url)
    result = subprocess.run([sys.executable, "-m", "apps.cli", "catalog", "load"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    if result.returncode:
        raise RuntimeError(f"motcua catalog load failed: {result.stderr}")
    say(result.stdout.strip())


class Process:
    """One child process, its log in the run folder."""

    def __init__(self, label: str, argv: list[str], env: dict, log_path: Path, kind: str):
        self.label, self.kind, self.log_path = label, kind, log_path
        self.log = open(log_path, "ab")
        self.popen = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        self.ps = psutil.Process(self.popen.pid)
        STARTED.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, timeout: float = 20) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        self.log.close()


class Stack:
    def __init__(self, args, replicas: int, run_dir: Path):
        self.args, self.replicas, self.run_dir = args, replicas, run_dir
        self.vhost = f"motcua-bench-{uuid.uuid4().hex[:8]}"
        self.amqp_uri = f"amqp://guest:guest@{args.amqp_host}/{self.vhost}"
        self.management = Management()
        self.processes: list[Process] = []
        self.urls: dict[str, list[str]] = defaultdict(list)
        self.fakes: dict[str, Process] = {}

    def env(self) -> dict:
        # The personal-data keys: the environment's, else one set for the run (every process the same).
        self.pii = getattr(self, "pii", None) or new_settings("bench")
        env = {**self.pii, **os.environ, "DATABASE_URL": self.args.database_url, "AMQP_URI": self.amqp_uri,
               "PYTHONPATH": str(ROOT), "LOG_FORMAT": "json", "QUIET_HOURS": "00:00-00:00",
               "AUTH_MODE": "dev-headers"}     # the benchmark plays the officials (README, "Sign-in")
        env.pop("CLOCK_FILE", None)
        for item in self.args.env:
            name, _, value = item.partition("=")
            env[name] = value
        return env

    def connection_budget(self) -> dict:
        """Each service process pools up to 20 PostgreSQL connections (10 + 10 overflow): with
        replicas, and other users of the same server, that passes max_connections (100 by default)
        and the services fail with "remaining connection slots are reserved". Share what is free."""
        import psycopg2
        connection = psycopg2.connect(libpq_url(self.args.database_url))
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('max_connections')::int, "
                           "current_setting('superuser_reserved_connections')::int, "
                           "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')")
            max_connections, reserved, used = cursor.fetchone()
        connection.close()
        processes = self.replicas * len(SERVICES)   # an engine per service, whatever the layout
        free = max_connections - reserved - used - 25          # room for other users and for this bench
        per_process = max(free // processes - 1, 4)          # and one each for the relay's LISTEN
        budget = {"max_connections": max_connections, "in_use_at_start": used, "per_process": per_process}
        if per_process < 20:
            budget["DB_POOL_SIZE"] = max(3, per_process * 2 // 3)
            budget["DB_MAX_OVERFLOW"] = max(1, per_process - budget["DB_POOL_SIZE"])
        return budget

    def start(self) -> None:
        self.management.create_vhost(self.vhost)
        env = self.env()
        self.db_budget = self.connection_budget()
        for name in ("DB_POOL_SIZE", "DB_MAX_OVERFLOW"):
            if name in self.db_budget and name not in env:
                env[name] = str(self.db_budget[name])
        say(f"PostgreSQL connections: {self.db_budget}")
        fresh_schemas(self.args.database_url, env)
        folder = self.run_dir / f"replicas-{self.replicas}"
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.smtp_port, self.sms_port = free_port(), free_port()
        self.mail_file, self.sms_file = folder / "mail.jsonl", folder / "sms.jsonl"
        for name, module, port, out in (("smtp", "tests.fakes.smtp_server", self.smtp_port, self.mail_file),
                                        ("sms", "tests.fakes.http_gateway", self.sms_port, self.sms_file)):
            process = Process(f"fake-{name}", [sys.executable, "-m", module, "--port", str(port), "--out", str(out)],
                              env, folder / f"fake-{name}.log", kind="fake")
            self.fakes[name] = process
            self.processes.append(process)
        officials = folder / "officials.yml"
        officials.write_text("units: {}\n")
        env.update({"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(self.smtp_port),
                    "SMS_GATEWAY_URL": f"http://127.0.0.1:{self.sms_port}/sms", "OFFICIALS_FILE": str(officials),
                    # The load is many desks' worth from a few named officials: no per-official write rate.
                    "HTTP_WRITE_RATE_PER_MINUTE": "1000000000", "HTTP_WRITE_BURST": "1000000"})
        if self.args.layout == "one-process":
            for replica in range(self.replicas):
                ports = {name: free_port() for name in SERVICES}
                process = Process(f"services#{replica + 1}", [sys.executable, "-m", "apps.cli", "run", *SERVICES],
                                  {**env, **{f"{name.upper()}_HTTP_ADDRESS": f"127.0.0.1:{port}"
                                             for name, port in ports.items()}},
                                  folder / f"services-{replica + 1}.log", kind="service")
                self.processes.append(process)
                process.urls = [f"http://127.0.0.1:{ports[name]}" for name in SERVICES]
                for name in SERVICES:
                    self.urls[name].append(f"http://127.0.0.1:{ports[name]}")
        else:
            for name in SERVICES:
                for replica in range(self.replicas):
                    port = free_port()
                    process = Process(f"{name}#{replica + 1}", [sys.executable, "-m", "apps.cli", "run", name],
                                      {**env, f"{name.upper()}_HTTP_ADDRESS": f"127.0.0.1:{port}"},
                                      folder / f"{name}-{replica + 1}.log", kind="service")
                    self.processes.append(process)
                    self.urls[name].append(f"http://127.0.0.1:{port}")
                    process.urls = [f"http://127.0.0.1:{port}"]
        deadline = time.monotonic() + 90
        for process in self.processes:
            if process.kind != "service":
                continue
            for url in process.urls:
                while True:
                    if process.popen.poll() is not None:
                        raise RuntimeError(f"{process.label} exited with {process.popen.returncode}; "
                                           f"see {process.log_path}")
                    try:
                        if requests.get(url + "/health", timeout=2).status_code == 200:
                            break
                    except requests.RequestException:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{process.label} not healthy in time; see {process.log_path}")
                    check_stop()
                    time.sleep(0.3)
        say(f"stack up: {self.replicas} replica(s) of {', '.join(SERVICES)} ({self.args.layout}) on vhost {self.vhost}")

    def stop(self) -> None:
        for process in reversed(self.processes):
            try:
                process.stop()
            except Exception as exc:   # keep stopping the others
                say(f"stopping {process.label}: {exc!r}")
        self.management.delete_vhost(self.vhost)


# --- the sampler: CPU and memory of every process -----------------------------------------------

class Sampler:
    """Every second: CPU seconds and RSS of each process of the stack, of this load generator, of
    the PostgreSQL backends serving the bench database, of PostgreSQL's shared processes, and of the
    RabbitMQ node; plus the machine's CPU."""

    def __init__(self, stack: Stack, dbname: str):
        self.stack, self.dbname = stack, dbname
        self.samples: list[dict] = []
        self.running = False

    def _groups(self) -> dict[str, list[psutil.Process]]:
        groups = {p.label: [p.ps] for p in self.stack.processes}
        groups["load generator"] = [psutil.Process()]
        backends, pg_shared, rabbit = [], [], []
        for proc in psutil.process_iter(["name", "cmdline"]):
            cmd = " ".join(proc.info["cmdline"] or [])
            name = proc.info["name"] or ""
            if name.startswith("postgres") or cmd.startswith("postgres:"):
                if f" {self.dbname} " in cmd:
                    backends.append(proc)
                elif cmd.startswith("postgres:") and "motcua" not in cmd and "postgres postgres" not in cmd \
                        and not re.search(r"postgres: \w+ \w+ ", cmd):
                    pg_shared.append(proc)
                elif "/postgres" in cmd and "-D" in cmd:
                    pg_shared.append(proc)
            elif name == "beam.smp":
                rabbit.append(proc)
        groups["postgres (bench backends)"] = backends
        groups["postgres (shared processes)"] = pg_shared
        groups["rabbitmq (whole node)"] = rabbit
        return groups

    def sample(self) -> dict:
        out = {"t": time.time(), "groups": {}}
        for label, procs in self._groups().items():
            cpu = rss = 0.0
            pids = []
            for proc in procs:
                try:
                    times = proc.cpu_times()
                    cpu += times.user + times.system
                    rss += proc.memory_info().rss
                    pids.append(proc.pid)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            out["groups"][label] = {"cpu": cpu, "rss": rss, "pids": pids}
        machine = psutil.cpu_times()
        out["machine_busy"] = sum(machine) - machine.idle - getattr(machine, "iowait", 0)
        out["load"] = os.getloadavg()
        return out

    def start(self) -> None:
        self.running = True
        eventlet.spawn(self._run)

    def _run(self) -> None:
        while self.running:
            try:
                self.samples.append(self.sample())
            except Exception as exc:  # a process gone between listing and reading
                say(f"sampler: {exc!r}")
            eventlet.sleep(1.0)

    def stop(self) -> None:
        self.running = False

    def window(self, start: float, end: float) -> dict:
        """CPU % (of one core) and RSS per process group between two instants."""
        inside = [s for s in self.samples if start <= s["t"] <= end]
        if len(inside) < 2:
            return {}
        first, last = inside[0], inside[-1]
        wall = last["t"] - first["t"]
        out = {}
        for label, now in last["groups"].items():
            before = first["groups"].get(label)
            if before is None:
                continue
            # CPU only of pids present at both ends (a backend that came or went is left out).
            if set(before["pids"]) != set(now["pids"]):
                delta = self._pid_delta(inside, label)
            else:
                delta = now["cpu"] - before["cpu"]
            rss = [s["groups"][label]["rss"] for s in inside if label in s["groups"]]
            out[label] = {"cpu_percent": round(100 * delta / wall, 1), "rss_mb_max": round(max(rss) / 2**20, 1),
                          "rss_mb_end": round(rss[-1] / 2**20, 1), "processes": len(now["pids"])}
        busy = last["machine_busy"] - first["machine_busy"]
        out["_machine"] = {"cpu_percent": round(100 * busy / wall, 1),
                           "cores": psutil.cpu_count(), "load_avg_end": [round(x, 2) for x in last["load"]]}
        return out

    @staticmethod
    def _pid_delta(inside: list[dict], label: str) -> float:
        # Sum of per-sample deltas over consecutive samples with the same pids: an approximation.
        total = 0.0
        for a, b in zip(inside, inside[1:]):
            ga, gb = a["groups"].get(label), b["groups"].get(label)
            if ga and gb and set(ga["pids"]) == set(gb["pids"]):
                total += max(gb["cpu"] - ga["cpu"], 0.0)
        return total


# --- the load: complete dossier lives -------------------------------------------------------------

class Load:
    def __init__(self, stack: Stack, args, rng: random.Random):
        self.stack, self.args, self.rng = stack, args, rng
        self.http = Http()
        self.round_robin = {name: itertools.cycle(urls) for name, urls in stack.urls.items()}
        self.calls: list[tuple] = []          # (kind, t_end, seconds, status)
        self.lives: list[dict] = []
        self.errors: list[str] = []
        self.documents: dict[str, list] = {}
        self.serial = 0

    def url(self, service: str) -> str:
        return next(self.round_robin[service])

    def call(self, kind: str, service: str, method: str, path: str, headers: dict, body=None) -> tuple[int, dict]:
        started = time.perf_counter()
        status, payload = self.http.request(method, self.url(service), path, headers, body)
        elapsed = time.perf_counter() - started
        self.calls.append((kind, time.time(), elapsed, status))
        try:
            data = json.loads(payload) if payload else {}
        except ValueError:
            data = {"raw": payload[:200].decode("utf-8", "replace")}
        return status, data

    def load_documents(self) -> None:
        for code, _, _ in (CERTIFIED_COPY, LAND_TRANSFER):
            status, procedure = self.call("catalog", "catalog", "GET", f"/api/v1/procedures/{code}", {})
            if status != 200:
                raise RuntimeError(f"catalog has no procedure {code}: {status} {procedure}")
            self.documents[code] = [{"name": d["name"], "form": d["form"], "count": d["count"]}
                                    for d in procedure["documents"]]

    def until(self, kind, service, method, path, headers, body, ok: int, retry_on: tuple, deadline: float,
              life: dict) -> dict:
        """Repeat a call while it answers ``retry_on`` (not there yet), with a growing pause."""
        pause = 0.1
        while True:
            status, data = self.call(kind, service, method, path, headers, body)
            if status == ok:
                return data
            if status not in retry_on:
                raise RuntimeError(f"{kind} {path}: {status} {data}")
            life["polls"] += 1
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} {path}: still {status} after {self.args.life_timeout:.0f} s: {data}")
            eventlet.sleep(pause)
            pause = min(pause * 1.5, 2.0)     # an official looks again, not a busy loop

    def life(self, n: int) -> None:
        rng = self.rng
        land = rng.random() < self.args.land_share
        procedure, amount, quantities = LAND_TRANSFER if land else CERTIFIED_COPY
        unit = DISTRICT if land else rng.choice(WARDS)
        desk = official(f"Cán bộ một cửa {unit[4:6]}", unit)
        name = f"{rng.choice(FAMILY)} {rng.choice(GIVEN)}"
        applicant = {"name": name, "id_number": f"0792{n:08d}", "address": f"{n % 300 + 1} Quang Trung, Gò Vấp",
                     "phone": f"09{n % 100000000:08d}", "email": f"citizen{n}@example.vn"}
        life = {"n": n, "kind": "land" if land else "copy", "unit": unit, "start": time.time(), "end": None,
                "code": None, "polls": 0, "error": None}
        self.lives.append(life)
        deadline = time.monotonic() + self.args.life_timeout
        try:
            status, dossier = self.call("receive", "intake", "POST", "/api/v1/dossiers", desk, {
                "procedure_code": procedure, "applicant": applicant, "documents": self.documents[procedure],
                "quantities": quantities, "notifications": {"channels": ["sms", "email"], "optional": True}})
            if status != 201:
                raise RuntimeError(f"receive: {status} {dossier}")
            code = life["code"] = dossier["code"]
            self.until("pay", "fees", "POST", f"/api/v1/dossiers/{code}/payments", desk,
                       {"method": "cash", "amount": amount, "reference": f"bench-{code}"}, 200, (404,),
                       deadline, life)
            view = self.until("route_view", "routing", "GET", f"/api/v1/dossiers/{code}", desk, None, 200, (404,),
                              deadline, life)
            steps = sorted(view["steps"], key=lambda s: (s["stage"], s.get("position", 0)))
            for i, step in enumerate(steps):
                agency = official(f"Chuyên viên {step['agency'][4:6]}", step["agency"])
                base = f"/api/v1/dossiers/{code}"
                for kind, path, body in (("step_accept", f"{base}/steps/{step['id']}/acceptance", None),
                                         ("step_complete", f"{base}/steps/{step['id']}/completion",
                                          {"result": "done", "note": "Đã xử lý"})):
                    status, data = self.call(kind, "routing", "POST", path, agency, body)
                    if status != 200:
                        raise RuntimeError(f"{kind}: {status} {data}")
                last = i == len(steps) - 1
                kind, path = ("return_to_desk", f"{base}/return-to-desk") if last else ("transfer", f"{base}/transfer")
                status, data = self.call(kind, "routing", "POST", path, agency, None)
                if status != 200:
                    raise RuntimeError(f"{kind}: {status} {data}")
            returned = self.until("return", "intake", "POST", f"/api/v1/dossiers/{code}/return", desk,
                                  {"collected_by": name}, 200, (409,), deadline, life)
            if returned.get("status") is None:
                raise RuntimeError(f"return: unexpected answer {returned}")
            life["end"] = time.time()
        except Exception as exc:
            life["error"] = f"{type(exc).__name__}: {exc}"[:300]
            self.errors.append(life["error"])

    def run_phase(self, rate: float, duration: float) -> dict:
        """Start ``rate`` lives a second for ``duration`` seconds; wait for them to finish."""
        pool = eventlet.GreenPool(self.args.max_in_flight)
        total = int(rate * duration)
        first_life = len(self.lives)
        first_call = len(self.calls)
        start = time.time()
        t0 = time.monotonic()
        late = []
        last_report = t0
        not_started = 0
        for i in range(total):
            due = t0 + i / rate
            wait = due - time.monotonic()
            if wait > 0:
                eventlet.sleep(wait)
            # At most --max-in-flight lives at once: past it, wait for one to end (the start is late).
            while not pool.free() and time.monotonic() < t0 + duration and not STOP.is_set():
                eventlet.sleep(0.01)
            if time.monotonic() >= t0 + duration or STOP.is_set():
                not_started = total - i        # the load ends on time: what could not start is counted
                break
            lateness = time.monotonic() - due
            if lateness > 0.1:
                late.append(lateness)
            self.serial += 1
            pool.spawn_n(self.life, self.serial)
            if time.monotonic() - last_report >= 5:
                last_report = time.monotonic()
                self.progress(rate, start, first_life, first_call, late=len(late))
        load_end = time.time()
        if not_started:
            say(f"{not_started} lives of the {total} planned could not start in {duration:g} s "
                f"({self.args.max_in_flight} running at once)")
        drain_until = time.monotonic() + self.args.drain
        while pool.running() and time.monotonic() < drain_until and not STOP.is_set():
            eventlet.sleep(1.0)
            if time.monotonic() - last_report >= 5:
                last_report = time.monotonic()
                self.progress(rate, start, first_life, first_call, draining=True)
        unfinished = pool.running()
        if unfinished:
            say(f"{unfinished} lives still running after the drain: counted as not completed")
        return {"start": start, "load_end": load_end, "end": time.time(), "lives": self.lives[first_life:],
                "calls": self.calls[first_call:], "late_starts": late, "unfinished": unfinished,
                "not_started": not_started, "planned": total}

    def progress(self, rate, start, first_life, first_call, draining=False, late=0) -> None:
        lives = self.lives[first_life:]
        now = time.time()
        done = [l for l in lives if l["end"]]
        recent = [l for l in done if l["end"] >= now - 5]
        receipts = [c[2] for c in self.calls[first_call:] if c[0] == "receive" and c[1] >= now - 5]
        p99 = stats.percentile(receipts, 99)
        say(f"{'draining ' if draining else ''}t={now - start:5.0f}s target {rate:g}/s: started {len(lives)}, "
            f"completed {len(done)} ({len(recent) / 5:.1f}/s last 5 s), running {len(lives) - len(done)}, "
            f"failed {sum(1 for l in lives if l['error'])}, receive p99 (5 s) "
            f"{(p99 or 0) * 1000:.0f} ms" + (f", started late {late}" if late else ""))


# --- accounting ---------------------------------------------------------------------------------

def wait_quiet(stack: Stack, engine, timeout: float = 120) -> dict:
    """Until every outbox is relayed, every queue of the vhost empty and notify's queue sent."""
    from sqlalchemy import text
    deadline = time.monotonic() + timeout
    state = {}
    while time.monotonic() < deadline and not STOP.is_set():
        with engine.connect() as connection:
            pending = {name: connection.execute(text(
                f"SELECT count(*) FROM {name}.outbox WHERE published_at IS NULL")).scalar_one()
                for name in SERVICES}
            notify_waiting = connection.execute(text(
                "SELECT count(*) FROM notify.messages WHERE state IN ('queued', 'sending')")).scalar_one()
        queued = {q["name"]: q["messages"] for q in stack.management.queues(stack.vhost)
                  if q.get("messages") and q["name"] != "motcua.dead-letter"
                  and not q["name"].startswith("rpc.reply-")}     # a late answer to a proxy that gave up
        state = {"outbox_pending": pending, "queues": queued, "notify_waiting": notify_waiting}
        if not any(pending.values()) and not queued and not notify_waiting:
            return {"quiet": True, **state}
        time.sleep(1.0)
    return {"quiet": False, **state}


def account(stack: Stack, engine, phase: dict) -> dict:
    """Exactly once, everywhere, for the dossiers of one phase; and the event lag per service."""
    from sqlalchemy import bindparam, text
    codes = [l["code"] for l in phase["lives"] if l["code"]]
    consumers = stack.management.consumers_by_type(stack.vhost)
    with engine.connect() as connection:
        def rows(sql):
            return [r[0] for r in connection.execute(text(sql).bindparams(bindparam("codes", expanding=True)),
                                                      {"codes": codes})]
        found = {
            "intake.dossiers": rows("SELECT code FROM intake.dossiers WHERE code IN :codes"),
            "routing.workflows": rows("SELECT code FROM routing.workflows WHERE code IN :codes"),
            "fees.accounts": rows("SELECT code FROM fees.accounts WHERE code IN :codes"),
            "fees.payments": rows("SELECT code FROM fees.payments WHERE code IN :codes"),
            "notify.dossiers": rows("SELECT code FROM notify.dossiers WHERE code IN :codes"),
        }
        producers = [name for name in SERVICES if name != "catalog"]
        outbox = " UNION ALL ".join(
            f"SELECT id, type, created_at, envelope->'payload'->>'code' AS code FROM {name}.outbox" for name in producers)
        events = connection.execute(text(f"SELECT id, type FROM ({outbox}) o WHERE code IN :codes")
                                    .bindparams(bindparam("codes", expanding=True)), {"codes": codes}).all()
        event_ids = [e.id for e in events]
        processed = {}
        for name in producers:
            processed[name] = [r[0] for r in connection.execute(
                text(f"SELECT event_id FROM {name}.processed_events WHERE event_id IN :ids")
                .bindparams(bindparam("ids", expanding=True)), {"ids": event_ids})] if event_ids else []
        lag_sql = " UNION ALL ".join(
            f"SELECT '{name}' AS consumer, event_id, processed_at FROM {name}.processed_events" for name in producers)
        lags = connection.execute(text(
            f"SELECT p.consumer, o.type, extract(epoch FROM p.processed_at - o.created_at) AS lag "
            f"FROM ({lag_sql}) p JOIN ({outbox}) o ON o.id = p.event_id WHERE o.code IN :codes")
            .bindparams(bindparam("codes", expanding=True)), {"codes": codes}).all()
        messages = connection.execute(text(
            "SELECT idempotency_key, channel, state FROM notify.messages WHERE code IN :codes")
            .bindparams(bindparam("codes", expanding=True)), {"codes": codes}).all()
    deliveries = stats.expected_deliveries([(e.id, e.type) for e in events], consumers)
    verdict = stats.exactly_once_report(codes, found, deliveries, processed)
    # Messages to citizens: each sent once to the provider (by its idempotency key).
    mail_keys, sms_keys = [], []
    if stack.mail_file.exists():
        mail_keys = [json.loads(line).get("idempotency_key") for line in stack.mail_file.read_text().splitlines()]
    if stack.sms_file.exists():
        sms_keys = [json.loads(line)["headers"].get("Idempotency-Key") for line in stack.sms_file.read_text().splitlines()]
    sent = {ch: {m.idempotency_key for m in messages if m.channel == ch and m.state in ("sent", "delivered")}
            for ch in ("email", "sms")}
    verdict["messages"] = {
        "email": stats.tally(sent["email"], [k for k in mail_keys if k in sent["email"]]).as_dict(),
        "sms": stats.tally(sent["sms"], [k for k in sms_keys if k in sent["sms"]]).as_dict(),
        "not_sent": sum(1 for m in messages if m.state not in ("sent", "delivered")),
        "per_dossier": round(len(messages) / len(codes), 2) if codes else None,
    }
    dead = next((q.get("messages", 0) for q in stack.management.queues(stack.vhost)
                 if q["name"] == "motcua.dead-letter"), 0)
    verdict["dead_lettered"] = dead
    verdict["exactly_once"] = bool(verdict["exactly_once"] and verdict["messages"]["email"]["exactly_once"]
                                   and verdict["messages"]["sms"]["exactly_once"] and not dead
                                   and not verdict["messages"]["not_sent"])
    by_consumer: dict[str, list] = defaultdict(list)
    by_type: dict[tuple, list] = defaultdict(list)
    for consumer, event_type, lag in lags:
        by_consumer[consumer].append(float(lag))
        by_type[(consumer, event_type)].append(float(lag))
    lag = {c: stats.summary(v, scale=1000, digits=1) for c, v in sorted(by_consumer.items())}
    lag_received = {c: stats.summary(by_type[(c, "dossier.received")], scale=1000, digits=1)
                    for c in sorted(by_consumer) if by_type.get((c, "dossier.received"))}
    lag_by_type = {f"{c} <- {t}": stats.summary(v, scale=1000, digits=1) for (c, t), v in sorted(by_type.items())}
    return {"exactly_once": verdict, "event_lag_ms": lag, "received_lag_ms": lag_received,
            "event_lag_by_type_ms": lag_by_type, "events": len(events),
            "events_per_life": round(len(events) / len(codes), 2) if codes else None,
            "deliveries_per_life": round(sum(len(v) for v in deliveries.values()) / len(codes), 2) if codes else None}


def scrape_receive_histogram(stack: Stack) -> dict:
    """intake's own histogram of http_receive, summed over replicas: {le: count}."""
    buckets: dict[float, float] = defaultdict(float)
    pattern = re.compile(r'motcua_entrypoint_duration_seconds_bucket\{[^}]*entrypoint="http_receive"[^}]*'
                         r'le="([^"]+)"[^}]*\} ([0-9.e+]+)')
    for url in stack.urls["intake"]:
        text_ = requests.get(url + "/metrics", timeout=10).text
        for le, count in pattern.findall(text_):
            buckets[float(le)] += float(count)
    return dict(buckets)


def duplicates_metric(stack: Stack) -> float:
    total = 0.0
    for name in SERVICES:
        for url in stack.urls[name]:
            for line in requests.get(url + "/metrics", timeout=10).text.splitlines():
                if line.startswith("motcua_events_duplicate_total{"):
                    total += float(line.rsplit(" ", 1)[1])
    return total


def db_commits(engine, dbname: str) -> int:
    from sqlalchemy import text
    with engine.connect() as connection:
        return connection.execute(text("SELECT xact_commit FROM pg_stat_database WHERE datname = :d"),
                                  {"d": dbname}).scalar_one()


def cpu_per_life(window: dict, lives_per_s: float) -> dict:
    """Milliseconds of CPU per complete life in the steady window, per process group; ``_stack``
    sums every process the benchmark started and the database and broker (everything a life costs),
    ``_machine`` is the whole machine (other users included)."""
    if not window or not lives_per_s:
        return {}
    per_life = {label: round(v["cpu_percent"] * 10 / lives_per_s, 1) for label, v in window.items()
                if not label.startswith("_")}
    per_life["_stack"] = round(sum(per_life.values()), 1)
    if "_machine" in window:
        per_life["_machine"] = round(window["_machine"]["cpu_percent"] * 10 / lives_per_s, 1)
    return per_life


def phase_figures(args, rate: float, phase: dict, sampler: Sampler, accounting: dict, receive_hist: dict,
                  commits: int, broker: dict) -> dict:
    lives = phase["lives"]
    done = [l for l in lives if l["end"] and not l["error"]]
    start, load_end = phase["start"], phase["load_end"]
    warm = stats.steady_from(args.warmup, [l["end"] - l["start"] for l in done], load_end - start)
    sustained = stats.rate_in_window([l["end"] for l in done], start + warm, load_end)
    last_end = max((l["end"] for l in done), default=load_end)
    calls = defaultdict(list)
    for kind, _, seconds, status in phase["calls"]:
        if status < 500:
            calls[kind].append(seconds)
    window = sampler.window(start + warm, load_end)
    seconds = int(phase["end"] - start) + 1
    desk_kinds = ("receive", "pay", "step_accept", "step_complete", "transfer", "return_to_desk", "return")
    return {
        "target_lives_per_s": rate,
        "load_started_at": start,
        "planned": phase["planned"], "not_started": phase["not_started"],
        "started": len(lives), "completed": len(done), "failed": sum(1 for l in lives if l["error"]),
        "unfinished": phase["unfinished"],
        "errors": sorted({l["error"] for l in lives if l["error"]})[:10],
        "sustained_lives_per_s": round(sustained, 2),
        "overall_lives_per_s": round(len(done) / (last_end - start), 2),
        "window_s": [round(warm, 1), round(load_end - start, 1)],
        "life_seconds": stats.summary([l["end"] - l["start"] for l in done], digits=3),
        "late_starts": {"count": len(phase["late_starts"]), **stats.summary(phase["late_starts"], digits=3)},
        "polls_per_life": round(sum(l["polls"] for l in lives) / len(lives), 2) if lives else None,
        "latency_ms": {k: stats.summary(v, scale=1000, digits=1) for k, v in sorted(calls.items())},
        "desk_calls_latency_ms": stats.summary([s for k in desk_kinds for s in calls.get(k, [])], scale=1000,
                                               digits=1),
        "receive_server_side_ms": {
            "p50": round((stats.histogram_quantile(0.5, receive_hist) or 0) * 1000, 1),
            "p99": round((stats.histogram_quantile(0.99, receive_hist) or 0) * 1000, 1),
            "note": "intake's motcua_entrypoint_duration_seconds (buckets ..50, 100, 250 ms), whole run so far"},
        "processes": window,
        "cpu_ms_per_life": cpu_per_life(window, sustained),
        "db_commits_per_s": round(commits / (phase["end"] - start), 1),
        "broker": broker,
        "timeline": {
            "completed_per_s": stats.per_second([l["end"] for l in done], start, seconds),
            "started_per_s": stats.per_second([l["start"] for l in lives], start, seconds),
            "receive_p99_ms": [
                round((stats.percentile([c[2] for c in phase["calls"] if c[0] == "receive"
                                         and start + i <= c[1] < start + i + 1], 99) or 0) * 1000, 1)
                for i in range(seconds)],
        },
        **accounting,
    }


# --- baseline -------------------------------------------------------------------------------------

def baseline(args, vhost_uri: str) -> dict:
    out = {}
    for what, extra in (("amqp", ["--uri", vhost_uri]), ("pg", ["--url", libpq_url(args.database_url)])):
        result = subprocess.run([sys.executable, "-m", "bench.baseline", what, *extra, "--seconds",
                                 str(args.baseline_seconds)], cwd=ROOT, capture_output=True, text=True,
                                timeout=args.baseline_seconds + 120, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if result.returncode:
            raise RuntimeError(f"baseline {what} failed: {result.stderr[-2000:]}")
        out[what] = json.loads(result.stdout.strip().splitlines()[-1])
        say(f"baseline {what}: {out[what]}")
    return out


# --- report ---------------------------------------------------------------------------------------

def machine() -> dict:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model, "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}


def print_report(result: dict) -> None:
    out = sys.stdout
    m = result["machine"]
    print(f"\nMachine: {m['nproc']} cores ({m['cpu_model']}), {m['ram_gb']} GB RAM; load average at start "
          f"{m['load_avg_at_start']}", file=out)
    base = result.get("baseline") or {}
    if base:
        print(f"Baseline: kombu persistent+confirms through one queue {base['amqp']['consumed_per_s']:.0f} msg/s; "
              f"PostgreSQL INSERT+COMMIT ({base['pg']['clients']} clients) {base['pg']['tx_per_s']:.0f} tx/s", file=out)
    for run in result["runs"]:
        print(f"\n== {run['replicas']} replica(s) of each service, {result['args'].get('layout', 'per-service')} "
              f"layout ==", file=out)
        for ph in run["phases"]:
            eo = ph["exactly_once"]
            print(f"-- target {ph['target_lives_per_s']:g} lives/s for {result['args']['duration']:g} s: "
                  f"sustained {ph['sustained_lives_per_s']:.1f} lives/s (overall {ph['overall_lives_per_s']:.1f}); "
                  f"{ph['completed']}/{ph['started']} completed, {ph['failed']} failed; life p50 "
                  f"{ph['life_seconds']['p50']} s p99 {ph['life_seconds']['p99']} s", file=out)
            rl = ph["latency_ms"].get("receive", {})
            dl = ph["desk_calls_latency_ms"]
            print(f"   desk receive p50 {rl.get('p50')} ms p99 {rl.get('p99')} ms (server side p99 "
                  f"{ph['receive_server_side_ms']['p99']} ms); all desk calls p50 {dl['p50']} ms p99 {dl['p99']} ms",
                  file=out)
            print("   calls: " + "; ".join(f"{k} {v['p50']}/{v['p99']} ms" for k, v in ph["latency_ms"].items()),
                  file=out)
            print("   event lag (outbox row -> consumer), p50/p99 ms: " + "; ".join(
                f"{c} {v['p50']}/{v['p99']}" for c, v in ph["event_lag_ms"].items()) + "   dossier.received: " +
                "; ".join(f"{c} {v['p50']}/{v['p99']}" for c, v in ph["received_lag_ms"].items()), file=out)
            procs = ph["processes"]
            print("   CPU % of a core / RSS MB: " + "; ".join(
                f"{k} {v['cpu_percent']}/{v['rss_mb_max']}" for k, v in procs.items() if not k.startswith("_")),
                file=out)
            per_life = ph.get("cpu_ms_per_life") or {}
            if per_life:
                print(f"   CPU per complete life: {per_life['_stack']} ms for the stack (machine: "
                      f"{per_life.get('_machine')} ms): " + "; ".join(
                          f"{k} {v}" for k, v in sorted(per_life.items(), key=lambda kv: -kv[1])
                          if not k.startswith("_")), file=out)
            if "_machine" in procs:
                print(f"   machine busy {procs['_machine']['cpu_percent']} % of one core (of "
                      f"{procs['_machine']['cores'] * 100} %); load {procs['_machine']['load_avg_end']}", file=out)
            rows = ", ".join(f"{k} {v['once']}/{v['expected']}" for k, v in eo["rows"].items())
            events = ", ".join(f"{k} {v['once']}/{v['expected']}" for k, v in eo["events"].items())
            print(f"   exactly once: {'YES' if eo['exactly_once'] else 'NO'} — rows {rows}; events {events}; "
                  f"e-mails {eo['messages']['email']['once']}/{eo['messages']['email']['expected']}, SMS "
                  f"{eo['messages']['sms']['once']}/{eo['messages']['sms']['expected']}; dead-lettered "
                  f"{eo['dead_lettered']}; duplicates recognised {ph.get('duplicates_recognised')}", file=out)
            r = ph.get("ratio", {})
            print(f"   ratio to baseline: lives/s ÷ broker msg/s = {r.get('lives_per_broker_msg')}, events "
                  f"delivered/s ÷ broker msg/s = {r.get('deliveries_per_broker_msg')}, DB commits/s ÷ raw tx/s = "
                  f"{r.get('db_commits_per_raw_tx')}", file=out)
    so = result.get("scale_out")
    if so:
        print(f"\nScale-out: {so}", file=out)


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    phases = [(run["replicas"], ph) for run in result["runs"] for ph in run["phases"]]
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    ax = axes[0][0]
    for replicas, ph in phases:
        done = ph["timeline"]["completed_per_s"]
        smooth = [sum(done[max(0, i - 4):i + 1]) / len(done[max(0, i - 4):i + 1]) for i in range(len(done))]
        ax.plot(smooth, label=f"{replicas}× target {ph['target_lives_per_s']:g}/s")
    ax.set_title("complete lives per second (5 s moving mean)")
    ax.set_xlabel("seconds since the phase started")
    ax.legend(fontsize=8)
    ax = axes[0][1]
    for replicas, ph in phases:
        ax.plot([v or None for v in ph["timeline"]["receive_p99_ms"]], marker=".", markersize=3,
                label=f"{replicas}× {ph['target_lives_per_s']:g}/s")   # None: no receipt that second
    ax.axhline(100, color="red", linestyle=":", label="target p99 100 ms")
    ax.set_title("desk receive p99 per second (ms, client side)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax = axes[1][0]
    labels = [f"{r}×{ph['target_lives_per_s']:g}" for r, ph in phases]
    consumers = sorted({c for _, ph in phases for c in ph["event_lag_ms"]})
    width = 0.8 / max(len(consumers), 1)
    for i, consumer in enumerate(consumers):
        ax.bar([x + i * width for x in range(len(phases))],
               [ph["event_lag_ms"].get(consumer, {}).get("p99") or 0 for _, ph in phases], width, label=consumer)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(phases))], labels)
    ax.set_title("event lag p99 per consuming service (ms)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax = axes[1][1]
    groups = sorted({k.split("#")[0] for _, ph in phases for k in ph["processes"] if not k.startswith("_")})
    width = 0.8 / max(len(phases), 1)
    for i, (replicas, ph) in enumerate(phases):
        cpu = defaultdict(float)
        for k, v in ph["processes"].items():
            if not k.startswith("_"):
                cpu[k.split("#")[0]] += v["cpu_percent"]
        ax.barh([y + i * width for y in range(len(groups))], [cpu[g] for g in groups], width,
                label=f"{replicas}× {ph['target_lives_per_s']:g}/s")
    ax.set_yticks([y + 0.4 - width / 2 for y in range(len(groups))], groups, fontsize=7)
    ax.set_title("CPU, % of one core (replicas summed)")
    ax.legend(fontsize=8)
    m = result["machine"]
    fig.suptitle(f"Một Cửa throughput — {m['nproc']} cores {m['cpu_model']}, {m['ram_gb']} GB — {result['finished']}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --- main ---------------------------------------------------------------------------------------------

def run_stack(args, replicas: int, run_dir: Path, rng: random.Random, base: dict | None) -> dict:
    from motcua.runtime.db import make_engine
    stack = Stack(args, replicas, run_dir)
    dbname = database_name(args.database_url)
    sampler = None
    engine = make_engine(args.database_url, pool_size=2, application_name="bench-accounting")
    try:
        stack.start()
        sampler = Sampler(stack, dbname)
        sampler.start()
        load = Load(stack, args, rng)
        load.load_documents()
        phases = []
        for rate in args.rates:
            say(f"phase: {replicas} replica(s), {rate:g} lives/s for {args.duration:g} s")
            commits_before = db_commits(engine, dbname)
            broker_before = stack.management.vhost_stats(stack.vhost)
            phase = load.run_phase(rate, args.duration)
            check_stop()
            quiet = wait_quiet(stack, engine)
            check_stop()
            if not quiet["quiet"]:
                say(f"not quiet after waiting: {quiet}")
            commits = db_commits(engine, dbname) - commits_before
            time.sleep(5.5)       # the management API's message statistics lag by a few seconds
            broker_after = stack.management.vhost_stats(stack.vhost)
            elapsed = phase["end"] - phase["start"]
            broker = {f"{k}_per_s": round((broker_after[k] - broker_before[k]) / elapsed, 1) for k in broker_after}
            accounting = account(stack, engine, phase)
            figures = phase_figures(args, rate, phase, sampler, accounting, scrape_receive_histogram(stack),
                                    commits, broker)
            figures["quiet"] = quiet
            figures["duplicates_recognised"] = duplicates_metric(stack)
            if base:
                lives = figures["sustained_lives_per_s"]
                deliveries = (figures["deliveries_per_life"] or 0) * lives
                figures["ratio"] = {
                    "lives_per_broker_msg": stats.ratio(lives, base["amqp"]["consumed_per_s"]),
                    "deliveries_per_broker_msg": stats.ratio(deliveries, base["amqp"]["consumed_per_s"]),
                    "db_commits_per_raw_tx": stats.ratio(figures["db_commits_per_s"], base["pg"]["tx_per_s"]),
                }
            eo = figures["exactly_once"]["exactly_once"]
            say(f"phase done: sustained {figures['sustained_lives_per_s']} lives/s, receive p99 "
                f"{figures['latency_ms'].get('receive', {}).get('p99')} ms, exactly once: {eo}")
            phases.append(figures)
        return {"replicas": replicas, "layout": args.layout, "vhost": stack.vhost, "db_connections": stack.db_budget, "phases": phases}
    finally:
        if sampler:
            sampler.stop()
        stack.stop()
        engine.dispose()


def exclusive(url: str):
    """One benchmark at a time on a database: a session-level advisory lock held for the run."""
    import psycopg2
    connection = psycopg2.connect(libpq_url(url))
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(2245, 1)")
        if not cursor.fetchone()[0]:
            connection.close()
            raise SystemExit(f"another benchmark is running on {database_name(url)}: wait for it to finish")
    return connection


def _terminated(*_):
    # Only a flag: under eventlet a handler that raised would interrupt whichever green thread runs.
    # The load stops starting lives, the run stops what it started (SIGTERM, then SIGKILL) and ends.
    if not STOP.is_set():
        say("stopping: the services and fakes this run started are being stopped")
    STOP.set()


def check_stop() -> None:
    if STOP.is_set():
        raise KeyboardInterrupt


def main(argv=None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    signal.signal(signal.SIGTERM, _terminated)
    signal.signal(signal.SIGINT, _terminated)
    ensure_database(args.database_url)
    lock = exclusive(args.database_url)  # noqa: F841 -- held until the process ends
    run_dir = Path(tempfile.mkdtemp(prefix="motcua-bench-"))
    say(f"logs in {run_dir}")
    result = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
              "args": {k: v for k, v in vars(args).items()}, "runs": []}
    base = None
    try:
        if args.baseline_seconds > 0:
            management = Management()
            vhost = f"motcua-bench-baseline-{uuid.uuid4().hex[:6]}"
            management.create_vhost(vhost)
            try:
                base = baseline(args, f"amqp://guest:guest@{args.amqp_host}/{vhost}")
            finally:
                management.delete_vhost(vhost)
            result["baseline"] = base
        for replicas in args.replicas:
            check_stop()
            result["runs"].append(run_stack(args, replicas, run_dir, rng, base))
    except KeyboardInterrupt:
        say("interrupted: everything it started is stopped")
        return 130
    finally:
        for process in STARTED:          # whatever an error left running
            if process.popen.poll() is None:
                process.popen.kill()
                process.popen.wait(timeout=10)
        if not args.keep_logs:
            shutil.rmtree(run_dir, ignore_errors=True)
    runs = {run["replicas"]: run for run in result["runs"]}
    if len(runs) > 1:
        one, most = runs[min(runs)], runs[max(runs)]
        result["scale_out"] = {
            f"{p1['target_lives_per_s']:g}/s": {
                f"{one['replicas']}x_sustained": p1["sustained_lives_per_s"],
                f"{most['replicas']}x_sustained": p2["sustained_lives_per_s"],
                f"{most['replicas']}x_exactly_once": p2["exactly_once"]["exactly_once"],
                f"{one['replicas']}x_receive_p99_ms": p1["latency_ms"].get("receive", {}).get("p99"),
                f"{most['replicas']}x_receive_p99_ms": p2["latency_ms"].get("receive", {}).get("p99")}
            for p1, p2 in zip(one["phases"], most["phases"])}
    result["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + (f"-{args.label}" if args.label else "")
    json_path, png_path = out / f"throughput-{stamp}.json", out / f"throughput-{stamp}.png"
    json_path.write_text(json.dumps(result, indent=1, ensure_ascii=False, default=str))
    plot(result, png_path)
    shutil.copyfile(json_path, out / "throughput-latest.json")
    shutil.copyfile(png_path, out / "throughput-latest.png")
    print_report(result)
    print(f"\nwritten: {json_path}, {png_path} (and throughput-latest.*)")
    ok = all(ph["exactly_once"]["exactly_once"] for run in result["runs"] for ph in run["phases"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
