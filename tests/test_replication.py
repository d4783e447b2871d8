"""Acknowledged means replicated, when asked: with --min-replicas N an append is answered OK
only once N replicas have it (Redis WAIT); one not confirmed in time is UNAVAILABLE, and its
retry is answered OK (as a duplicate) once it is confirmed. Across a Sentinel failover under
load, no acknowledged append is lost or doubled with --min-replicas 1; without it the loss is
measured in the same run and reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator

import grpc
import pytest
import redis

from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from storage_proxy.process.embedded_redis import RedisProcess
from storage_proxy.redis.store import JournalRef
from storage_proxy.testing import ProxyProcess, proxy_command
from tests.conftest import RawClient, issue_token
from tests.faults import Writer, check_writers, journal
from tests.ops_helpers import wait_for
from tests.redis_topologies import LocalSentinel


class Pair:
    """A master and one replica, no Sentinel."""

    def __init__(self, base) -> None:
        self.master = RedisProcess(base / "master", appendonly=False)
        self.replica = RedisProcess(base / "replica", appendonly=False, extra_args=(
            "--replicaof", "127.0.0.1", str(self.master.port)))

    def start(self) -> None:
        self.master.start()
        self.replica.start()
        wait_for(lambda: redis.Redis(port=self.replica.port).info("replication")
                 ["master_link_status"] == "up", 30, "the replica in sync")

    def replica_log(self, user: str, name: str = "default") -> list[bytes]:
        with redis.Redis(port=self.replica.port) as r:
            return r.lrange(JournalRef("ogs", user, name).log, 0, -1)


@pytest.fixture
def pair(tmp_path) -> Iterator[Pair]:
    p = Pair(tmp_path)
    p.start()
    yield p
    if p.replica.proc is not None:
        os.kill(p.replica.proc.pid, signal.SIGCONT)
    p.replica.stop()
    p.master.stop()


def append(raw: RawClient, i: int, sequence: int) -> pb.AppendLogsResponse:
    entry = json.dumps({"op_code": 10, "i": i}).encode()
    return raw.AppendLogs(pb.AppendLogsRequest(journal="default", entries=[entry],
                                               client_id="c", sequence=sequence))


def test_an_append_is_acknowledged_only_once_the_replica_has_it(pair, tmp_path) -> None:
    safe = ProxyProcess(pair.master.url, data_dir=tmp_path / "safe", extra_args=(
        "--min-replicas", "1", "--replica-timeout-ms", "300", "--workers", "1"))
    plain = ProxyProcess(pair.master.url, data_dir=tmp_path / "plain",
                         extra_args=("--workers", "1"))
    with safe, plain:
        assert "--min-replicas 1: every acknowledged write is in the memory of 1" in \
            safe.log_tail()
        raw = RawClient(safe.endpoint, issue_token(pair.master.url, "safe"))
        first = append(raw, 0, 1)
        assert not first.duplicate
        assert len(pair.replica_log("safe")) == 1  # there as soon as it was acknowledged

        assert pair.replica.proc is not None
        os.kill(pair.replica.proc.pid, signal.SIGSTOP)  # the replica stops acknowledging
        for _ in range(2):  # the first try and a retry: neither is confirmed
            with pytest.raises(grpc.RpcError) as refused:
                append(raw, 1, 2)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "reached 0 of the 1 replica(s)" in refused.value.details()
        # The master has it, written once; without --min-replicas it is acknowledged at once.
        other = RawClient(plain.endpoint, issue_token(pair.master.url, "plain"))
        assert not append(other, 1, 1).duplicate
        assert len(journal(raw)) == 2

        os.kill(pair.replica.proc.pid, signal.SIGCONT)
        retried = append(raw, 1, 2)  # the same key again: applied once, now confirmed
        assert retried.duplicate and retried.first_position == 1
        assert pair.replica_log("safe") == journal(raw)
        assert len(journal(raw)) == 2


def serve_error(*args: str) -> str:
    done = subprocess.run(proxy_command("serve", "--port", "0", *args), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    return done.stderr


def test_min_replicas_is_refused_where_it_cannot_hold(redis_server, tmp_path) -> None:
    """Refused at start, with the reason: the embedded Redis (no replicas), Redis Cluster,
    WAITAOF on a Redis older than 7.2, a timeout out of range."""
    assert "the embedded Redis has none" in serve_error(
        "--min-replicas", "1", "--data-dir", str(tmp_path / "d"))
    assert "not supported with Redis Cluster" in serve_error(
        "--min-replicas", "1", "--redis-url", "redis+cluster://127.0.0.1:1")
    version = redis.Redis.from_url(redis_server.url).info("server")["redis_version"]
    if tuple(int(p) for p in version.split(".")[:2]) < (7, 2):
        assert "--replica-ack fsynced needs Redis >= 7.2" in serve_error(
            "--min-replicas", "1", "--replica-ack", "fsynced", "--redis-url",
            redis_server.url)
    assert "--replica-timeout-ms must be between 1 and 4000" in serve_error(
        "--min-replicas", "1", "--replica-timeout-ms", "0", "--redis-url", redis_server.url)


# --- a Sentinel failover under load ------------------------------------------------------


def failover_under_load(tmp_path, writers: int, per_writer: int, failovers: int,
                        lag: float = 0.0) -> int:
    """Writers append through two proxies on one Sentinel-watched master + replica, one with
    --min-replicas 1, one without; the master is SIGKILLed `failovers` times (each time the
    sentinel promotes the replica; the old master comes back as a replica). With `lag`, the
    replication stream is held back for that many seconds before the first kill and what it
    held is dropped with the master: a replica that lags behind (a slow link, a busy
    machine) when the master dies. Asserts 0
    lost and 0 doubled with --min-replicas 1 and 0 doubled without; returns the acknowledged
    appends lost without it."""
    sentinel = LocalSentinel(tmp_path / "sentinel", link=lag > 0)
    sentinel.start()
    safe = ProxyProcess(sentinel.url, data_dir=tmp_path / "safe", extra_args=(
        "--min-replicas", "1", "--workers", "1"))
    plain = ProxyProcess(sentinel.url, data_dir=tmp_path / "plain",
                         extra_args=("--workers", "1"))
    try:
        safe.start()
        plain.start()
        tokens = {p: issue_token(sentinel.url, name) for p, name in ((safe, "safe"),
                                                                     (plain, "plain"))}
        teams = {p: [Writer(p.endpoint, tokens[p], f"w{i}", per_writer)
                     for i in range(writers)] for p in (safe, plain)}
        everyone = [w for team in teams.values() for w in team]
        for w in everyone:
            w.start()
        total = len(everyone) * per_writer
        for k in range(1, failovers + 1):
            wait_for(lambda k=k: sum(len(w.acked) for w in everyone) >= total * k
                     // (failovers + 1), 300, "appends acknowledged before the kill")
            old = sentinel.node_at(sentinel.master_port())
            link = sentinel.link if k == 1 else None  # later, replicas link up directly
            if link is not None:
                link.stall(upstream=False, downstream=True)
                time.sleep(lag)
            old.kill()  # a crash: the sentinel promotes the replica
            if link is not None:
                link.reset()  # what the replica had not received goes with the master
                link.flow()
            sentinel.wait_for_master_other_than(old.port)
            old.start()  # back, empty: the sentinel makes it a replica of the new master
            sentinel.wait_until_replica(old)
        for w in everyone:
            w.join(300)
            assert w.error is None, w.error
        lost = {p: check_writers(teams[p], journal(RawClient(p.endpoint, tokens[p])),
                                 may_lose=None if p is safe else lambda _: True)
                for p in (safe, plain)}
        print(f"\n{failovers} Sentinel failover(s), replica {lag:.1f}s behind, {writers} "
              f"writers x {per_writer} appends per proxy: acknowledged appends lost with "
              f"--min-replicas 1: {lost[safe]}, without: {lost[plain]} (doubled: 0 and 0)")
        assert lost[safe] == 0
        return lost[plain]
    finally:
        safe.kill()
        plain.kill()
        sentinel.stop()


@pytest.mark.parametrize("lag", [pytest.param(0.0, marks=pytest.mark.slow), 0.5])
def test_a_sentinel_failover_loses_no_acknowledged_append_with_min_replicas(
        tmp_path, lag: float) -> None:
    failover_under_load(tmp_path, writers=3, per_writer=150, failovers=1, lag=lag)


@pytest.mark.slow
@pytest.mark.parametrize("lag", [0.0, 0.5])  # the first failover with a lagging replica
def test_repeated_sentinel_failovers_lose_no_acknowledged_append(tmp_path, lag: float) -> None:
    started = time.monotonic()
    failover_under_load(tmp_path, writers=6, per_writer=600, failovers=3, lag=lag)
    print(f"took {time.monotonic() - started:.0f}s")


def test_a_study_waits_out_a_stopped_replica(pair, tmp_path) -> None:
    """Through the real client (Session stream, retries): while the replica is stopped the
    workers wait (UNAVAILABLE, retried), and the study ends whole, nothing doubled, once it is
    back."""
    import threading

    import optuna

    from optuna_grpc_storage import GrpcJournalStorage

    with ProxyProcess(pair.master.url, data_dir=tmp_path / "proxy", extra_args=(
            "--min-replicas", "1", "--replica-timeout-ms", "200", "--workers", "1")) as proxy:
        storage = GrpcJournalStorage(proxy.endpoint, token=proxy.issue_token("study"))
        study = optuna.create_study(study_name="s", storage=storage)
        ran = threading.Thread(target=lambda: study.optimize(
            lambda t: t.suggest_float("x", 0, 1), n_trials=30))
        ran.start()
        wait_for(lambda: len(study.trials) >= 5, 60, "trials before the replica stops")
        assert pair.replica.proc is not None
        os.kill(pair.replica.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(2.0)
            assert ran.is_alive()  # no append is acknowledged meanwhile: the workers wait
        finally:
            os.kill(pair.replica.proc.pid, signal.SIGCONT)
        ran.join(120)
        assert not ran.is_alive()
        assert [t.state.name for t in study.trials] == ["COMPLETE"] * 30
        with redis.Redis.from_url(pair.master.url) as r:
            on_master = r.lrange(JournalRef("ogs", "study", "default").log, 0, -1)
        assert pair.replica_log("study", "default") == on_master
