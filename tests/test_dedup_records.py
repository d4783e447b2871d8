"""The deduplication records of lua/append.lua on a Redis of its own: they ride in the
journal's usage hash, so a batch costs the same few Redis commands however many clients it
carries; the records nobody used for the dedup window are swept and their cost given back;
a record an older proxy kept under its own key still turns a retry into a duplicate."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from storage_proxy.process.embedded_redis import RedisProcess
from storage_proxy.redis import store as store_module
from storage_proxy.redis.client import connect
from storage_proxy.redis.store import Append, JournalStore

CLIENT_COST = 64  # lua/append.lua: what a client's first record is charged, plus its id


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path_factory.mktemp("dedup"), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def store(own_redis) -> AsyncIterator[JournalStore]:
    r = connect(own_redis.url)
    yield JournalStore(r, "t" + uuid.uuid4().hex[:6])
    await r.aclose()


def entry(i: int) -> bytes:
    return json.dumps({"op_code": 10, "i": i}).encode()


def commands(url: str) -> dict[str, int]:
    """Commands Redis has executed, those run inside Lua included (leaving out INFO and the
    HELLO and CLIENT SETINFO of the connection that asks)."""
    with redis.Redis.from_url(url) as r:
        stats = r.info("commandstats")
    ours = ("cmdstat_info", "cmdstat_hello", "cmdstat_client")
    return {k: v["calls"] for k, v in stats.items() if k not in ours}


async def used(store: JournalStore, ref) -> int:
    return int(await store.redis.hget(ref.usage, "used") or 0)


async def test_a_batch_costs_the_same_commands_for_one_client_or_twenty(store,
                                                                      own_redis) -> None:
    ref = store.ref("ns", "many")
    clients = [f"c{i}" for i in range(20)]
    first = [Append([entry(i)], c, 1, 0) for i, c in enumerate(clients)]
    await store.append_batch(ref, first, 0, 1000, 1 << 20)  # every client has a record now
    per_batch = []
    for n in (1, 20):
        batch = [Append([entry(100 + i)], c, 2 + n, 20) for i, c in enumerate(clients[:n])]
        length = await store.redis.llen(ref.log)
        before = commands(own_redis.url)
        done = await store.append_batch(ref, batch, length, 1000, 1 << 20)
        assert [s for s, _ in done.outcomes] == ["ok"] * n
        after = commands(own_redis.url)
        per_batch.append({k: c - before.get(k, 0) for k, c in after.items()
                          if c > before.get(k, 0)})
    # EVALSHA, LLEN, HMGET, HSET, RPUSH log, RPUSH lens, PUBLISH (before: 9, and a GET and a
    # SET per client)
    assert per_batch[1] == per_batch[0] and sum(per_batch[0].values()) == 7, per_batch


async def test_records_nobody_used_for_the_window_are_swept_and_refunded(
        store, monkeypatch) -> None:
    monkeypatch.setattr(store_module, "DEDUP_SECONDS", 1)
    ref = store.ref("ns", "sweep")
    await store.append_batch(ref, [Append([entry(0)], "idle", 1, 0),
                                   Append([entry(1)], "busy", 1, 0)], 0, 1000, 1 << 20)
    assert await store.redis.hexists(ref.usage, "c:idle")
    await asyncio.sleep(0.6)
    await store.append_batch(ref, [Append([entry(2)], "busy", 2, 2)], 2, 1000, 1 << 20)
    await asyncio.sleep(0.6)  # idle's record is 1.2 s old now, busy's 0.6 s
    before = await used(store, ref)
    done = await store.append_batch(ref, [Append([entry(3)], "other", 1, 3)], 3, 1000, 1 << 20)
    assert done.outcomes == [("ok", 3)]
    assert not await store.redis.hexists(ref.usage, "c:idle")  # swept
    assert await store.redis.hexists(ref.usage, "c:busy")  # used within the window: kept
    cost_of_other = len(entry(3)) + 16 + CLIENT_COST + len("other")
    assert await used(store, ref) == before + cost_of_other - (CLIENT_COST + len("idle"))
    retry = await store.append_batch(ref, [Append([entry(2)], "busy", 2, 2)], 4, 1000, 1 << 20)
    assert retry.outcomes == [("dup", 2)]
    assert await store.redis.llen(ref.log) == 4


async def test_a_record_an_older_proxy_kept_under_its_own_key_is_honoured(store) -> None:
    ref = store.ref("ns", "legacy")
    await store.append_batch(ref, [Append([entry(0)], "seed", 1, 0)], 0, 1000, 1 << 20)
    await store.redis.rpush(ref.log, entry(1))  # what the older proxy appended for "old"
    await store.redis.rpush(ref.lens, len(entry(1)))
    await store.redis.set(ref.client_prefix + "old", "7:1", ex=3600)
    before = await used(store, ref)
    retry = await store.append_batch(ref, [Append([entry(1)], "old", 7, 1)], 2, 1000, 1 << 20)
    assert retry.outcomes == [("dup", 1)]
    assert await store.redis.llen(ref.log) == 2 and await used(store, ref) == before
    later = await store.append_batch(ref, [Append([entry(2)], "old", 8, 2)], 2, 1000, 1 << 20)
    assert later.outcomes == [("ok", 2)]  # not charged as a new client: it had a record
    assert await used(store, ref) == before + len(entry(2)) + 16
    assert (await store.redis.hget(ref.usage, "c:old")).startswith(b"8:2:")


async def test_a_batch_that_applies_nothing_writes_nothing(store) -> None:
    ref = store.ref("ns", "nothing")
    done = await store.append_batch(ref, [Append([entry(0)], "c", 1, 5)], 0, 1000, 1 << 20)
    assert done.outcomes == [("beyond", 0)]
    assert await store.redis.exists(ref.usage, ref.log, ref.lens) == 0
