"""The proxy's cache and group commit, exercised in-process against a real Redis: the window
protocol (subscribe, fill, messages, gaps, deletion), its memory bound, and batches."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest

from optuna_grpc_storage.protocol.limits import Limits
from storage_proxy.cache import ENTRY_OVERHEAD, JournalCache
from storage_proxy.group_commit import GroupCommit
from storage_proxy.reads import Reader
from storage_proxy.redis.client import connect, connect_pubsub
from storage_proxy.redis.store import Append, JournalRef, JournalStore


def entry(i: int, pad: int = 0) -> bytes:
    return json.dumps({"op_code": 9, "i": i, "pad": "x" * pad}).encode()


class Stack:
    def __init__(self, redis_url: str, cache_bytes: int) -> None:
        self.redis = connect(redis_url)
        # as the server does: a subscriber without a read timeout (an idle one is not dead)
        self.subscriber = connect_pubsub(redis_url)
        self.cache = JournalCache(self.redis, cache_bytes, verify_seconds=0.5,
                                  subscriber=self.subscriber)
        self.store = JournalStore(self.redis, "t" + uuid.uuid4().hex[:6])
        self.commits = GroupCommit(self.store, self.cache, Limits())
        self.reader = Reader(self.store, self.cache, Limits())
        self.listener = asyncio.create_task(self.cache.run())

    def ref(self, name: str = "j") -> JournalRef:
        return self.store.ref("ns", name)

    async def append(self, ref: JournalRef, entries: list[bytes], known: int = 0,
                     client: str = "", seq: int = 0):
        return await self.commits.append(ref, Append(entries, client, seq, known))

    async def read(self, ref: JournalRef, start: int = 0) -> list[bytes]:
        return [e async for _, _, chunk in self.reader.read(ref, start, -1) for e in chunk]

    async def cached_read(self, ref: JournalRef, start: int = 0) -> list[bytes]:
        """Read until the cache serves it (the subscription is confirmed asynchronously)."""
        for _ in range(1000):  # up to 10 s on a loaded machine; usually a few ms
            hits = self.cache.hits
            out = await self.read(ref, start)
            if self.cache.hits > hits:
                return out
            await asyncio.sleep(0.01)
        raise AssertionError("the cache never served the journal")

    async def close(self) -> None:
        self.listener.cancel()
        await asyncio.gather(self.listener, return_exceptions=True)
        await self.redis.aclose()
        await self.subscriber.aclose()


@pytest.fixture
async def stacks(redis_server) -> AsyncIterator:
    made: list[Stack] = []

    def make(cache_bytes: int = 1 << 24) -> Stack:
        made.append(Stack(redis_server.url, cache_bytes))
        if len(made) > 1:  # replicas share one key prefix, as proxies on one Redis do
            made[-1].store.prefix = made[0].store.prefix
        return made[-1]

    yield make
    for s in made:
        await s.close()


async def wait_until(predicate, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_reads_are_served_from_memory_once_cached(stacks) -> None:
    s = stacks()
    ref = s.ref()
    await s.append(ref, [entry(i) for i in range(5)])
    assert await s.cached_read(ref) == [entry(i) for i in range(5)]
    misses = s.cache.misses
    for start in (0, 3, 5):
        assert await s.read(ref, start) == [entry(i) for i in range(start, 5)]
    assert s.cache.misses == misses


async def test_other_replicas_appends_arrive_by_message(stacks) -> None:
    a, b = stacks(), stacks()
    ref_a, ref_b = a.ref(), b.ref()
    await a.append(ref_a, [entry(0)])
    assert await b.cached_read(ref_b) == [entry(0)]
    await a.append(ref_a, [entry(1), entry(2)], known=1)
    await wait_until(lambda: (w := b.cache.window(ref_b)) is not None and w.end == 3)
    misses = b.cache.misses
    assert await b.read(ref_b) == [entry(0), entry(1), entry(2)]
    assert b.cache.misses == misses


async def test_a_lost_message_drops_the_window(stacks) -> None:
    a, b = stacks(), stacks()
    await a.append(a.ref(), [entry(0)])
    await b.cached_read(b.ref())
    # Simulate a message that never arrived: publish one that starts past the window.
    await a.redis.publish(b.ref().channel, b"5\n" + entry(5))
    await wait_until(lambda: b.cache.window(b.ref()) is None)
    assert await b.read(b.ref()) == [entry(0)]  # Redis is the truth again


async def test_deletion_reaches_every_replica(stacks) -> None:
    a, b = stacks(), stacks()
    await a.append(a.ref(), [entry(0)])
    await b.cached_read(b.ref())
    assert await a.store.delete_journal(a.ref())
    await wait_until(lambda: b.cache.window(b.ref()) is None)
    assert await b.read(b.ref()) == []


async def test_verification_catches_a_window_that_fell_behind(stacks) -> None:
    s = stacks()
    ref = s.ref()
    await s.append(ref, [entry(0)])
    await s.cached_read(ref)
    await s.redis.rpush(ref.log, entry(1))  # written behind the proxy's back: no message
    await wait_until(lambda: s.cache.window(ref) is None, timeout=5)
    assert await s.read(ref) == [entry(0), entry(1)]


async def test_memory_stays_under_the_bound(stacks) -> None:
    budget = 60_000
    s = stacks(cache_bytes=budget)
    refs = [s.ref(f"j{i}") for i in range(6)]
    for ref in refs:
        await s.append(ref, [entry(i, pad=1000) for i in range(20)])  # ~21 kB each
        await s.cached_read(ref)
        assert s.cache.size <= budget
    cached = [r for r in refs if s.cache.window(r) is not None]
    assert cached and cached[-1] == refs[-1] and len(cached) < len(refs)  # LRU went first
    big = s.ref("big")  # one journal larger than the whole budget keeps its newest entries
    await s.append(big, [entry(i, pad=1000) for i in range(200)])
    assert len(await s.cached_read(big, 100)) == 100
    w = s.cache.window(big)
    assert w is not None and w.end == 200 and w.start > 100
    assert s.cache.size <= budget
    assert s.cache.size == sum(len(e) + ENTRY_OVERHEAD for e in w.entries)
    assert await s.read(big, 0) == [entry(i, pad=1000) for i in range(200)]  # Redis for the rest


async def test_concurrent_appends_share_batches_and_stay_exact(stacks) -> None:
    s = stacks()
    ref = s.ref()
    n = 200
    results = await asyncio.gather(*(
        s.append(ref, [entry(i)], client=f"c{i % 20}", seq=i // 20 + 1) for i in range(n)))
    assert s.commits.batches < n  # appends that arrived together went together
    assert sorted(r.first for r in results) == list(range(n))
    stored = await s.read(ref)
    assert sorted(stored) == sorted(entry(i) for i in range(n))
    for r in results:  # each answer carries exactly the entries before its own
        assert r.unseen is not None and len(r.unseen) == r.first


async def test_a_retry_in_the_same_batch_and_a_bad_append_fail_alone(stacks) -> None:
    s = stacks()
    ref = s.ref()
    await s.append(ref, [entry(0)], client="a", seq=1)
    outcomes = await asyncio.gather(
        s.append(ref, [entry(1)], known=1, client="a", seq=2),
        s.append(ref, [entry(1)], known=1, client="a", seq=2),  # the retry, same batch
        s.append(ref, [entry(9)], known=50, client="b", seq=1),  # claims more than exists
        s.append(ref, [entry(2)], known=1, client="c", seq=1),
        return_exceptions=True)
    assert sum(1 for o in outcomes[:2] if not isinstance(o, Exception) and o.duplicate) == 1
    assert outcomes[0].first == outcomes[1].first  # both answers say where it landed
    assert isinstance(outcomes[2], Exception) and "beyond the end" in str(outcomes[2])
    assert sorted(await s.read(ref)) == sorted([entry(0), entry(1), entry(2)])
    assert await s.redis.hget(ref.usage, "c:a") is not None  # the deduplication record
    assert await s.redis.hget(ref.usage, "c:b") is None  # the refused append left none


async def test_a_journal_asked_for_while_the_listener_connects_is_cached(redis_server) -> None:
    """The first read may come while the pub/sub listener is still connecting: its
    subscription must go over the listener's connection, or it is never confirmed."""
    redis, subscriber = connect(redis_server.url), connect_pubsub(redis_server.url)
    cache = JournalCache(redis, 10**6, subscriber=subscriber)
    ref = JournalStore(redis, "t" + uuid.uuid4().hex[:6]).ref("ns", "early")
    listener = asyncio.create_task(cache.run())
    await asyncio.sleep(0)  # the listener has started to connect
    try:
        for _ in range(500):
            if cache.fill_token(ref) is not None:  # asks for the subscription until confirmed
                break
            await asyncio.sleep(0.01)
        assert cache.fill_token(ref) is not None, "the subscription was never confirmed"
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await redis.aclose()
        await subscriber.aclose()


async def test_a_large_batch_reaches_other_replicas_in_pieces_or_as_a_drop(stacks) -> None:
    """A batch of 200 kB is published in messages of 64 kB that another replica's window
    follows exactly; one over 256 kB is announced as a drop, and the next read goes to Redis."""
    a, b = stacks(), stacks()
    ref = a.ref()
    await a.append(ref, [entry(0)])
    await b.cached_read(b.ref())
    medium = [entry(i, pad=2_000) for i in range(1, 101)]  # ~200 kB
    await a.append(ref, medium, known=1)
    await wait_until(lambda: (w := b.cache.window(b.ref())) is not None and w.end == 101)
    misses = b.cache.misses
    assert await b.read(b.ref(), 1) == medium and b.cache.misses == misses  # from memory
    large = [entry(i, pad=3_000) for i in range(101, 201)]  # ~300 kB
    await a.append(ref, large, known=101)
    await wait_until(lambda: b.cache.window(b.ref()) is None)
    assert await b.read(b.ref(), 0) == [entry(0), *medium, *large]
