"""Bounded work per Lua call: a script copies no more than the byte budget it returns, so a
`known_position=0` append or a read from 0 against a journal of large entries costs Redis about
one chunk of memory, not the journal (measured on a Redis of its own, with maxmemory)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import redis

from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from storage_proxy.process.embedded_redis import RedisProcess
from storage_proxy.redis.client import connect
from storage_proxy.redis.store import Append, JournalStore
from storage_proxy.testing import ProxyProcess
from tests.conftest import RawClient, issue_token

BIG = json.dumps({"op_code": 10, "pad": "x" * 1_000_000}).encode()  # about 1 MB
N = 60
BOUND = 8 << 20  # Redis memory one call may take (the chunk budget is 1 MiB)


@pytest.fixture(scope="module")
def big_journal(tmp_path_factory) -> Iterator[tuple[RedisProcess, RawClient]]:
    server = RedisProcess(tmp_path_factory.mktemp("luawork"), appendonly=False,
                          extra_args=("--maxmemory", "1gb", "--maxmemory-policy",
                                      "noeviction"))
    server.start()
    proxy = ProxyProcess(server.url, data_dir=tmp_path_factory.mktemp("luawork-proxy"))
    proxy.start()
    raw = RawClient(proxy.endpoint, issue_token(server.url, "big"))
    for i in range(N):  # one entry per call: no call of the setup needs much memory
        raw.AppendLogs(pb.AppendLogsRequest(journal="big", entries=[BIG], client_id="setup",
                                            sequence=i + 1, known_position=i))
    yield server, raw
    raw.channel.close()
    proxy.stop()
    server.stop()


def peak_over(server: RedisProcess, call) -> int:
    """How far Redis' peak memory rose above its use before `call`."""
    with redis.Redis.from_url(server.url) as r:
        before = int(r.info("memory")["used_memory"])
        assert int(r.info("memory")["used_memory_peak"]) < before + BOUND, "a setup call peaked"
        call()
        return int(r.info("memory")["used_memory_peak"]) - before


def test_an_append_from_position_0_copies_one_chunk_not_the_journal(big_journal) -> None:
    server, raw = big_journal
    answers = []
    rose = peak_over(server, lambda: answers.append(raw.AppendLogs(pb.AppendLogsRequest(
        journal="big", entries=[b'{"op_code": 10}'], client_id="late", sequence=1,
        known_position=0))))
    print(f"\nknown_position=0 append against {N} x 1 MB: Redis peak +{rose / 2**20:.1f} MiB")
    assert rose < BOUND
    done = answers[0]
    assert done.first_position == N and not done.unseen_complete  # the rest: ReadLogs


def test_a_read_from_0_copies_one_chunk_per_call(big_journal) -> None:
    server, raw = big_journal
    got: list[list[bytes]] = []
    rose = peak_over(server, lambda: got.extend(
        list(c.entries) for c in raw.ReadLogs(pb.ReadLogsRequest(journal="big"))))
    assert rose < BOUND
    assert sum(map(len, got)) >= N and got[0] == [BIG]
    assert max(sum(map(len, chunk)) for chunk in got) <= 1 << 20  # chunks of at most 1 MiB


async def test_journals_written_before_the_lens_list_read_back_whole(redis_server) -> None:
    """Entries pushed before lens existed (an older proxy) and after: every read and every
    gap is exact across the boundary."""
    r = connect(redis_server.url)
    store = JournalStore(r, "t" + uuid.uuid4().hex[:6])
    ref = store.ref("ns", "legacy")
    old = [json.dumps({"op_code": 10, "i": i}).encode() for i in range(30)]
    try:
        await r.rpush(ref.log, *old)
        new = [json.dumps({"op_code": 10, "i": i}).encode() for i in range(30, 60)]
        done = await store.append_batch(ref, [Append(new, "c", 1, 0)], 0, 1000, 1 << 20)
        assert done.outcomes == [("ok", 30)] and done.gap_from == 30 and done.gap == []
        assert await r.llen(ref.lens) == 30
        for start, budget in ((0, 1 << 20), (25, 1 << 20), (5, 100), (31, 1 << 20)):
            out, position = [], start
            while position < 60:
                _, chunk = await store.read_chunk(ref, position, -1, budget)
                out += chunk
                position += len(chunk)
            assert out == (old + new)[start:], (start, budget)
        later = await store.append_batch(ref, [Append([b'{"op_code": 10}'], "d", 1, 40)],
                                         40, 1000, 1 << 20)
        assert later.gap_from == 40 and later.gap == new[10:]
    finally:
        await r.aclose()
