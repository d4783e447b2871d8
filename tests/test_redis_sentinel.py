"""The proxy behind Redis Sentinel (a master, a replica, one sentinel): a multi-process study
keeps going while the master is killed and the sentinel promotes the replica, and ends exact;
a pub/sub client made by connect_pubsub follows the failover too."""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing

import optuna
import pytest
from optuna.trial import TrialState

from optuna_grpc_storage import GrpcJournalStorage
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from storage_proxy.redis.client import connect_pubsub
from storage_proxy.redis.store import JournalRef
from storage_proxy.testing import ProxyProcess
from tests import workers
from tests.conftest import RawClient
from tests.ops_helpers import SERVING, health, sample, scrape, wait_for
from tests.redis_topologies import LocalSentinel


@pytest.fixture
def sentinel(tmp_path):
    s = LocalSentinel(tmp_path / "sentinel")
    s.start()
    yield s
    s.stop()


def published(url: str, endpoint: str, token: str) -> str:
    """Subscribe through connect_pubsub, append one entry through the proxy, return what the
    subscriber heard."""

    async def go() -> str:
        client = connect_pubsub(url)
        pubsub = client.pubsub()
        channel = JournalRef("ogs", "sentinel", "news").channel
        await pubsub.subscribe(channel)
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        raw = RawClient(endpoint, token)
        await asyncio.get_running_loop().run_in_executor(None, lambda: raw.AppendLogs(
            pb.AppendLogsRequest(journal="news", entries=[b'{"op_code": 10}'])))
        raw.channel.close()
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=10)
        await pubsub.aclose()
        await client.aclose()
        assert message is not None, "nothing published"
        return message["data"].decode()

    return asyncio.run(go())


def test_a_study_follows_a_sentinel_failover(sentinel, tmp_path) -> None:
    with ProxyProcess(sentinel.url, data_dir=tmp_path / "proxy") as proxy:
        assert "sentinel service 'ogsmaster'" in proxy.log_tail()
        token = proxy.issue_token("sentinel")  # `token issue --redis-url redis+sentinel://...`
        assert published(sentinel.url, proxy.endpoint, token) == '0\n{"op_code": 10}'
        storage = GrpcJournalStorage(proxy.endpoint, token=token)
        optuna.create_study(study_name="s", storage=storage)
        watcher = GrpcJournalStorage(proxy.endpoint, token=token, read_staleness=0)

        def trials() -> int:
            return len(optuna.load_study(study_name="s", storage=watcher).trials)

        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:
            runs = [pool.submit(workers.optimize, storage, "s", 40) for _ in range(2)]
            wait_for(lambda: trials() >= 15, timeout=120, what="trials before the failover")
            old_master = sentinel.master_port()
            sentinel.master.kill()  # a crash; the sentinel promotes the replica
            sentinel.wait_for_failover()
            assert sentinel.master_port() != old_master
            assert [r.result(timeout=240) for r in runs] == [40, 40]

        final = optuna.load_study(study_name="s", storage=watcher).trials
        assert [t.number for t in final] == list(range(80))
        assert all(t.state == TrialState.COMPLETE for t in final)
        wait_for(lambda: health(proxy.endpoint) == SERVING, what="SERVING on the new master")
        errors = sum(v for (name, _), v in scrape(proxy.metrics_url).items()
                     if name == "storage_proxy_redis_errors_total")
        assert errors > 0  # the outage was seen and counted, and the clients rode it out
        # the minimum over the server processes: each notices the new master on its own check
        wait_for(lambda: sample(scrape(proxy.metrics_url), "storage_proxy_redis_up") == 1,
                 what="every server process sees the new master")
        # Pub/sub reaches the new master.
        assert published(sentinel.url, proxy.endpoint, token) == '1\n{"op_code": 10}'
        assert proxy.proc is not None and proxy.proc.poll() is None
