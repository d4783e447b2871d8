"""The proxy on a real local Redis Cluster (3 masters joined with `redis-cli --cluster create`):
a multi-process study ends exact, journals of different users land on different shards, every
key of a journal lives on one shard, appends stay atomic, pub/sub hears every shard, and health
follows the cluster."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import multiprocessing
import subprocess
import threading

import grpc
import optuna
import pytest
from optuna.trial import TrialState

from optuna_grpc_storage import GrpcJournalBackend, GrpcJournalStorage
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from storage_proxy.redis.client import connect_pubsub
from storage_proxy.redis.store import JournalRef
from storage_proxy.testing import ProxyProcess, proxy_command
from tests import workers
from tests.conftest import RawClient
from tests.ops_helpers import NOT_SERVING, SERVING, health, sample, scrape, wait_for
from tests.redis_topologies import LocalRedisCluster

# Slots come from CRC16 of the journal's hash tag; names that differ in one trailing character
# (user0, user1...) tend to share a slot range, real names spread.
USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalRedisCluster(tmp_path_factory.mktemp("cluster"), masters=3)
    c.start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def cluster_proxy(cluster, tmp_path_factory):
    with ProxyProcess(cluster.url, data_dir=tmp_path_factory.mktemp("cproxy"),
                      extra_args=("--auth-cache-seconds", "0.5")) as p:
        yield p


def test_a_multiprocess_study_on_the_cluster_is_exact(cluster_proxy) -> None:
    token = cluster_proxy.issue_token("clusterstudy")  # `token issue --redis-url redis+cluster`
    storage = GrpcJournalStorage(cluster_proxy.endpoint, token=token)
    optuna.create_study(study_name="c", storage=storage)
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(4, mp_context=ctx) as pool:
        ran = list(pool.map(workers.optimize, [storage] * 4, ["c"] * 4, [25] * 4))
    assert ran == [25, 25, 25, 25]
    trials = optuna.load_study(study_name="c", storage=GrpcJournalStorage(
        cluster_proxy.endpoint, token=token)).trials
    assert [t.number for t in trials] == list(range(100))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t._trial_id for t in trials}) == 100


def test_users_land_on_different_shards_and_a_journal_on_one(cluster, cluster_proxy) -> None:
    users = USERS
    for user in users:
        backend = GrpcJournalBackend(cluster_proxy.endpoint,
                                     token=cluster_proxy.issue_token(user), journal="main")
        backend.append_logs([{"op_code": 0, "worker_id": "w", "study_name": user,
                             "directions": [1]}])
        backend.save_snapshot_at(b"snapshot", 1)
        backend.connection.call("heartbeat", lambda stub, b=backend: stub.RecordHeartbeat(
            pb.RecordHeartbeatRequest(journal="main", trial_ids=[1]),
            metadata=b.connection.metadata, timeout=10))
    by_port = cluster.keys_by_port("ogs:j:*")
    shard_of_user = {}
    for user in users:
        ref = JournalRef("ogs", user, "main")
        expected = cluster.port_of_key(ref.log)  # CLUSTER KEYSLOT + CLUSTER SLOTS
        for key in (ref.log, ref.lens, ref.usage, ref.snapshot, ref.heartbeats):
            assert key in by_port[expected], key  # every key of the journal on its one shard
            assert cluster.port_of_key(key) == expected
        shard_of_user[user] = expected
    assert len(set(shard_of_user.values())) == 3  # these 9 users spread over all 3 masters
    # The token records share the {auth} slot, so issue/revoke are single-slot operations.
    auth_ports = {cluster.port_of_key(k) for keys in cluster.keys_by_port("ogs:{auth}*").values()
                  for k in keys}
    assert len(auth_ports) == 1


def test_appends_stay_atomic_on_their_shard(cluster, cluster_proxy) -> None:
    token = cluster_proxy.issue_token("atomic")
    batches: dict[int, list[bytes]] = {}
    lock = threading.Lock()

    def writer(w: int) -> None:
        raw = RawClient(cluster_proxy.endpoint, token)
        for b in range(10):
            batch = [json.dumps({"op_code": 10, "w": w, "b": b, "i": i}).encode()
                     for i in range(50)]
            done = raw.AppendLogs(pb.AppendLogsRequest(journal="hot", entries=batch,
                                                       client_id=f"w{w}", sequence=b + 1))
            with lock:
                batches[done.first_position] = batch
        raw.channel.close()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    raw = RawClient(cluster_proxy.endpoint, token)
    log = [e for c in raw.ReadLogs(pb.ReadLogsRequest(journal="hot")) for e in c.entries]
    raw.channel.close()
    assert len(log) == 6 * 10 * 50 and len(batches) == 60
    for first, batch in batches.items():  # each batch contiguous, at its acknowledged place
        assert log[first : first + 50] == batch
    ref = JournalRef("ogs", "atomic", "hot")
    holders = [port for port, keys in cluster.keys_by_port("ogs:j:{atomic/*").items() if keys]
    assert holders == [cluster.port_of_key(ref.log)]


def test_journal_operations_work_on_the_cluster(cluster_proxy) -> None:
    token = cluster_proxy.issue_token("ops")
    raw = RawClient(cluster_proxy.endpoint, token)
    for name in ("a", "b", "c"):
        raw.AppendLogs(pb.AppendLogsRequest(journal=name, entries=[b'{"op_code": 10}'] * 3))
    listed = raw.ListJournals(pb.ListJournalsRequest()).journals
    assert [(j.name, j.length) for j in listed] == [("a", 3), ("b", 3), ("c", 3)]
    assert raw.DeleteJournal(pb.DeleteJournalRequest(journal="b")).deleted
    assert [j.name for j in raw.ListJournals(pb.ListJournalsRequest()).journals] == ["a", "c"]
    beats = raw.GetHeartbeats(pb.GetHeartbeatsRequest(journal="a", trial_ids=[]))
    assert beats.server_time_ms > 0  # TIME is keyless: any node answers
    raw.channel.close()
    listed = subprocess.run(proxy_command("token", "list", "--redis-url", cluster_proxy.redis_url),
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "ops" in listed.stdout
    revoked = subprocess.run(proxy_command("token", "revoke", "--user", "ops", "--redis-url",
                                           cluster_proxy.redis_url),
                             capture_output=True, text=True, timeout=60)
    assert revoked.returncode == 0
    wait_for(lambda: _refused(cluster_proxy.endpoint, token), what="revocation")


def _refused(endpoint: str, token: str) -> bool:
    raw = RawClient(endpoint, token)
    try:
        raw.WhoAmI(pb.WhoAmIRequest())
        return False
    except grpc.RpcError as e:
        return e.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        raw.channel.close()


def test_one_quota_holds_for_a_users_journals_on_every_shard(cluster, cluster_proxy) -> None:
    """The journals of one user live on different shards; their bytes still add up to one
    quota (each journal reserves from the user's counter, on the user's own shard)."""
    user = "quotauser"
    journals = [f"q{i}" for i in range(12)]
    assert len({cluster.port_of_key(JournalRef("ogs", user, j).log) for j in journals}) == 3
    set_quota = subprocess.run(proxy_command(
        "quota", "set", "--user", user, "--bytes", "1MiB", "--redis-url", cluster.url),
        capture_output=True, text=True, timeout=60)
    assert set_quota.returncode == 0, set_quota.stderr
    raw = RawClient(cluster_proxy.endpoint, cluster_proxy.issue_token(user))
    entry = json.dumps({"op_code": 10, "pad": "x" * 100_000}).encode()
    stored, refused = 0, None
    for i in range(30):
        try:
            raw.AppendLogs(pb.AppendLogsRequest(journal=journals[i % 12], entries=[entry]))
            stored += 1
        except grpc.RpcError as e:
            refused = e
            break
    assert refused is not None and refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "quota 'bytes'" in refused.details()
    assert 5 <= stored <= 10  # 1 MiB of 100 kB entries, less what the reserves hold back
    listed = raw.ListJournals(pb.ListJournalsRequest()).journals
    assert sum(j.bytes for j in listed) <= 1 << 20
    raw.channel.close()


def test_pubsub_on_one_node_hears_appends_on_every_shard(cluster, cluster_proxy) -> None:
    users = USERS[:6]
    shards = {cluster.port_of_key(JournalRef("ogs", u, "news").log) for u in users}
    assert len(shards) == 3
    tokens = [cluster_proxy.issue_token(u) for u in users]

    async def listen() -> list[tuple[str, str]]:
        client = connect_pubsub(cluster.url)
        pubsub = client.pubsub()
        await pubsub.psubscribe("ogs:j:*:appended")
        await pubsub.get_message(timeout=1)  # the psubscribe confirmation
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, append_news, tokens)
        heard = []
        while len(heard) < len(users):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=10)
            assert message is not None, f"heard only {heard}"
            heard.append((message["channel"].decode(), message["data"].decode()))
        await pubsub.aclose()
        await client.aclose()
        return heard

    def append_news(tokens: list[str]) -> None:
        for t in tokens:
            raw = RawClient(cluster_proxy.endpoint, t)
            raw.AppendLogs(pb.AppendLogsRequest(journal="news", entries=[b'{"op_code": 10}']))
            raw.channel.close()

    heard = asyncio.run(listen())
    assert sorted(heard) == sorted((JournalRef("ogs", u, "news").channel, '0\n{"op_code": 10}')
                                   for u in users)


def test_health_follows_the_cluster(cluster, cluster_proxy) -> None:
    """Last in this module: it takes one master down and brings it back."""
    assert health(cluster_proxy.endpoint) == SERVING
    node = cluster.nodes[0]  # the first seed node of the URL
    node.kill()
    wait_for(lambda: health(cluster_proxy.endpoint) == NOT_SERVING, what="NOT_SERVING")
    assert sample(scrape(cluster_proxy.metrics_url), "storage_proxy_redis_up") == 0
    assert asyncio.run(_pubsub_ping(cluster.url))  # connect_pubsub moves on to another node
    node.start()  # same port and nodes.conf: it rejoins with its slots
    wait_for(cluster._ready, what="the cluster to heal")
    wait_for(lambda: health(cluster_proxy.endpoint) == SERVING, what="SERVING again")
    token = cluster_proxy.issue_token("afterheal")
    backend = GrpcJournalBackend(cluster_proxy.endpoint, token=token)
    backend.append_logs([{"op_code": 10}])
    assert backend.read_logs(0) == [{"op_code": 10}]


async def _pubsub_ping(url: str) -> bool:
    client = connect_pubsub(url)
    try:
        return bool(await client.ping())
    finally:
        await client.aclose()
