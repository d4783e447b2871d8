"""SIGTERM: health NOT_SERVING first, new calls still taken for --drain-seconds, then in-flight
calls finish within --grace-seconds and the proxy exits 0; nothing acknowledged is lost, and a
study keeps running through a rolling restart of the proxies."""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import signal
import threading
import time

import grpc
import optuna
import pytest
import redis

from optuna_grpc_storage import GrpcJournalStorage
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from optuna_grpc_storage.protocol.v1 import journal_pb2_grpc
from storage_proxy.process.embedded_redis import RedisProcess
from storage_proxy.redis.store import JournalRef
from storage_proxy.testing import ProxyProcess
from tests import workers
from tests.conftest import RawClient, issue_token
from tests.ops_helpers import NOT_SERVING, health, sample, scrape, wait_for

SMALL_CHUNKS = ("--max-chunk-bytes", "65536", "--max-entry-bytes", "65536")


@pytest.fixture
def own_redis(tmp_path):
    server = RedisProcess(tmp_path / "redis", appendonly=False)
    server.start()
    yield server
    server.stop()


def fill(raw: RawClient, journal: str, count: int, pad: int) -> list[bytes]:
    entries = [json.dumps({"op_code": 10, "trial_id": i, "pad": "x" * pad}).encode()
               for i in range(count)]
    for i in range(0, count, 100):  # within the 1 MiB batch limit
        raw.AppendLogs(pb.AppendLogsRequest(journal=journal, entries=entries[i : i + 100]))
    return entries


def slow_stream(endpoint: str, token: str, journal: str):
    """A ReadLogs stream on a channel without BDP probing: HTTP/2 flow control keeps the
    server writing for as long as this reader has not read."""
    channel = grpc.insecure_channel(endpoint, options=[("grpc.http2.bdp_probe", 0)])
    stub = journal_pb2_grpc.JournalServiceStub(channel)
    stream = stub.ReadLogs(pb.ReadLogsRequest(journal=journal),
                           metadata=(("authorization", f"Bearer {token}"),), timeout=120)
    return channel, stream


class SteadyAppender(threading.Thread):
    """Appends one entry per call until stopped; remembers what was acknowledged where."""

    def __init__(self, endpoint: str, token: str, journal: str) -> None:
        super().__init__(daemon=True)
        self.raw = RawClient(endpoint, token)
        self.journal = journal
        self.acked: dict[int, bytes] = {}
        self.refused: list[grpc.StatusCode] = []
        self.halt = threading.Event()

    def run(self) -> None:
        sequence = 0
        while not self.halt.is_set():
            sequence += 1
            entry = json.dumps({"op_code": 10, "steady": sequence}).encode()
            try:
                done = self.raw.AppendLogs(pb.AppendLogsRequest(
                    journal=self.journal, entries=[entry], client_id="steady",
                    sequence=sequence))
                self.acked[done.first_position] = entry
            except grpc.RpcError as e:
                self.refused.append(e.code())
            time.sleep(0.02)
        self.raw.channel.close()


def test_sigterm_drains_an_inflight_stream_and_loses_no_append(own_redis, tmp_path) -> None:
    proxy = ProxyProcess(own_redis.url, data_dir=tmp_path / "proxy", extra_args=(
        "--drain-seconds", "4", "--grace-seconds", "60", *SMALL_CHUNKS))
    proxy.start()
    token = issue_token(own_redis.url, "drain")
    raw = RawClient(proxy.endpoint, token)
    entries = fill(raw, "big", 1500, 8000)  # 12 MB: about 190 chunks of 64 KiB
    channel, stream = slow_stream(proxy.endpoint, token, "big")
    got = list(next(stream).entries)
    appender = SteadyAppender(proxy.endpoint, token, "big")
    appender.start()
    wait_for(lambda: len(appender.acked) >= 3, what="steady appends before SIGTERM")

    proxy.send_signal(signal.SIGTERM)
    # Draining: health says NOT_SERVING at once, yet new calls are still served.
    wait_for(lambda: health(proxy.endpoint) == NOT_SERVING, what="NOT_SERVING on SIGTERM")
    late = b'{"op_code": 10, "late": true}'
    late_at = raw.AppendLogs(pb.AppendLogsRequest(journal="big", entries=[late],
                                                  client_id="late", sequence=1)).first_position
    during = scrape(proxy.metrics_url)
    assert sample(during, "storage_proxy_draining") == 1
    assert sample(during, "storage_proxy_active_streams", method="ReadLogs") == 1  # in flight

    outcome: dict[str, object] = {}

    def read_rest() -> None:
        try:
            for chunk in stream:
                got.extend(chunk.entries)
                time.sleep(0.01)
            outcome["ok"] = True
        except grpc.RpcError as e:
            outcome["error"] = e.code()

    reader = threading.Thread(target=read_rest)
    reader.start()
    assert proxy.wait(timeout=120) == 0
    appender.halt.set()
    reader.join(30)
    appender.join(30)
    assert outcome == {"ok": True}
    assert got == entries  # the whole stream, in order, although SIGTERM came first
    log = proxy.log_tail(200)
    assert "SIGTERM: draining" in log and "stopped" in log
    assert proxy.stop() == 0
    channel.close()
    raw.channel.close()

    # Nothing acknowledged was lost and nothing unacknowledged was written.
    with redis.Redis.from_url(own_redis.url) as r:
        log_entries = r.lrange(JournalRef("ogs", "drain", "big").log, 0, -1)
    assert len(appender.acked) >= 3 and appender.refused  # it ran through the stop
    # refused as the client retries: UNAVAILABLE once the port is closed, CANCELLED for a call
    # that reached the server as it stopped, before any handler ran
    assert set(appender.refused) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
    assert len(log_entries) == len(entries) + 1 + len(appender.acked)
    assert log_entries[late_at] == late
    assert all(log_entries[pos] == entry for pos, entry in appender.acked.items())


def test_grace_period_bounds_the_drain(own_redis, tmp_path) -> None:
    proxy = ProxyProcess(own_redis.url, data_dir=tmp_path / "proxy", extra_args=(
        "--grace-seconds", "1", *SMALL_CHUNKS))
    proxy.start()
    token = issue_token(own_redis.url, "grace")
    raw = RawClient(proxy.endpoint, token)
    entries = fill(raw, "big", 1500, 8000)
    channel, stream = slow_stream(proxy.endpoint, token, "big")
    got = list(next(stream).entries)  # then this reader stalls
    assert proxy.stop(timeout=60) == 0  # a reader that never reads does not hold the exit
    with pytest.raises(grpc.RpcError):
        for chunk in stream:
            got.extend(chunk.entries)
    assert len(got) < len(entries)
    assert "stopped" in proxy.log_tail()
    channel.close()
    raw.channel.close()


def test_a_study_runs_through_a_rolling_restart(own_redis, tmp_path) -> None:
    proxies = [ProxyProcess(own_redis.url, data_dir=tmp_path / f"p{i}",
                            extra_args=("--drain-seconds", "1")) for i in range(2)]
    for p in proxies:
        p.start()
    token = issue_token(own_redis.url, "rolling")
    target = "ipv4:" + ",".join(p.endpoint for p in proxies)  # round-robin over both
    storage = GrpcJournalStorage(target, token=token)
    optuna.create_study(study_name="roll", storage=storage)
    watcher = GrpcJournalStorage(proxies[0].endpoint, token=token, read_staleness=0)

    def trials() -> int:
        return len(optuna.load_study(study_name="roll", storage=watcher).trials)

    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:
        runs = [pool.submit(workers.optimize, storage, "roll", 40) for _ in range(2)]
        for n, proxy in enumerate(proxies):
            wait_for(lambda n=n: trials() >= 15 + 25 * n, timeout=120, what="progress")
            assert proxy.stop() == 0
            proxy.start()  # same port: the channel's address is back
            watcher = GrpcJournalStorage(proxies[0].endpoint, token=token, read_staleness=0)
        assert [r.result(timeout=240) for r in runs] == [40, 40]
    final = optuna.load_study(study_name="roll", storage=watcher).trials
    assert [t.number for t in final] == list(range(80))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in final)
    for p in proxies:
        assert p.stop() == 0


def test_a_second_signal_cuts_the_grace_period_short(own_redis, tmp_path) -> None:
    proxy = ProxyProcess(own_redis.url, data_dir=tmp_path / "proxy", extra_args=(
        "--grace-seconds", "600", *SMALL_CHUNKS))
    proxy.start()
    token = issue_token(own_redis.url, "impatient")
    raw = RawClient(proxy.endpoint, token)
    fill(raw, "big", 1500, 8000)
    channel, stream = slow_stream(proxy.endpoint, token, "big")
    next(stream)  # then this reader stalls: the drain would wait 600 s for it
    proxy.send_signal(signal.SIGTERM)
    wait_for(lambda: "SIGTERM: draining" in proxy.log_tail(), what="the drain to start")
    proxy.send_signal(signal.SIGTERM)
    assert proxy.wait(timeout=60) == 0
    assert "second signal: cancelling the calls still in flight" in proxy.log_tail()
    with pytest.raises(grpc.RpcError):
        list(stream)
    proxy.stop()
    channel.close()
    raw.channel.close()
