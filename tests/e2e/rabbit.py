"""RabbitMQ nodes of a test's own: one node (the broker-down test) or a three-node cluster.

Each node has its own name, ports and folders, reads empty environment and plugin files (Debian's
``rabbitmq-env.conf`` forces the node name; the management plugin's ports would clash with the
machine's node), and is stopped by the test that started it. The machine's node on 5672 is never
touched. Checked with RabbitMQ 3.10.8."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nameko.testing.utils import find_free_port


class RabbitNode:
    """``rabbitmq-server`` as a node of its own, in a folder of its own."""

    def __init__(self, folder: Path, name: str | None = None):
        self.folder = folder
        self.port = find_free_port()
        self.name = name or f"motcua-bd-{uuid.uuid4().hex[:6]}@localhost"
        for sub in ("mnesia", "log", "home"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / "env.conf").write_text("")
        (folder / "plugins").write_text("[].\n")
        # The machine's rabbitmq.conf names 5672: this node reads a file of its own.
        (folder / "rabbitmq.conf").write_text(f"listeners.tcp.1 = 127.0.0.1:{self.port}\n")
        if os.geteuid() == 0:
            # Started as root, the rabbitmq-server wrapper runs the node as the rabbitmq user.
            for path in (folder, *folder.iterdir()):
                shutil.chown(path, "rabbitmq", "rabbitmq")
        self.env = {**os.environ, "HOME": str(folder / "home"),       # its own Erlang cookie
                    "RABBITMQ_NODENAME": self.name, "RABBITMQ_NODE_PORT": str(self.port),
                    "RABBITMQ_DIST_PORT": str(find_free_port()),
                    "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"), "RABBITMQ_LOG_BASE": str(folder / "log"),
                    "RABBITMQ_CONF_ENV_FILE": str(folder / "env.conf"),
                    "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
                    "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "plugins"),
                    "ERL_CRASH_DUMP": str(folder / "log" / "erl_crash.dump")}
        self.log = open(folder / "server.out", "a")
        self.process = None
        self.uri = f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def start(self):
        self.process = subprocess.Popen(["rabbitmq-server"], env=self.env, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        self.await_startup()

    def await_startup(self, timeout: float = 90):
        deadline = time.monotonic() + timeout
        while self.ctl("await_startup", timeout=timeout, check=False).returncode != 0:
            # await_startup fails at once while the node is not up enough to be asked
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"RabbitMQ node {self.name} did not start (see {self.log.name})")
            time.sleep(0.5)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.ctl("stop", timeout=60, check=False)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def beam_pid(self) -> int:
        """The Erlang VM's process (the wrapper started by ``start`` is a shell around it)."""
        out = self.ctl("eval", "os:getpid().", timeout=30).stdout
        return int(re.search(r"\d+", out).group())

    def kill(self) -> None:
        """SIGKILL of the Erlang VM: no goodbye to its peers or its clients, as a power cut."""
        os.kill(self.beam_pid(), signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)
        self.process = None

    def ctl(self, *args, timeout, check=True):
        result = subprocess.run(["rabbitmqctl", "-n", self.name, *args], env=self.env, capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode:
            raise AssertionError(f"rabbitmqctl {' '.join(args)} on {self.name}: {result.returncode} "
                                 f"{result.stderr.strip()[-500:]}")
        return result


class RabbitCluster:
    """Three nodes (``n1..n3`` with a random suffix) on localhost, joined into one cluster.

    Not under pytest's tmp folders: those are root's only, and the nodes run as rabbitmq. The
    Erlang cookie is shared (one HOME for all), as a cluster needs."""

    def __init__(self, size: int = 3):
        self.base = Path(tempfile.mkdtemp(prefix="motcua-cluster-"))
        self.base.chmod(0o755)
        suffix = uuid.uuid4().hex[:6]
        self.nodes = [RabbitNode(self.base / f"n{i}", name=f"n{i}-{suffix}@localhost") for i in range(1, size + 1)]
        home = self.base / "home"
        home.mkdir()
        if os.geteuid() == 0:
            shutil.chown(home, "rabbitmq", "rabbitmq")
        for node in self.nodes:
            node.env["HOME"] = str(home)

    def uri(self, vhost: str = "/") -> str:
        """Every node, as kombu's failover list: a client moves to the next when its node goes."""
        path = "/" + ("" if vhost == "/" else vhost)
        return ";".join(f"amqp://guest:guest@127.0.0.1:{node.port}{path}" for node in self.nodes)

    def start(self) -> "RabbitCluster":
        with ThreadPoolExecutor(len(self.nodes)) as pool:      # about 6 s each, at once
            list(pool.map(lambda node: node.start(), self.nodes))
        first = self.nodes[0]
        for node in self.nodes[1:]:
            for step in (("stop_app",), ("reset",), ("join_cluster", first.name), ("start_app",)):
                node.ctl(*step, timeout=120)
        running = first.ctl("eval", "rabbit_nodes:all_running().", timeout=30).stdout
        if not all(node.name in running for node in self.nodes):
            raise AssertionError(f"cluster not formed: {running}")
        return self

    def stop(self) -> None:
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda node: node.stop(), self.nodes))
        for node in self.nodes:
            node.log.close()
        shutil.rmtree(self.base, ignore_errors=True)

    def up(self) -> RabbitNode:
        """A node that runs, to ask."""
        return next(node for node in self.nodes if node.process is not None and node.process.poll() is None)

    def list_queues(self, vhost: str, *columns: str) -> list[dict]:
        out = self.up().ctl("--formatter", "json", "list_queues", "-p", vhost, *columns, timeout=60).stdout
        return json.loads(out[out.index("["):]) if "[" in out else []

    def leaders(self, vhost: str) -> dict[str, int]:
        """{node name: quorum queues it leads}."""
        count: dict[str, int] = defaultdict(int)
        for queue in self.list_queues(vhost, "name", "type", "leader"):
            if queue.get("type") == "quorum":
                count[queue["leader"]] += 1
        return dict(count)

    def node(self, name: str) -> RabbitNode:
        return next(node for node in self.nodes if node.name == name)


class RabbitCtl:
    """What ``bench.throughput`` asks the management API, asked with ``rabbitmqctl`` (the cluster runs
    no management plugin): vhosts, the queues and their messages, the events exchange's bindings."""

    def __init__(self, cluster: RabbitCluster):
        self.cluster = cluster

    def create_vhost(self, name: str) -> None:
        node = self.cluster.up()
        node.ctl("add_vhost", name, timeout=60)
        node.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*", timeout=60)

    def delete_vhost(self, name: str) -> None:
        self.cluster.up().ctl("delete_vhost", name, timeout=60, check=False)

    def queues(self, vhost: str) -> list[dict]:
        return self.cluster.list_queues(vhost, "name", "messages", "consumers")

    def consumers_by_type(self, vhost: str) -> dict[str, set]:
        """{event type: services consuming it}, from the bindings of the events exchange."""
        out = self.cluster.up().ctl("--formatter", "json", "list_bindings", "-p", vhost, "source_name",
                                    "destination_name", "destination_kind", "routing_key",
                                    timeout=60).stdout
        bindings = json.loads(out[out.index("["):]) if "[" in out else []
        found: dict[str, set] = defaultdict(set)
        for binding in bindings:
            if (binding["source_name"] == "motcua.events" and binding["destination_kind"] == "queue"
                    and "." in binding["destination_name"]):
                found[binding["routing_key"]].add(binding["destination_name"].split(".")[0])
        return dict(found)

    def vhost_stats(self, vhost: str) -> dict:
        return {}
