"""The storage survives fork (storage/fork.py): workers forked from a process that used it run
their trials while the proxy and Redis are killed and restarted, a fork while another thread is
inside a call neither crashes nor hangs, and every multiprocessing start method works."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator

import optuna
import pytest

from optuna_grpc_storage import GrpcJournalStorage
from storage_proxy.process.embedded_redis import RedisProcess
from storage_proxy.testing import ProxyProcess

STORAGE: GrpcJournalStorage | None = None  # the parent's, inherited by forked workers
N_TRIALS = 100


def objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -10, 10)
    time.sleep(0.002)
    return x * x


def work(endpoint: str, token: str, study_name: str, inherit: bool) -> int:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = STORAGE if inherit else GrpcJournalStorage(endpoint, token=token)
    assert storage is not None
    optuna.load_study(study_name=study_name, storage=storage).optimize(objective,
                                                                       n_trials=N_TRIALS)
    return os.getpid()


@pytest.fixture
def stack(tmp_path) -> Iterator[tuple[RedisProcess, ProxyProcess, str]]:
    redis = RedisProcess(tmp_path / "redis", appendfsync="always")
    redis.start()
    proxy = ProxyProcess(redis.url, data_dir=tmp_path / "proxy", extra_args=("--workers", "2"))
    try:
        proxy.start()
        yield redis, proxy, proxy.issue_token("forker")
    finally:
        proxy.kill()
        redis.stop()


def wait_all(processes: list[multiprocessing.process.BaseProcess], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for p in processes:
        p.join(max(0.1, deadline - time.monotonic()))
    hung = [p.pid for p in processes if p.is_alive()]
    for p in processes:
        if p.is_alive():
            p.kill()
            p.join()
    assert not hung, f"workers {hung} hung"


def one_run(stack: tuple[RedisProcess, ProxyProcess, str], run: int) -> None:
    """The scenario of issue 13: 4 forked workers, the proxy killed and restarted 3 times and
    Redis once while they run."""
    global STORAGE
    redis, proxy, token = stack
    STORAGE = GrpcJournalStorage(proxy.endpoint, token=token, read_staleness=0)
    name = f"forked-{run}"
    optuna.create_study(study_name=name, storage=STORAGE).optimize(objective, n_trials=2)
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=work, args=(proxy.endpoint, token, name, i % 2 == run % 2))
               for i in range(4)]
    for w in workers:
        w.start()
    for k in range(4):  # the faults, from the main thread (see RedisProcess)
        time.sleep(0.5)
        if k == 2:
            redis.kill()
            time.sleep(0.3)
            redis.start()
        else:
            proxy.kill()
            time.sleep(0.3)
            proxy.start()
    wait_all(workers, 240)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    trials = optuna.load_study(study_name=name, storage=STORAGE).trials
    states = [t.state for t in trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 4 * N_TRIALS + 2, states


def test_forked_workers_survive_proxy_and_redis_restarts(stack) -> None:
    one_run(stack, 0)  # twenty in a row: the slow variant below


@pytest.mark.slow
@pytest.mark.parametrize("run", range(20))
def test_forked_workers_survive_proxy_and_redis_restarts_20_runs(stack, run: int) -> None:
    one_run(stack, run)


def test_fork_while_another_thread_is_mid_call(stack) -> None:
    _, proxy, token = stack
    storage = GrpcJournalStorage(proxy.endpoint, token=token, read_staleness=0)
    study = optuna.create_study(study_name="midcall", storage=storage)
    stop, calls, errors = threading.Event(), [0], []

    def busy() -> None:  # always inside a call: appends on the stream, unary calls
        while not stop.is_set():
            try:
                storage.set_study_user_attr(study._study_id, "tick", calls[0])
                storage.grpc_backend.client.who_am_i()
                calls[0] += 1
            except Exception as e:
                errors.append(repr(e))

    threads = [threading.Thread(target=busy) for _ in range(2)]
    for t in threads:
        t.start()
    children = []
    try:
        for i in range(10):
            time.sleep(0.05)
            pid = os.fork()
            if pid == 0:  # the child uses the inherited storage, then leaves at once
                code = 1
                try:
                    storage.set_study_user_attr(study._study_id, f"child-{i}", os.getpid())
                    code = 0 if storage.get_study_user_attrs(study._study_id)[
                        f"child-{i}"] == os.getpid() else 1
                finally:
                    os._exit(code)
            children.append(pid)
        codes = [_wait_pid(pid, 60) for pid in children]
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert codes == [0] * 10
    assert errors == [] and calls[0] > 0
    attrs = storage.get_study_user_attrs(study._study_id)
    assert sorted(attrs[f"child-{i}"] for i in range(10)) == sorted(children)


def _wait_pid(pid: int, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None  # hung


def pool_work(args: tuple[str, str, str, bool]) -> int:
    return work(*args)


@pytest.mark.parametrize("method", ["fork-pool", "fork-executor", "forkserver", "spawn"])
def test_every_start_method(stack, method: str) -> None:
    global STORAGE
    _, proxy, token = stack
    STORAGE = GrpcJournalStorage(proxy.endpoint, token=token)
    name = f"start-{method}"
    optuna.create_study(study_name=name, storage=STORAGE).optimize(objective, n_trials=1)
    context = multiprocessing.get_context(method.split("-")[0])
    jobs = [(proxy.endpoint, token, name, method.startswith("fork-"))] * 3
    if method == "fork-pool":
        with context.Pool(3) as pool:
            pids = pool.map(pool_work, jobs, chunksize=1)
    else:
        with concurrent.futures.ProcessPoolExecutor(3, mp_context=context) as pool:
            pids = list(pool.map(pool_work, jobs, timeout=240))
    assert os.getpid() not in pids
    trials = optuna.load_study(study_name=name, storage=STORAGE).trials
    assert len([t for t in trials if t.state.is_finished()]) == 3 * N_TRIALS + 1
    assert len({t.number for t in trials}) == len(trials)


def test_a_child_forked_while_another_thread_holds_the_storage_does_not_hang(stack) -> None:
    """A thread stuck inside a storage operation (its locks held) when the process forks: the
    child gives up on the half-applied copy and replays, on locks of its own (it once waited
    forever for the backend's lock, held by a thread the child does not have)."""
    _, proxy, token = stack
    storages = [GrpcJournalStorage(proxy.endpoint, token=token, journal=f"held-{i}")
                for i in range(4)]
    for i, storage in enumerate(storages):
        optuna.create_study(study_name=f"held-{i}", storage=storage)
    release, held = threading.Event(), threading.Event()

    def hold() -> None:
        for storage in storages:
            storage._thread_lock.acquire()
            storage.grpc_backend._lock.acquire()
        held.set()
        release.wait(60)
        for storage in storages:
            storage.grpc_backend._lock.release()
            storage._thread_lock.release()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                names = [s.get_all_studies()[0].study_name for s in storages]
                code = 0 if names == [f"held-{i}" for i in range(4)] else 1
            finally:
                os._exit(code)
        assert _wait_pid(pid, 90) == 0
    finally:
        release.set()
        holder.join(60)
