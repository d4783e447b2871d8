"""Promise 2: workers keep going while proxies are SIGKILLed and restarted or drained with
SIGTERM. Two proxies share one Redis; clients balance over both (gRPC round_robin over
`ipv4:127.0.0.1:P1,127.0.0.1:P2`, as over a Kubernetes headless Service)."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import signal
import threading
import uuid

import grpc
import optuna
import pytest

from optuna_grpc_storage import GrpcJournalStorage
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from optuna_grpc_storage.protocol.v1 import journal_pb2_grpc
from storage_proxy.testing import ProxyProcess
from tests import workers
from tests.conftest import RawClient, issue_token
from tests.faults import assert_study_intact, health, journal
from tests.ops_helpers import SERVING, wait_for
from tests.relay import Relay


def balanced(*proxies: ProxyProcess) -> str:
    return "ipv4:" + ",".join(p.endpoint for p in proxies)


def round_robin(target: str) -> journal_pb2_grpc.JournalServiceStub:
    """A plain stub balancing per call, as the client's channel does (gRPC's own transparent
    retries stay on; ours are not involved)."""
    config = '{"loadBalancingConfig": [{"round_robin": {}}]}'
    channel = grpc.insecure_channel(target, options=[("grpc.service_config", config)])
    return journal_pb2_grpc.JournalServiceStub(channel)


@pytest.fixture
def pair(redis_server, tmp_path):
    """Two proxies on the session Redis, and a token."""
    proxies = [ProxyProcess(redis_server.url, data_dir=tmp_path / f"p{i}",
                            extra_args=("--grace-seconds", "10")) for i in range(2)]
    for p in proxies:
        p.start()
    yield proxies, issue_token(redis_server.url, "pair-" + uuid.uuid4().hex[:8])
    for p in proxies:
        p.kill()


def test_study_survives_proxy_kill_and_drain(pair) -> None:
    """Four worker processes run 100 trials while one proxy is SIGKILLed and restarted and
    the other is drained with SIGTERM and restarted; the study ends with exactly 100
    finished trials and no journal entry twice."""
    (a, b), token = pair
    storage = GrpcJournalStorage(balanced(a, b), token=token, timeout=5, retry_deadline=60)
    optuna.create_study(study_name="s", storage=storage)
    watcher = optuna.load_study(study_name="s", storage=GrpcJournalStorage(
        balanced(a, b), token=token, read_staleness=0, retry_deadline=60))

    def finished() -> int:
        return sum(t.state.is_finished() for t in watcher.get_trials(deepcopy=False))

    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(4, mp_context=ctx) as pool:
        runs = [pool.submit(workers.optimize_slowly, storage, "s", 25, 0.05) for _ in range(4)]
        wait_for(lambda: finished() >= 10, 120, "10 trials before the kill")
        a.kill()  # SIGKILL: in-flight calls die with it
        a.start()  # same port
        wait_for(lambda: finished() >= 40, 120, "40 trials before the drain")
        assert b.stop(sig=signal.SIGTERM) == 0  # drained within its grace period, exit 0
        b.start()
        ran = [r.result(timeout=300) for r in runs]
    assert ran == [25, 25, 25, 25]
    assert finished() == 100
    assert_study_intact(watcher, RawClient(a.endpoint, token), 100)


def test_drain_finishes_in_flight_calls_while_new_calls_go_elsewhere(
    redis_server, tmp_path
) -> None:
    """Proxy A reaches Redis through a relay that the test holds, so a call on A stays in
    flight. A gets SIGTERM: that call still completes once Redis answers, while every new
    call made meanwhile through the balanced address is served, which only B can do."""
    redis_port = int(redis_server.url.rsplit(":", 1)[1])
    link = Relay(("127.0.0.1", redis_port)).start()
    # one server process, so the held call meets the Redis connection the warm-up opened
    a = ProxyProcess(f"redis://{link.endpoint}", data_dir=tmp_path / "a",
                     extra_args=("--grace-seconds", "20", "--workers", "1"))
    b = ProxyProcess(redis_server.url, data_dir=tmp_path / "b")
    a.start()
    b.start()
    try:
        token = issue_token(redis_server.url, "drain-" + uuid.uuid4().hex[:8])
        on_a = RawClient(a.endpoint, token)
        spread = round_robin(balanced(a, b))
        metadata = (("authorization", f"Bearer {token}"),)
        for i in range(4):  # both subchannels connected and used
            spread.AppendLogs(pb.AppendLogsRequest(
                journal="default", entries=[f'{{"op_code":10,"i":{i}}}'.encode()]),
                metadata=metadata, timeout=10)
        big = b'{"op_code":10,"pad":"' + b"x" * 4000 + b'"}'
        outcome: dict[str, object] = {}

        def in_flight() -> None:
            try:
                outcome["response"] = on_a.AppendLogs(pb.AppendLogsRequest(
                    journal="default", entries=[big], client_id="slow", sequence=1))
            except grpc.RpcError as e:
                outcome["error"] = (e.code(), e.details())

        link.stall()
        caller = threading.Thread(target=in_flight)
        caller.start()
        wait_for(lambda: link.held_up > len(big), 10, "the append is on its way to Redis")
        a.send_signal(signal.SIGTERM)
        wait_for(lambda: health(a.endpoint) != SERVING, 10, "A stops taking new calls")
        for i in range(20):  # new calls: A cannot answer them (its Redis is held), B does
            spread.AppendLogs(pb.AppendLogsRequest(
                journal="default", entries=[f'{{"op_code":10,"new":{i}}}'.encode()]),
                metadata=metadata, timeout=5)
        assert a.proc.poll() is None  # still draining
        link.flow()
        caller.join(30)
        assert "error" not in outcome, outcome
        assert not outcome["response"].duplicate
        assert a.wait(30) == 0
        stored = journal(RawClient(b.endpoint, token))
        assert len(stored) == 4 + 20 + 1 and stored.count(big) == 1
    finally:
        a.kill()
        b.stop()
        link.close()
