"""The Session stream: requests answered in order, failures answered in-band, tokens checked on
every request, idle sessions released at once on drain, and the unary fallback."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Iterator

import grpc
import optuna
import pytest

from optuna_grpc_storage import GrpcJournalStorage
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from optuna_grpc_storage.protocol.v1 import journal_pb2_grpc as pb_grpc
from storage_proxy.testing import ProxyProcess
from tests import workers

ENTRY = json.dumps({"op_code": 9, "worker_id": "w", "trial_id": 0,
                    "system_attr": {"x": 1}}).encode()


class RawSession:
    def __init__(self, endpoint: str, token: str | None) -> None:
        self.channel = grpc.insecure_channel(endpoint)
        self.requests: queue.SimpleQueue[pb.SessionRequest | None] = queue.SimpleQueue()

        def feed() -> Iterator[pb.SessionRequest]:
            while (item := self.requests.get()) is not None:
                yield item

        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.responses = pb_grpc.JournalServiceStub(self.channel).Session(
            feed(), metadata=metadata, timeout=60)

    def ask(self, request: pb.SessionRequest) -> list[pb.SessionResponse]:
        self.requests.put(request)
        out = [next(self.responses)]
        while not out[-1].last:
            out.append(next(self.responses))
        return out

    def close(self) -> None:
        self.requests.put(None)
        self.channel.close()


def append(journal: str, entries: list[bytes], known: int = 0) -> pb.SessionRequest:
    return pb.SessionRequest(append=pb.AppendLogsRequest(journal=journal, entries=entries,
                                                         known_position=known))


def test_failures_are_answered_in_band_and_the_session_goes_on(proxy, token) -> None:
    s = RawSession(proxy.endpoint, token)
    try:
        ok = s.ask(append("j", [ENTRY]))
        assert ok[0].append.first_position == 0 and ok[0].last
        for bad, code in ((append("j", [b"not json"]), grpc.StatusCode.INVALID_ARGUMENT),
                          (append("../j", [ENTRY]), grpc.StatusCode.INVALID_ARGUMENT),
                          (append("j", [ENTRY] * 1_001), grpc.StatusCode.RESOURCE_EXHAUSTED),
                          (pb.SessionRequest(), grpc.StatusCode.INVALID_ARGUMENT),
                          (pb.SessionRequest(read=pb.ReadLogsRequest(journal="j", position=9)),
                           grpc.StatusCode.OUT_OF_RANGE)):
            answer = s.ask(bad)
            assert len(answer) == 1 and answer[0].WhichOneof("result") == "error"
            assert answer[0].error.code == code.value[0], answer[0].error.message
        ok = s.ask(append("j", [ENTRY, ENTRY], known=1))
        assert ok[0].append.first_position == 1 and ok[0].append.unseen_complete
        chunks = s.ask(pb.SessionRequest(read=pb.ReadLogsRequest(journal="j")))
        assert [e for c in chunks for e in c.chunk.entries] == [ENTRY] * 3
    finally:
        s.close()


def test_a_session_needs_a_valid_token_and_notices_revocation(proxy, new_user) -> None:
    bad = RawSession(proxy.endpoint, "wrong")
    with pytest.raises(grpc.RpcError) as e:
        bad.ask(append("j", [ENTRY]))
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    bad.close()
    user, token = new_user()
    s = RawSession(proxy.endpoint, token)
    assert s.ask(append("j", [ENTRY]))[0].append.first_position == 0
    import subprocess

    from storage_proxy.testing import proxy_command
    subprocess.run(proxy_command("token", "revoke", "--user", user, "--redis-url",
                                 proxy.redis_url), check=True, capture_output=True)
    deadline = time.monotonic() + 5  # the proxy trusts a verified token for 0.5 s here
    while time.monotonic() < deadline:
        answer = s.ask(append("j", [ENTRY]))
        if answer[0].WhichOneof("result") == "error":
            assert answer[0].error.code == grpc.StatusCode.UNAUTHENTICATED.value[0]
            break
        time.sleep(0.1)
    else:
        pytest.fail("a revoked token kept working on an open session")
    s.close()


def test_drain_releases_idle_sessions_at_once(redis_server, tmp_path, token) -> None:
    proxy = ProxyProcess(redis_server.url, data_dir=tmp_path,
                         extra_args=("--grace-seconds", "30"))
    proxy.start()
    storage = GrpcJournalStorage(proxy.endpoint, token=token)
    optuna.create_study(storage=storage).optimize(workers.quadratic, n_trials=2)
    started = time.monotonic()
    assert proxy.stop() == 0
    assert time.monotonic() - started < 10  # not the 30 s grace period


@pytest.mark.parametrize("use_session", [True, False])
def test_both_transports_run_a_study(make_storage, use_session: bool) -> None:
    storage = make_storage(use_session=use_session)
    study = optuna.create_study(storage=storage)
    study.optimize(workers.quadratic, n_trials=10)
    assert (storage.grpc_backend.client.stream is not None) == use_session
    assert [t.number for t in study.trials] == list(range(10))
    fresh = optuna.load_study(study_name=study.study_name,
                              storage=make_storage(use_session=not use_session))
    assert [t.params for t in fresh.trials] == [t.params for t in study.trials]
