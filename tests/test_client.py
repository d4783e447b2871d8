"""The client's promises: processes share studies, pickle and fork work, own writes are
visible at once, others' within read_staleness, and errors say what to do."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import pickle
import time

import optuna
import pytest
from optuna.trial import TrialState

from optuna_grpc_storage import GrpcJournalStorage, ProxyUnavailableError
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from optuna_grpc_storage.storage.connection import parse_endpoint
from tests import workers


def test_processes_share_one_study(make_storage) -> None:
    storage = make_storage()
    optuna.create_study(study_name="shared", storage=storage)
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(4, mp_context=ctx) as pool:
        ran = list(pool.map(workers.optimize, [storage] * 4, ["shared"] * 4, [25] * 4))
    assert ran == [25, 25, 25, 25]
    trials = optuna.load_study(study_name="shared", storage=make_storage()).trials
    assert [t.number for t in trials] == list(range(100))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t._trial_id for t in trials}) == 100


def test_pickled_storage_works_and_is_a_new_client(make_storage) -> None:
    storage = make_storage()
    study = optuna.create_study(storage=storage)
    study.optimize(workers.quadratic, n_trials=3)
    copy = pickle.loads(pickle.dumps(storage))
    assert copy.grpc_backend._client_id != storage.grpc_backend._client_id
    assert len(optuna.load_study(study_name=study.study_name, storage=copy).trials) == 3
    optuna.load_study(study_name=study.study_name, storage=copy).optimize(
        workers.quadratic, n_trials=2)
    time.sleep(storage.grpc_backend.read_staleness)  # others' writes show within the window
    assert len(study.trials) == 5


def test_forked_child_gets_its_own_identity(make_storage) -> None:
    storage = make_storage()
    study = optuna.create_study(storage=storage)
    study.optimize(workers.quadratic, n_trials=2)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: keep using the inherited storage object
        try:
            optuna.load_study(study_name=study.study_name, storage=storage).optimize(
                workers.quadratic, n_trials=3)
            os.write(w, storage.grpc_backend._client_id.encode())
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    child_id = os.read(r, 64).decode()
    assert child_id and child_id != storage.grpc_backend._client_id
    study.optimize(workers.quadratic, n_trials=1)  # the parent goes on, unharmed
    assert [t.number for t in study.trials] == list(range(6))


def test_the_read_after_a_write_costs_no_call(make_storage) -> None:
    storage = make_storage(read_staleness=0.5)
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler())
    calls = storage.grpc_backend.calls
    before = dict(calls)
    study.optimize(workers.quadratic, n_trials=20)
    appends = calls["append"] - before["append"]
    reads = calls["read"] - before["read"]
    assert appends == 20 * 4  # create, two params, finish
    assert reads <= 2, reads


def test_own_writes_at_once_others_within_staleness(make_storage) -> None:
    writer = make_storage(read_staleness=10.0)
    study = optuna.create_study(storage=writer)
    reader = make_storage(read_staleness=0.3)
    view = optuna.load_study(study_name=study.study_name, storage=reader)
    assert len(view.trials) == 0
    study.optimize(workers.quadratic, n_trials=1)
    assert len(study.trials) == 1  # read-your-writes, even with a 10 s window
    # The reader synced just now: for up to 0.3 s it may answer from memory...
    time.sleep(0.35)
    assert len(view.trials) == 1  # ...but never longer.
    strict = make_storage(read_staleness=0.0)
    strict_view = optuna.load_study(study_name=study.study_name, storage=strict)
    study.optimize(workers.quadratic, n_trials=1)
    assert len(strict_view.trials) == 2  # read_staleness=0: every read asks the proxy


def test_unreachable_proxy_error_names_the_address() -> None:
    from storage_proxy.process.embedded_redis import free_port

    endpoint = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(ProxyUnavailableError) as e:
        GrpcJournalStorage(endpoint, token="t", retry_deadline=1.0, timeout=0.5)
    assert endpoint in str(e.value) and "storage-proxy serve" in str(e.value)
    assert time.monotonic() - started < 10


def test_endpoint_from_environment(proxy, token, monkeypatch) -> None:
    monkeypatch.setenv("OPTUNA_GRPC_STORAGE_ENDPOINT", proxy.endpoint)
    monkeypatch.setenv("OPTUNA_GRPC_STORAGE_TOKEN", token)
    storage = GrpcJournalStorage()
    assert storage.grpc_backend.client.who_am_i().namespace
    monkeypatch.delenv("OPTUNA_GRPC_STORAGE_ENDPOINT")
    with pytest.raises(ValueError, match="OPTUNA_GRPC_STORAGE_ENDPOINT"):
        GrpcJournalStorage()


@pytest.mark.parametrize("endpoint, expected", [
    ("proxy:13000", ("proxy:13000", False)),
    ("proxy", ("proxy:13000", False)),
    ("grpc://proxy:1234", ("proxy:1234", False)),
    ("grpcs://proxy.example.com:443", ("proxy.example.com:443", True)),
    ("grpcs://proxy.example.com", ("proxy.example.com:13000", True)),
    ("dns:///proxy-headless:13000", ("dns:///proxy-headless:13000", False)),
    ("[::1]:13000", ("[::1]:13000", False)),
])
def test_parse_endpoint(endpoint: str, expected: tuple[str, bool]) -> None:
    assert parse_endpoint(endpoint) == expected


class _Evil:
    def __reduce__(self):
        return (exec, ("open('/tmp/ogs-pwned-marker', 'w').write('x')",))


def test_a_malicious_snapshot_is_never_unpickled(make_storage, raw) -> None:
    storage = make_storage()
    study = optuna.create_study(study_name="s", storage=storage)
    study.optimize(workers.quadratic, n_trials=3)
    length = storage.grpc_backend._next
    if os.path.exists("/tmp/ogs-pwned-marker"):
        os.remove("/tmp/ogs-pwned-marker")
    raw.SaveSnapshot(iter([pb.SnapshotChunk(journal="default", position=length,
                                            data=pickle.dumps(_Evil()))]))
    fresh = make_storage()
    assert not os.path.exists("/tmp/ogs-pwned-marker")
    assert len(optuna.load_study(study_name="s", storage=fresh).trials) == 3  # full replay
