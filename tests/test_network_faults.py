"""Promise 4: the network between client and proxy, and between proxy and Redis, drops,
stalls and resets connections (tests/relay.py does it on command). Calls retry or fail over to
the other proxy, no call outlives its deadline, and nothing is lost or doubled."""

from __future__ import annotations

import collections
import threading
import time
import uuid
from collections.abc import Callable

import grpc
import optuna
import pytest

from optuna_grpc_storage import GrpcJournalStorage
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from storage_proxy.testing import ProxyProcess
from tests import workers
from tests.conftest import RawClient, issue_token
from tests.faults import TRANSIENT, Writer, assert_study_intact, check_writers, journal
from tests.relay import Relay

SLACK = 3.0  # seconds a call may overrun its deadline on this shared machine before we call
# it a hang


def stall_for(seconds: float) -> Callable[[Relay], None]:
    def fault(relay: Relay) -> None:
        relay.stall()
        time.sleep(seconds)
        relay.flow()

    return fault


def lose_replies(relay: Relay) -> None:
    """Requests get through, their replies do not, then the connections die."""
    relay.stall(upstream=False, downstream=True)
    time.sleep(0.5)
    relay.reset()
    relay.flow()


def refuse_for(seconds: float) -> Callable[[Relay], None]:
    def fault(relay: Relay) -> None:
        relay.refuse = True
        relay.reset()
        time.sleep(seconds)
        relay.refuse = False

    return fault


class Chaos(threading.Thread):
    """Applies each fault in turn to the relays, round after round, until told to stop and
    every fault has happened at least once."""

    def __init__(self, relays: list[Relay], faults: dict[str, Callable[[Relay], None]],
                 pause: float = 0.3) -> None:
        super().__init__(daemon=True)
        self.relays, self.faults, self.pause = relays, faults, pause
        self.done: collections.Counter[str] = collections.Counter()
        self.stop = threading.Event()

    def run(self) -> None:
        turn = 0
        while not (self.stop.is_set() and set(self.done) == set(self.faults)):
            for name, fault in self.faults.items():
                fault(self.relays[turn % len(self.relays)])
                self.done[name] += 1
                turn += 1
                time.sleep(self.pause)


class Probe(threading.Thread):
    """Reads the journal through the relays with a 2 s deadline, again and again, and keeps
    the slowest call and every failure code."""

    def __init__(self, target: str, token: str) -> None:
        super().__init__(daemon=True)
        config = '{"loadBalancingConfig": [{"round_robin": {}}]}'
        self.raw = RawClient(target, token)
        self.raw.channel = grpc.insecure_channel(target,
                                                 options=[("grpc.service_config", config)])
        self.stop = threading.Event()
        self.longest = 0.0
        self.codes: collections.Counter[str] = collections.Counter()

    def run(self) -> None:
        from optuna_grpc_storage.protocol.v1 import journal_pb2_grpc

        stub = journal_pb2_grpc.JournalServiceStub(self.raw.channel)
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                list(stub.ReadLogs(pb.ReadLogsRequest(journal="default"),
                                   metadata=self.raw.metadata, timeout=2))
                self.codes["OK"] += 1
            except grpc.RpcError as e:
                self.codes[e.code().name] += 1
            self.longest = max(self.longest, time.monotonic() - started)
            time.sleep(0.02)


CLIENT_SIDE_FAULTS = {
    "reset": Relay.reset,
    "drop": Relay.drop,
    "stall past the deadline": stall_for(3.0),
    "lost replies": lose_replies,
    "refused connections": refuse_for(1.0),
}


def test_study_through_a_misbehaving_network(proxy, redis_server, tmp_path) -> None:
    """Three workers share a study through relays in front of two proxies while the relays
    reset, drop, stall and refuse connections."""
    token = issue_token(redis_server.url, "net-" + uuid.uuid4().hex[:8])
    second = ProxyProcess(redis_server.url, data_dir=tmp_path / "second")
    second.start()
    relays = [Relay(("127.0.0.1", p.port)).start() for p in (proxy, second)]
    target = "ipv4:" + ",".join(r.endpoint for r in relays)
    try:
        def storage() -> GrpcJournalStorage:
            return GrpcJournalStorage(target, token=token, timeout=2, retry_deadline=60)

        optuna.create_study(study_name="s", storage=storage())
        chaos, probe = Chaos(relays, CLIENT_SIDE_FAULTS), Probe(target, token)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                workers.optimize_slowly(storage(), "s", 15, 0.05)
            except BaseException as e:
                errors.append(e)

        team = [threading.Thread(target=work) for _ in range(3)]
        for t in (chaos, probe, *team):
            t.start()
        for t in team:
            t.join(300)
        chaos.stop.set()
        chaos.join(120)
        probe.stop.set()
        probe.join(30)
        assert errors == []
        assert set(chaos.done) == set(CLIENT_SIDE_FAULTS)
        study = optuna.load_study(study_name="s", storage=GrpcJournalStorage(proxy.endpoint,
                                                                             token=token))
        assert_study_intact(study, RawClient(proxy.endpoint, token), 45)
        assert probe.longest < 2 + SLACK, probe.longest  # no call outlived its deadline
        assert set(probe.codes) - {"OK"} <= {c.name for c in TRANSIENT}, probe.codes
        assert probe.codes["OK"] > 0 and sum(probe.codes.values()) > probe.codes["OK"]
    finally:
        for r in relays:
            r.close()
        second.stop()


REDIS_SIDE_FAULTS = {
    "reset": Relay.reset,
    "drop": Relay.drop,
    "short stall": stall_for(1.0),
    "stall past the Redis socket timeout": stall_for(6.0),
    "lost replies": lose_replies,
    "refused connections": refuse_for(1.0),
}


def run_writers_through_redis_chaos(redis_server, tmp_path, writers: int, per_writer: int,
                                    rounds: int = 1) -> None:
    redis_port = int(redis_server.url.rsplit(":", 1)[1])
    link = Relay(("127.0.0.1", redis_port)).start()
    proxy = ProxyProcess(f"redis://{link.endpoint}", data_dir=tmp_path / "proxy")
    proxy.start()
    try:
        token = issue_token(redis_server.url, "link-" + uuid.uuid4().hex[:8])
        team = [Writer(proxy.endpoint, token, f"w{i}", per_writer) for i in range(writers)]
        chaos = Chaos([link], REDIS_SIDE_FAULTS)
        chaos.start()
        for w in team:
            w.start()
        while sum(chaos.done.values()) < rounds * len(REDIS_SIDE_FAULTS):
            time.sleep(0.2)
        chaos.stop.set()
        for w in team:
            w.join(300)
        chaos.join(120)
        check_writers(team, journal(RawClient(proxy.endpoint, token)))
        assert sum(w.failures for w in team) > 0  # the faults were felt
        assert max(w.longest for w in team) < 5 + SLACK  # no attempt outlived its deadline
        assert proxy.proc is not None and proxy.proc.poll() is None
        assert "Traceback" not in proxy.log_path.read_text(errors="replace")
    finally:
        proxy.stop()
        link.close()


def test_writes_through_a_misbehaving_link_to_redis(redis_server, tmp_path) -> None:
    """Writers append with idempotency keys while the proxy's connections to Redis are reset,
    dropped, stalled (also past its 5 s socket timeout, so the proxy gives up and retries a
    script Redis may still run later) and refused: every append lands once, in order."""
    run_writers_through_redis_chaos(redis_server, tmp_path, writers=4, per_writer=300)


@pytest.mark.slow
def test_long_redis_link_chaos(redis_server, tmp_path) -> None:
    run_writers_through_redis_chaos(redis_server, tmp_path, writers=8, per_writer=3000,
                                    rounds=5)


def test_clients_leaving_mid_stream_are_not_errors(proxy, token) -> None:
    """A Pod killed while it reads a long journal: the proxy's next write to it fails, which
    is a client gone, not an internal error (the load test's stop did exactly this)."""
    raw = RawClient(proxy.endpoint, token)
    big = [b'{"op_code":10,"pad":"' + b"x" * 200_000 + b'","i":%d}' % i for i in range(40)]
    for i in range(0, 40, 4):  # 8 MB in batches within the 1 MiB limit
        raw.AppendLogs(pb.AppendLogsRequest(journal="default", entries=big[i : i + 4],
                                            known_position=i))
    errors_before = proxy.log_path.read_text(errors="replace").count("Traceback")
    for k in range(20):
        leaving = RawClient(proxy.endpoint, token)
        call = leaving.stub.ReadLogs(pb.ReadLogsRequest(journal="default"),
                                     metadata=leaving.metadata, timeout=30)
        assert len(next(call).entries) >= 1
        if k % 2:
            call.cancel()
        leaving.channel.close()
    assert journal(raw) == big  # the proxy still serves the whole journal
    assert proxy.log_path.read_text(errors="replace").count("Traceback") == errors_before


def test_a_burst_larger_than_the_redis_pool_waits_instead_of_failing(redis_server,
                                                                      tmp_path) -> None:
    """300 Pods, a slow moment at Redis, and 150 calls pile up in the proxy: more than its
    Redis connection pool holds. They wait for a connection and all succeed once Redis
    answers (the soak saw them fail with UNAVAILABLE instead)."""
    redis_port = int(redis_server.url.rsplit(":", 1)[1])
    link = Relay(("127.0.0.1", redis_port)).start()
    proxy = ProxyProcess(f"redis://{link.endpoint}", data_dir=tmp_path / "proxy",
                         extra_args=("--max-user-calls", "0"))  # one user's 150 calls at once
    proxy.start()
    try:
        token = issue_token(redis_server.url, "burst-" + uuid.uuid4().hex[:8])
        raw = RawClient(proxy.endpoint, token)
        raw.WhoAmI(pb.WhoAmIRequest())  # the token is cached: the burst only needs the store
        link.stall()
        calls = [raw.stub.AppendLogs.future(pb.AppendLogsRequest(
            journal="default", entries=[f'{{"op_code":10,"i":{i}}}'.encode()],
            client_id=f"c{i}", sequence=1), metadata=raw.metadata, timeout=30)
            for i in range(150)]
        time.sleep(1.5)  # all 150 are waiting at the proxy
        link.flow()
        codes = collections.Counter(
            c.exception().code().name if c.exception() else "OK" for c in calls)
        assert codes == {"OK": 150}, codes
        assert len(journal(raw)) == 150
    finally:
        proxy.stop()
        link.close()
