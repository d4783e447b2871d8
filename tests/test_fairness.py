"""Per-user limits of a server process: Session streams, calls in progress and requests per
second; refusals are RESOURCE_EXHAUSTED with a retry hint, which the client honours (and a
client whose stream is refused goes on with unary calls)."""

from __future__ import annotations

import queue
from collections.abc import Iterator

import grpc
import optuna
import pytest
from optuna.trial import TrialState

from optuna_grpc_storage import GrpcJournalStorage
from optuna_grpc_storage.protocol.errors import RequestError
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from storage_proxy.fairness import Fairness
from storage_proxy.testing import ProxyProcess
from tests import workers
from tests.conftest import RawClient, issue_token
from tests.ops_helpers import sample, scrape

DEFAULT_STREAMS = 256


def own_proxy(redis_server, tmp_path, *args: str) -> ProxyProcess:
    return ProxyProcess(redis_server.url, data_dir=tmp_path,
                        extra_args=("--workers", "1", *args))


@pytest.fixture
def lone_proxy(redis_server, tmp_path) -> Iterator[ProxyProcess]:
    with own_proxy(redis_server, tmp_path) as p:
        yield p


def open_session(raw: RawClient) -> tuple[queue.SimpleQueue, object]:
    """A Session stream that asks one read and then stays open until None is put."""
    requests: queue.SimpleQueue = queue.SimpleQueue()
    requests.put(pb.SessionRequest(read=pb.ReadLogsRequest(journal="j")))
    return requests, raw.stub.Session(iter(requests.get, None), metadata=raw.metadata,
                                      timeout=60)


def retry_after_ms(e: grpc.RpcError) -> int | None:
    found = dict(e.trailing_metadata() or ()).get("retry-after-ms")
    return int(found) if found is not None else None


def test_one_user_cannot_hold_more_streams_than_the_limit(lone_proxy, redis_server) -> None:
    raw = RawClient(lone_proxy.endpoint, issue_token(redis_server.url, "streamer"))
    sessions = [open_session(raw) for _ in range(300)]  # one connection, as in the finding
    served, refused = [], []
    for requests, call in sessions:
        try:
            assert next(call).last
            served.append((requests, call))
        except grpc.RpcError as e:
            refused.append(e)
    assert len(served) == DEFAULT_STREAMS and len(refused) == 300 - DEFAULT_STREAMS
    for e in refused:
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.details()
        assert "--max-user-streams" in e.details() and retry_after_ms(e) is not None
    # Another user is served meanwhile, and a stream closed makes room for a new one.
    other = RawClient(lone_proxy.endpoint, issue_token(redis_server.url, "bystander"))
    requests, call = open_session(other)
    assert next(call).last
    requests.put(None)
    for requests, _ in sessions:
        requests.put(None)
    for _, call in served:
        assert list(call) == []  # ended by the client, normally
    requests, call = open_session(raw)
    assert next(call).last
    requests.put(None)
    raw.channel.close()
    other.channel.close()


def test_the_client_honours_the_rate_limit(redis_server, tmp_path) -> None:
    with own_proxy(redis_server, tmp_path, "--max-user-requests-per-second", "20") as proxy:
        storage = GrpcJournalStorage(proxy.endpoint, token=issue_token(redis_server.url, "hot"))
        study = optuna.create_study(study_name="s", storage=storage)
        study.optimize(workers.quadratic, n_trials=30)  # ~100 requests: 2-3 s at 20/s
        assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 30
        refusals = sample(scrape(proxy.metrics_url), "storage_proxy_fairness_refusals_total",
                          limit="rate")
        assert refusals > 0  # it was refused, waited as told, and got through
        raw = RawClient(proxy.endpoint, issue_token(redis_server.url, "burst"))
        errors = []
        for _ in range(100):
            try:
                raw.WhoAmI(pb.WhoAmIRequest())
            except grpc.RpcError as e:
                errors.append(e)
        assert errors and all(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for e in errors)
        assert all(0 < (retry_after_ms(e) or 0) <= 1000 for e in errors)


def test_a_client_refused_a_stream_goes_on_with_unary_calls(redis_server, tmp_path) -> None:
    with own_proxy(redis_server, tmp_path, "--max-user-streams", "1") as proxy:
        token = issue_token(redis_server.url, "narrow")
        first = GrpcJournalStorage(proxy.endpoint, token=token)
        optuna.create_study(study_name="s", storage=first)  # holds the user's one stream
        second = GrpcJournalStorage(proxy.endpoint, token=token)
        study = optuna.load_study(study_name="s", storage=second)
        study.optimize(workers.quadratic, n_trials=5)
        fresh = GrpcJournalStorage(proxy.endpoint, token=token)
        assert len(optuna.load_study(study_name="s", storage=fresh).trials) == 5
        samples = scrape(proxy.metrics_url)
        assert sample(samples, "storage_proxy_fairness_refusals_total", limit="streams") >= 1
        assert sample(samples, "storage_proxy_calls_total", method="AppendLogs",
                      code="OK") >= 5  # the second client's appends, as unary calls


def test_the_bucket_the_slots_and_the_bytes_of_one_user() -> None:
    """Fairness on its own, with a clock the test moves: what passes, what is refused with
    which hint, and what a release gives back. Other users are never affected."""
    now = [0.0]
    f = Fairness(max_streams=2, max_calls=1, rate=10, burst=3, max_bytes=100,
                 clock=lambda: now[0])
    for _ in range(3):
        f.admit("a")
    with pytest.raises(RequestError) as e:
        f.admit("a")
    assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert e.value.retry_after == pytest.approx(0.1)  # one request every 1/10 s
    f.admit("b")
    now[0] += 0.1
    f.admit("a")
    streams = [f.open("a", stream=True) for _ in range(2)]
    with pytest.raises(RequestError, match="--max-user-streams"):
        f.open("a", stream=True)
    streams[0]()
    streams[0]()  # twice changes nothing
    f.open("a", stream=True)
    with pytest.raises(RequestError, match="--max-user-streams"):
        f.open("a", stream=True)
    release = f.hold("a", 500)  # one append always passes, however large
    with pytest.raises(RequestError, match="--max-user-inflight-bytes") as e:
        f.hold("a", 1)
    assert e.value.retry_after is not None
    release()
    f.hold("a", 60)()
