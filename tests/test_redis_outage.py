"""Redis goes away under a running proxy: calls fail with UNAVAILABLE, health says NOT_SERVING,
and everything works again, with nothing lost, once Redis is back."""

from __future__ import annotations

import threading
import time

import grpc
import optuna
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from optuna_grpc_storage import GrpcJournalStorage
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from storage_proxy.process.embedded_redis import RedisProcess
from storage_proxy.testing import ProxyProcess
from tests import workers
from tests.conftest import RawClient, issue_token


def health(endpoint: str) -> int:
    with grpc.insecure_channel(endpoint) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        time.sleep(0.1)


@pytest.fixture
def own_stack(tmp_path):
    redis = RedisProcess(tmp_path / "redis", appendfsync="always")
    redis.start()
    proxy = ProxyProcess(redis.url, data_dir=tmp_path / "proxy")
    proxy.start()
    yield redis, proxy
    proxy.stop()
    redis.stop()


def test_redis_restart_under_a_running_proxy(own_stack) -> None:
    redis, proxy = own_stack
    token = issue_token(redis.url, "alice")
    storage = GrpcJournalStorage(proxy.endpoint, token=token)
    study = optuna.create_study(study_name="s", storage=storage)
    study.optimize(workers.quadratic, n_trials=10)
    raw = RawClient(proxy.endpoint, token)
    SERVING = health_pb2.HealthCheckResponse.SERVING

    redis.kill()  # a crash: only the AOF survives
    with pytest.raises(grpc.RpcError) as e:
        raw.AppendLogs(pb.AppendLogsRequest(journal="default", entries=[
            b'{"op_code": 9, "worker_id": "w", "trial_id": 0, "system_attr": {"a": 1}}']))
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "Redis" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        list(raw.ReadLogs(pb.ReadLogsRequest(journal="default")))
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    wait_for(lambda: health(proxy.endpoint) == health_pb2.HealthCheckResponse.NOT_SERVING)

    # A client in the middle of optimize() retries through the outage.
    done = threading.Event()
    worker = threading.Thread(target=lambda: (study.optimize(workers.quadratic, n_trials=5),
                                              done.set()))
    worker.start()
    time.sleep(1.5)
    assert not done.is_set()
    redis.start()
    wait_for(lambda: health(proxy.endpoint) == SERVING)
    worker.join(timeout=60)
    assert done.is_set()

    fresh = optuna.load_study(study_name="s", storage=GrpcJournalStorage(proxy.endpoint,
                                                                         token=token))
    assert [t.number for t in fresh.trials] == list(range(15))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in fresh.trials)
    assert proxy.proc is not None and proxy.proc.poll() is None  # the proxy never died
