"""A PostgreSQL primary and its synchronous streaming standby, made for one test and dropped after.

Debian's cluster tools (``pg_createcluster``, ``pg_ctlcluster``, ``pg_dropcluster``), as
``../shared/engineering.md`` §2 describes: two clusters of the installed major version on ports of
their own, trust for 127.0.0.1 and the socket, the standby cloned with ``pg_basebackup -R -X stream
-C -S <slot>`` and named in the primary's ``synchronous_standby_names`` (Debian sets its
``cluster_name``, hence its ``application_name``, to ``"<version>/<name>"``). The machine's own
cluster (``main`` on 5432) is never touched. Runs as root (the tools switch to ``postgres``).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import psycopg2

HBA = """\
# written by tests/e2e/pg_pair.py: trust on the socket and 127.0.0.1, replication included
local   all             all                                     trust
host    all             all             127.0.0.1/32            trust
local   replication     all                                     trust
host    replication     all             127.0.0.1/32            trust
"""


def available() -> str | None:
    """Why the pair cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root (Debian's pg_createcluster, pg_basebackup as postgres)"
    for tool in ("pg_createcluster", "pg_ctlcluster", "pg_dropcluster", "pg_lsclusters"):
        if shutil.which(tool) is None:
            return f"needs {tool} (Debian's postgresql-common)"
    return None


def run(*argv: str, timeout: float = 120) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if result.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr or result.stdout}")
    return result.stdout


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Cluster:
    def __init__(self, version: str, name: str, port: int):
        self.version, self.name, self.port = version, name, port
        self.data = Path(f"/var/lib/postgresql/{version}/{name}")

    def exists(self) -> bool:
        return Path(f"/etc/postgresql/{self.version}/{self.name}").exists() or self.data.exists()

    def ctl(self, *action: str, timeout: float = 120) -> str:
        return run("pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, *action, timeout=timeout)

    def create(self) -> None:
        run("pg_createcluster", self.version, self.name, "-p", str(self.port), "--start-conf", "manual",
            "--", "--auth-local=trust", "--auth-host=trust")
        config = Path(f"/etc/postgresql/{self.version}/{self.name}")
        config.joinpath("pg_hba.conf").write_text(HBA)
        # Debian's postgresql.conf reads conf.d/ (``pg_createcluster -o`` would quote 127.0.0.1 wrongly).
        # Five services' pools and LISTEN connections need more than the default 100.
        config.joinpath("conf.d", "motcua-test.conf").write_text(
            "listen_addresses = '127.0.0.1'\nmax_connections = 200\n")

    def drop(self) -> None:
        if self.exists():
            subprocess.run(["pg_dropcluster", "--stop", self.version, self.name], capture_output=True, timeout=120)
            if self.data.exists():         # a half-made cluster pg_dropcluster does not know
                shutil.rmtree(self.data, ignore_errors=True)
            shutil.rmtree(f"/etc/postgresql/{self.version}/{self.name}", ignore_errors=True)

    def connect(self, dbname: str = "postgres"):
        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=dbname,
                                      connect_timeout=5)
        connection.autocommit = True
        return connection

    def query(self, sql: str, *params, dbname: str = "postgres") -> list:
        connection = self.connect(dbname)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params or None)
                return cursor.fetchall() if cursor.description else []
        finally:
            connection.close()

    @property
    def application_name(self) -> str:
        return f"{self.version}/{self.name}"


class PrimaryAndStandby:
    """``make()`` builds and starts both; ``fail_over()`` stops the primary at once and promotes the
    standby; ``drop()`` removes both (also half-made ones, also after a crash of an earlier run)."""

    def __init__(self, primary=("mcp1", 5441), standby=("mcr1", 5442), role: str = "motcua",
                 database: str = "motcua"):
        versions = sorted(os.listdir("/usr/lib/postgresql"), key=lambda v: float(v))
        self.version = versions[-1]
        self.primary = Cluster(self.version, *primary)
        self.standby = Cluster(self.version, *standby)
        self.role, self.database = role, database
        self.slot = f"{self.standby.name}slot"

    @property
    def url(self) -> str:
        """The services' failover URL: both hosts, libpq picks the one that accepts writes."""
        return (f"postgresql+psycopg2://{self.role}@/{self.database}?host=127.0.0.1:{self.primary.port}"
                f"&host=127.0.0.1:{self.standby.port}&target_session_attrs=read-write")

    def make(self) -> None:
        for cluster in (self.primary, self.standby):
            if cluster.exists():
                # Named for this test only: what is there was left by a run that crashed.
                cluster.drop()
            if port_in_use(cluster.port):
                raise RuntimeError(f"port {cluster.port} is taken by something else: not making {cluster.name}")
        self.primary.create()
        self.primary.ctl("start")
        self.primary.query(f'CREATE ROLE "{self.role}" LOGIN')
        self.primary.query(f'CREATE DATABASE "{self.database}" OWNER "{self.role}"')
        self.standby.create()
        # The standby's data is the primary's, cloned: its own folder emptied first (owned by postgres,
        # mode 700), its configuration stays in /etc/postgresql.
        shutil.rmtree(self.standby.data)
        self.standby.data.mkdir(mode=0o700)
        shutil.chown(self.standby.data, "postgres", "postgres")
        run("runuser", "-u", "postgres", "--", f"/usr/lib/postgresql/{self.version}/bin/pg_basebackup",
            "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "postgres", "-D", str(self.standby.data),
            "-R", "-X", "stream", "-C", "-S", self.slot, "--checkpoint=fast", timeout=300)
        self.standby.ctl("start")
        # Synchronous: a commit is acknowledged once the standby has it (flushed to its disk).
        name = self.standby.application_name
        self.primary.query(f"ALTER SYSTEM SET synchronous_standby_names = '\"{name}\"'")
        self.primary.query("ALTER SYSTEM SET synchronous_commit = 'on'")
        self.primary.query("SELECT pg_reload_conf()")
        self.wait_sync()

    def wait_sync(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        rows = []
        while time.monotonic() < deadline:
            rows = self.primary.query("SELECT application_name, state, sync_state FROM pg_stat_replication")
            if (self.standby.application_name, "streaming", "sync") in rows:
                return
            time.sleep(0.2)
        raise RuntimeError(f"the standby is not a synchronous one after {timeout} s: {rows}")

    def fail_over(self) -> float:
        """The primary gone at once (as a crash: ``-m immediate``), the standby promoted; returns
        the seconds from the stop to the standby accepting writes."""
        started = time.monotonic()
        self.primary.ctl("stop", "-m", "immediate")
        self.standby.ctl("promote")
        deadline = time.monotonic() + 60
        while self.standby.query("SELECT pg_is_in_recovery()")[0][0]:
            if time.monotonic() > deadline:
                raise RuntimeError("the standby was not promoted in 60 s")
            time.sleep(0.1)
        return time.monotonic() - started

    def drop(self) -> None:
        for cluster in (self.standby, self.primary):
            cluster.drop()
