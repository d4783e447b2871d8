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
    store = JournalStore(r, "t" + uuid.uuid4().hex[:6])
    store.keep_legacy_records(False)  # as once presence.py has seen only proxies like this one
    yield store
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


async def test_while_an_older_replica_serves_records_are_kept_where_it_reads_them(store) -> None:
    """A rolling upgrade: a retry that moves from this proxy back to an older replica (which
    reads only the per-client keys) must be recognised there too."""
    ref = store.ref("ns", "mixed")
    store.keep_legacy_records(True)
    await store.append_batch(ref, [Append([entry(0)], "c", 1, 0)], 0, 1000, 1 << 20)
    assert await store.redis.get(ref.client_prefix + "c") == b"1:0"
    assert 0 < await store.redis.ttl(ref.client_prefix + "c") <= 3600
    store.keep_legacy_records(False)  # the last older replica has gone
    await store.append_batch(ref, [Append([entry(1)], "d", 1, 1)], 1, 1000, 1 << 20)
    assert await store.redis.exists(ref.client_prefix + "d") == 0


def test_presence_tells_an_older_replica_by_what_it_says() -> None:
    from storage_proxy import presence

    ours = presence.member(13000, "token")
    older = "pid 7 on host, port 13000, version 0.1.0, auth token"
    assert not presence.older_layout([ours, ours])
    assert presence.older_layout([ours, older])


def test_a_proxy_that_sees_an_older_replica_keeps_records_for_it(own_redis, tmp_path) -> None:
    """Through a real proxy: an older replica's presence record (no layout in it) makes the
    proxy write each client's record where that replica reads it."""
    import time

    from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
    from storage_proxy.redis.keys import JournalRef, proxies
    from storage_proxy.testing import ProxyProcess
    from tests.conftest import RawClient, issue_token

    prefix = "p" + uuid.uuid4().hex[:6]
    with redis.Redis.from_url(own_redis.url) as r:
        r.zadd(proxies(prefix), {"pid 7 on old-host, port 13000, version 0.1.0, auth token":
                                 time.time()})
    with ProxyProcess(own_redis.url, data_dir=tmp_path, key_prefix=prefix,
                      extra_args=("--workers", "1")) as proxy:
        raw = RawClient(proxy.endpoint, issue_token(own_redis.url, "mixed", prefix=prefix))
        raw.AppendLogs(pb.AppendLogsRequest(journal="j", entries=[entry(0)], client_id="c",
                                            sequence=1, known_position=0))
        raw.channel.close()
    with redis.Redis.from_url(own_redis.url) as r:
        assert r.get(JournalRef(prefix, "mixed", "j").client_prefix + "c") == b"1:0"
