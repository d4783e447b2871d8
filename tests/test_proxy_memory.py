"""The proxy's memory is bounded by its configuration, not by what users send: snapshots stream
through in chunks, and every cache is bounded in bytes and is not filled by refused requests or
by journals nobody reads."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Iterator

import grpc
import pytest
import redis

from bench.harness import PeakRSS
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from storage_proxy.cache import JournalCache
from storage_proxy.redis.client import connect, connect_pubsub
from storage_proxy.redis.store import JournalStore
from storage_proxy.testing import ProxyProcess
from tests.conftest import RawClient, issue_token

SNAPSHOT = 96 << 20
BUDGET = 64 << 20  # RSS the proxy may gain while it takes that upload and sends 3 downloads


@pytest.fixture
def lone_proxy(redis_server, tmp_path) -> Iterator[ProxyProcess]:
    """One server process (its RSS is the proxy's), fresh for each test."""
    with ProxyProcess(redis_server.url, data_dir=tmp_path, metrics_port=-1,
                      extra_args=("--workers", "1", "--auth-cache-seconds", "60")) as p:
        yield p


def upload(raw: RawClient, journal: str, data: bytes) -> pb.SaveSnapshotResponse:
    step = 1 << 20

    def chunks() -> Iterator[pb.SnapshotChunk]:
        yield pb.SnapshotChunk(journal=journal, position=1, data=data[:step])
        for i in range(step, len(data), step):
            yield pb.SnapshotChunk(data=data[i : i + step])

    return raw.SaveSnapshot(chunks())


def test_snapshots_stream_through_in_bounded_memory(lone_proxy, redis_server) -> None:
    user = "snap" + uuid.uuid4().hex[:6]
    raw = RawClient(lone_proxy.endpoint, issue_token(redis_server.url, user))
    raw.AppendLogs(pb.AppendLogsRequest(journal="j", entries=[b'{"op_code": 10}']))
    data = os.urandom(SNAPSHOT)
    assert lone_proxy.proc is not None
    sizes: list[int] = []

    def download() -> None:
        total = 0
        for chunk in raw.LoadSnapshot(pb.LoadSnapshotRequest(journal="j")):
            total += len(chunk.data)
        sizes.append(total)

    with PeakRSS(lone_proxy.proc.pid) as rss:
        baseline = rss.peak
        assert upload(raw, "j", data).stored
        readers = [threading.Thread(target=download) for _ in range(3)]
        for t in readers:
            t.start()
        for t in readers:
            t.join()
    assert sizes == [SNAPSHOT] * 3
    gained = rss.peak - baseline
    print(f"\npeak RSS {rss.peak / 2**20:.0f} MiB, +{gained / 2**20:.0f} MiB over the "
          f"baseline for a {SNAPSHOT >> 20} MiB upload and 3 downloads")
    assert gained < BUDGET
    first = next(iter(raw.LoadSnapshot(pb.LoadSnapshotRequest(journal="j"))))
    assert (first.position, first.total_size, first.data) == (1, SNAPSHOT, data[: 1 << 20])


def test_unknown_tokens_never_push_a_valid_one_out(redis_server, tmp_path) -> None:
    """More unknown tokens than the auth cache holds come in between two calls of a valid
    one, which is still answered from the cache (no Redis lookup). The cache is made small
    (5,000 bytes for unknown tokens, about 30 of them; 40,000 in all) so that 500 calls
    overflow it, and would overflow one cache shared by both kinds."""
    small = ProxyProcess(redis_server.url, data_dir=tmp_path, metrics_port=-1, extra_args=(
        "--workers", "1", "--auth-cache-seconds", "60", "--auth-cache-bytes", "40000"))
    with small:
        check_unknown_tokens_overflow(small, redis_server, 500)


def check_unknown_tokens_overflow(proxy: ProxyProcess, redis_server, unknown: int) -> None:
    raw = RawClient(proxy.endpoint, issue_token(redis_server.url, "valid"))
    raw.WhoAmI(pb.WhoAmIRequest())
    call = raw.stub.WhoAmI
    for i in range(unknown):
        with pytest.raises(grpc.RpcError):
            call(pb.WhoAmIRequest(), metadata=(("authorization", f"Bearer ogs_x_{i}"),),
                 timeout=30)
    with redis.Redis.from_url(redis_server.url) as r:
        gets = r.info("commandstats").get("cmdstat_get", {}).get("calls", 0)
        raw.WhoAmI(pb.WhoAmIRequest())
        assert r.info("commandstats").get("cmdstat_get", {}).get("calls", 0) == gets


def channels(url: str, pattern: str) -> list[bytes]:
    with redis.Redis.from_url(url) as r:
        return list(r.pubsub_channels(pattern))


def test_reads_of_journals_that_do_not_exist_leave_nothing(lone_proxy, redis_server) -> None:
    user = "ghost" + uuid.uuid4().hex[:6]
    raw = RawClient(lone_proxy.endpoint, issue_token(redis_server.url, user))
    for i in range(1_500):
        assert [c.entries for c in raw.ReadLogs(pb.ReadLogsRequest(journal=f"none{i}"))] \
            == [[]]
    raw.AppendLogs(pb.AppendLogsRequest(journal="real", entries=[b'{"op_code": 10}']))
    for _ in range(3):
        list(raw.ReadLogs(pb.ReadLogsRequest(journal="real")))
    time.sleep(0.5)
    subscribed = channels(redis_server.url, f"ogs:j:{{{user}/*")
    assert subscribed == [f"ogs:j:{{{user}/real}}:appended".encode()]


async def test_journals_nobody_reads_are_dropped_with_their_subscription(redis_server) -> None:
    r, subscriber = connect(redis_server.url), connect_pubsub(redis_server.url)
    cache = JournalCache(r, 1 << 20, verify_seconds=0.2, subscriber=subscriber,
                         idle_seconds=1.0)
    store = JournalStore(r, "t" + uuid.uuid4().hex[:6])
    listener = asyncio.create_task(cache.run())
    try:
        ref = store.ref("ns", "idle")
        while cache.subscriptions == 0 or cache.token(ref) is None:
            cache.fill_token(ref)
            await asyncio.sleep(0.01)
        assert channels(redis_server.url, ref.channel) == [ref.channel.encode()]
        await asyncio.sleep(2.0)  # idle for longer than idle_seconds
        assert cache.subscriptions == 0 and cache.token(ref) is None
        assert channels(redis_server.url, ref.channel) == []
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await r.aclose()
        await subscriber.aclose()


async def test_messages_waiting_for_a_window_are_bounded_in_bytes(redis_server) -> None:
    """A subscription whose fill never comes: what it buffers stays within a quarter of the
    budget, then the journal is forgotten (the next read goes to Redis)."""
    r, subscriber = connect(redis_server.url), connect_pubsub(redis_server.url)
    budget = 1 << 20
    cache = JournalCache(r, budget, subscriber=subscriber)
    ref = JournalStore(r, "t" + uuid.uuid4().hex[:6]).ref("ns", "early")
    listener = asyncio.create_task(cache.run())
    try:
        while cache.fill_token(ref) is None:
            await asyncio.sleep(0.01)
        most = 0
        for i in range(40):  # 40 messages of 64 KiB: 2.5 MiB if nothing bounded them
            await r.publish(ref.channel, b"%d\n" % i + b"x" * (64 << 10))
            await asyncio.sleep(0.005)
            most = max(most, sum(len(m) for ms in cache._early.values() for m in ms))
        await asyncio.sleep(0.2)
        assert most <= budget // 4 + (64 << 10)
        assert cache.fill_token(ref) is None  # forgotten (this asks for it again)
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await r.aclose()
        await subscriber.aclose()
