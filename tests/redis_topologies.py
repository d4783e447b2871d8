"""Real local Redis topologies for the tests: a Redis Cluster of several masters joined with
`redis-cli --cluster create`, and a master + replica watched by a Redis Sentinel."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis

from storage_proxy.process.children import start_child
from storage_proxy.process.embedded_redis import RedisProcess, find_redis_binary, free_port
from tests.relay import Relay


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    while True:
        port = free_port()
        if port <= 55535:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 10000))
                    return port
                except OSError:
                    pass


class LocalRedisCluster:
    """`masters` redis-server processes with --cluster-enabled, joined into one cluster."""

    def __init__(self, base_dir: Path, masters: int = 3) -> None:
        self.nodes = [
            RedisProcess(base_dir / f"node{i}", port=cluster_port(), appendonly=False, extra_args=(
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "2000"))
            for i in range(masters)
        ]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> str:
        for node in self.nodes:
            node.start()
        subprocess.run(
            [find_redis_binary("redis-cli"), "--cluster", "create",
             *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )
        _wait(self._ready, 30, "the cluster to be ok on every node")
        return self.url

    def _ready(self) -> bool:
        for node in self.nodes:
            with self.client(node.port) as c:
                info = c.cluster("info")
                if info["cluster_state"] != "ok" or int(info["cluster_known_nodes"]) != len(
                        self.nodes):
                    return False
        return True

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=5)

    def port_of_key(self, key: str) -> int:
        """The port of the master that holds `key`'s slot (asked with CLUSTER KEYSLOT/SLOTS)."""
        with self.client(self.nodes[0].port) as c:
            slot = int(c.execute_command("CLUSTER KEYSLOT", key))
            for start, end, master, *_ in c.execute_command("CLUSTER SLOTS"):
                if int(start) <= slot <= int(end):
                    return int(master[1])
        raise AssertionError(f"slot of {key} is not served")

    def keys_by_port(self, pattern: str = "*") -> dict[int, list[str]]:
        out = {}
        for node in self.nodes:
            with self.client(node.port) as c:
                out[node.port] = sorted(k.decode() for k in c.keys(pattern))
        return out

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class LocalSentinel:
    """A master, one replica and one sentinel (quorum 1) that fails over within seconds.
    With `link`, the replica reaches the master through a relay (tests/relay.py), so a test
    can hold the replication stream back: a replica that lags."""

    SERVICE = "ogsmaster"

    def __init__(self, base_dir: Path, link: bool = False) -> None:
        self.base_dir = base_dir
        self.master = RedisProcess(base_dir / "a", appendonly=False)
        self.link = Relay(("127.0.0.1", self.master.port)).start() if link else None
        upstream = self.link.port if self.link else self.master.port
        self.replica = RedisProcess(base_dir / "b", appendonly=False, extra_args=(
            "--replicaof", "127.0.0.1", str(upstream)))
        self.sentinel_port = free_port()
        self.sentinel: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{self.SERVICE}"

    def start(self) -> str:
        self.master.start()
        self.replica.start()
        conf = self.base_dir / "sentinel.conf"
        conf.write_text("\n".join([
            f"port {self.sentinel_port}",
            "bind 127.0.0.1",
            f"dir {self.base_dir}",
            f"logfile {self.base_dir / 'sentinel.log'}",
            f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.master.port} 1",
            f"sentinel down-after-milliseconds {self.SERVICE} 1000",
            f"sentinel failover-timeout {self.SERVICE} 10000",
            f"sentinel parallel-syncs {self.SERVICE} 1",
            "",
        ]))
        try:
            command = [find_redis_binary("redis-sentinel"), str(conf)]
        except FileNotFoundError:
            command = [find_redis_binary("redis-server"), str(conf), "--sentinel"]
        with open(self.base_dir / "sentinel.out", "ab") as out:
            self.sentinel = start_child(command, stdout=out, stderr=subprocess.STDOUT)
        # A failover needs a replica the sentinel knows and that is in sync.
        try:
            _wait(self._replica_known, 30, "the sentinel to discover the replica")
        except RuntimeError as e:
            raise RuntimeError(f"{e}; {self._sentinel_logs()}\n"
                               f"replica: {self.replica.log_tail()}") from None
        return self.url

    def _sentinel_logs(self) -> str:
        logs = "".join(p.read_text(errors="replace")[-2000:] for p in (
            self.base_dir / "sentinel.out", self.base_dir / "sentinel.log") if p.exists())
        return f"sentinel exit code {self.sentinel.poll()}:\n{logs}"

    def _replica_known(self) -> bool:
        with redis.Redis(port=self.sentinel_port, socket_timeout=2) as s:
            replicas = s.sentinel_slaves(self.SERVICE)
        with redis.Redis(port=self.replica.port, socket_timeout=2) as r:
            synced = r.info("replication").get("master_link_status") == "up"
        return synced and any(int(x["port"]) == self.replica.port for x in replicas)

    def master_port(self) -> int:
        with redis.Redis(port=self.sentinel_port, socket_timeout=2) as s:
            return int(s.sentinel_get_master_addr_by_name(self.SERVICE)[1])

    def wait_for_failover(self, timeout: float = 60.0) -> None:
        """Until the sentinel names the replica as master and it accepts writes."""
        def promoted() -> bool:
            if self.master_port() != self.replica.port:
                return False
            with redis.Redis(port=self.replica.port, socket_timeout=2) as r:
                return r.info("replication")["role"] == "master"

        _wait(promoted, timeout, "the sentinel to promote the replica")

    def node_at(self, port: int) -> RedisProcess:
        return next(n for n in (self.master, self.replica) if n.port == port)

    def wait_for_master_other_than(self, old_port: int, timeout: float = 60.0) -> int:
        """Until the sentinel names another node as master and it accepts writes; its port."""
        def promoted() -> bool:
            port = self.master_port()
            if port == old_port:
                return False
            with redis.Redis(port=port, socket_timeout=2) as r:
                return r.info("replication")["role"] == "master"

        _wait(promoted, timeout, "the sentinel to promote the replica")
        return self.master_port()

    def wait_until_replica(self, node: RedisProcess, timeout: float = 120.0) -> None:
        """Until `node` (a former master started again) is a replica in sync: the sentinel
        makes it one when it sees it back. A sentinel whose timer runs 2 s late (a loaded
        machine) enters TILT mode for 30 s and reconfigures nothing meanwhile, hence the
        long wait (60 s ran out once in a full suite on CI)."""
        def synced() -> bool:
            with redis.Redis(port=node.port, socket_timeout=2) as r:
                info = r.info("replication")
            return info["role"] == "slave" and info.get("master_link_status") == "up"

        try:
            _wait(synced, timeout, f"node {node.port} to rejoin as a replica")
        except RuntimeError as e:
            raise RuntimeError(f"{e}; {self._sentinel_logs()}") from None

    def stop(self) -> None:
        if self.sentinel is not None and self.sentinel.poll() is None:
            self.sentinel.terminate()
            self.sentinel.wait(10)
        self.sentinel = None
        self.replica.stop()
        self.master.stop()
        if self.link is not None:
            self.link.close()
