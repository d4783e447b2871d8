"""Quotas per namespace, on a real Redis with maxmemory and a real proxy: one user filling their
quota leaves the others room, every refusal names the quota and writes nothing, and the
operator's and the user's commands show and change them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import grpc
import optuna
import pytest
import redis
from optuna.trial import TrialState

from optuna_grpc_storage import GrpcJournalStorage
from optuna_grpc_storage.protocol.quota import QuotaStatus
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from storage_proxy.process.embedded_redis import RedisProcess
from storage_proxy.quotas import QuotaSettings
from storage_proxy.redis.client import connect
from storage_proxy.redis.store import Append, JournalStore
from storage_proxy.testing import ProxyProcess, proxy_command
from tests import workers
from tests.conftest import RawClient, issue_token

MAXMEMORY = 64 << 20  # the default quota is a quarter: 16 MiB per user
ENTRY = json.dumps({"op_code": 10, "pad": "x" * 1_000_000}).encode()  # about 1 MB


@pytest.fixture(scope="module")
def full_stack(tmp_path_factory) -> Iterator[tuple[RedisProcess, ProxyProcess]]:
    """Redis with maxmemory (noeviction, as deploy/ configures it), a proxy with defaults."""
    server = RedisProcess(tmp_path_factory.mktemp("maxmem"), appendonly=False,
                          extra_args=("--maxmemory", str(MAXMEMORY),
                                      "--maxmemory-policy", "noeviction"))
    server.start()
    proxy = ProxyProcess(server.url, data_dir=tmp_path_factory.mktemp("maxmem-proxy"),
                         extra_args=("--auth-cache-seconds", "0.5"))
    proxy.start()
    yield server, proxy
    proxy.stop()
    server.stop()


def client(stack: tuple[RedisProcess, ProxyProcess], user: str) -> RawClient:
    server, proxy = stack
    return RawClient(proxy.endpoint, issue_token(server.url, user))


def used_memory(server: RedisProcess) -> int:
    with redis.Redis.from_url(server.url) as r:
        return int(r.info("memory")["used_memory"])


def fill(raw: RawClient) -> grpc.RpcError:
    """1 MB entries and 8 MB snapshots into new journals until the proxy refuses, then
    smaller and smaller entries until it refuses those too: a user who keeps writing."""
    refused = None
    for j in range(100):
        journal = f"fill{j}"
        try:
            for known in range(4):  # 4 MB, in batches within the 1 MiB limit
                raw.AppendLogs(pb.AppendLogsRequest(journal=journal, entries=[ENTRY],
                                                    known_position=known))
            data = os.urandom(8 << 20)
            chunks = [pb.SnapshotChunk(journal=journal, position=4, data=data[:1 << 20])]
            chunks += [pb.SnapshotChunk(data=data[i : i + (1 << 20)])
                       for i in range(1 << 20, len(data), 1 << 20)]
            raw.SaveSnapshot(iter(chunks))
        except grpc.RpcError as e:
            refused = e
            break
    assert refused is not None, "100 journals of 12 MB each were accepted"
    for pad in (1_000_000, 100_000, 10_000, 1_000):
        entry = json.dumps({"op_code": 10, "pad": "x" * pad}).encode()
        for _ in range(10_000):
            try:
                raw.AppendLogs(pb.AppendLogsRequest(journal="fill0", entries=[entry]))
            except grpc.RpcError:
                break
    return refused


def test_a_user_at_their_quota_leaves_the_others_room(full_stack) -> None:
    server, proxy = full_stack
    quiet_tokens = [issue_token(server.url, "quiet"), issue_token(server.url, "quiet2")]
    noisy = client(full_stack, "noisy")
    refused = fill(noisy)
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "quota 'bytes' of user 'noisy'" in refused.details(), refused.details()
    assert "limit 16.0 MiB" in refused.details() and "in use" in refused.details()
    assert used_memory(server) < MAXMEMORY * 3 // 4  # the proxy refused long before Redis
    # Nothing of a refused write is there, and the noisy user stays refused.
    listed = noisy.ListJournals(pb.ListJournalsRequest()).journals
    assert sum(j.bytes for j in listed) <= 16 << 20
    with pytest.raises(grpc.RpcError) as again:
        noisy.AppendLogs(pb.AppendLogsRequest(journal="fill0", entries=[ENTRY]))
    assert again.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert noisy.ListJournals(pb.ListJournalsRequest()).journals == listed

    # Another user keeps creating studies and running trials.
    storage = GrpcJournalStorage(proxy.endpoint, token=quiet_tokens[0])
    for k in range(3):
        study = optuna.create_study(study_name=f"s{k}", storage=storage)
        study.optimize(workers.quadratic, n_trials=20)
        assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 20
    quiet = GrpcJournalStorage(proxy.endpoint, token=quiet_tokens[1], journal="other")
    optuna.create_study(study_name="t", storage=quiet).optimize(workers.quadratic, n_trials=5)


def test_the_journal_quota_and_its_refusal(full_stack) -> None:
    server, _ = full_stack
    run = [sys.executable, "-m", "storage_proxy", "quota", "set", "--user", "few",
           "--journals", "2", "--redis-url", server.url]
    assert subprocess.run(run, capture_output=True, text=True, timeout=60).returncode == 0
    raw = client(full_stack, "few")
    for name in ("a", "b"):
        raw.AppendLogs(pb.AppendLogsRequest(journal=name, entries=[b'{"op_code": 10}']))
    with pytest.raises(grpc.RpcError) as e:
        raw.AppendLogs(pb.AppendLogsRequest(journal="c", entries=[b'{"op_code": 10}']))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "quota 'journals' of user 'few' reached: limit 2, in use 2" in e.value.details()
    assert [j.name for j in raw.ListJournals(pb.ListJournalsRequest()).journals] == ["a", "b"]
    # Deleting a journal gives its place and its bytes back.
    before = QuotaStatus.from_proto(raw.WhoAmI(pb.WhoAmIRequest()).quota)
    assert before is not None and before.journals == 2 and before.bytes_used > 0
    raw.DeleteJournal(pb.DeleteJournalRequest(journal="a"))
    after = QuotaStatus.from_proto(raw.WhoAmI(pb.WhoAmIRequest()).quota)
    assert after is not None and after.journals == 1 and after.bytes_used < before.bytes_used
    raw.AppendLogs(pb.AppendLogsRequest(journal="c", entries=[b'{"op_code": 10}']))


def test_entry_and_snapshot_quotas(full_stack) -> None:
    server, _ = full_stack
    run = [sys.executable, "-m", "storage_proxy", "quota", "set", "--user", "small",
           "--entry-bytes", "1KiB", "--snapshot-bytes", "3KiB", "--redis-url", server.url]
    assert subprocess.run(run, capture_output=True, text=True, timeout=60).returncode == 0
    raw = client(full_stack, "small")
    raw.AppendLogs(pb.AppendLogsRequest(journal="j", entries=[b'{"op_code": 10}']))
    with pytest.raises(grpc.RpcError) as e:
        raw.AppendLogs(pb.AppendLogsRequest(
            journal="j", entries=[json.dumps({"op_code": 10, "p": "x" * 2000}).encode()]))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "quota 'entry_bytes' of user 'small' is 1024 bytes" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        raw.SaveSnapshot(iter([pb.SnapshotChunk(journal="j", position=1, data=b"s" * 4000)]))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "3072" in e.value.details()
    assert list(raw.LoadSnapshot(pb.LoadSnapshotRequest(journal="j"))) == []
    assert [c.entries for c in raw.ReadLogs(pb.ReadLogsRequest(journal="j"))] == [
        [b'{"op_code": 10}']]


def test_operator_and_user_see_use_and_limits(full_stack) -> None:
    server, proxy = full_stack
    token = issue_token(server.url, "seen")
    raw = RawClient(proxy.endpoint, token)
    raw.AppendLogs(pb.AppendLogsRequest(journal="mine", entries=[ENTRY]))
    me = QuotaStatus.from_proto(raw.WhoAmI(pb.WhoAmIRequest()).quota)
    assert me is not None and me.limits.bytes == MAXMEMORY // 4 and me.journals == 1
    assert me.bytes_used >= len(ENTRY) and me.limits.journals == 1000
    shown = subprocess.run(proxy_command("quota", "show", "--user", "seen", "--redis-url",
                                         server.url), capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "1/4 of Redis maxmemory 64.0 MiB" in shown.stdout
    assert "seen" in shown.stdout and "/ 16.0 MiB" in shown.stdout and "1 / 1000" in shown.stdout
    env = {**os.environ, "OPTUNA_GRPC_STORAGE_ENDPOINT": proxy.endpoint,
           "OPTUNA_GRPC_STORAGE_TOKEN": token}
    mine = subprocess.run([sys.executable, "-m", "optuna_grpc_storage.tools.cli", "journals"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert mine.returncode == 0, mine.stderr
    assert "mine" in mine.stdout and "quota:" in mine.stdout and "of 16.0 MiB" in mine.stdout
    assert "1 of 1000 journals" in mine.stdout


async def test_a_batch_that_only_partly_fits_applies_what_fits(redis_server) -> None:
    """Appends of several clients in one batch: those that fit the quota go in, in order,
    the others are refused, and a retry of an applied one is answered as applied."""
    client = connect(redis_server.url)
    store = JournalStore(client, "t" + uuid.uuid4().hex[:6])
    await QuotaSettings(client, store.prefix).set("tight", {"bytes": 200_000})
    ref = store.ref("tight", "j")
    big = json.dumps({"op_code": 10, "pad": "x" * 60_000}).encode()
    try:
        first = await store.append_batch(ref, [Append([big], "a", 1, 0)], 0, 10, 1 << 20)
        assert first.outcomes == [("ok", 0)]
        done = await store.append_batch(ref, [
            Append([big], "a", 1, 0),  # a retry of the applied one: no quota needed
            Append([big], "b", 1, 1), Append([big], "c", 1, 1), Append([big], "d", 1, 1),
        ], 1, 10, 1 << 20)
        assert [s for s, _ in done.outcomes] == ["dup", "ok", "ok", "quota"]
        assert done.refusal is not None and "quota 'bytes' of user 'tight'" in \
            done.refusal.message
        assert await client.llen(ref.log) == 3
        assert await client.hget(ref.usage, "c:d") is None  # nothing of it was written
        status = await QuotaSettings(client, store.prefix).status("tight")
        assert status.bytes_used <= 200_000
    finally:
        await client.aclose()
