"""Optuna's heartbeat (BaseHeartbeat) on GrpcJournalStorage, as RDBStorage has it."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import threading
import time
import uuid
import warnings
from pathlib import Path

import grpc
import optuna
import pytest
import redis
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import fail_stale_trials
from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled
from optuna.trial import TrialState

from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from optuna_grpc_storage.runner.attrs import HEARTBEAT_LOST_ATTR
from optuna_grpc_storage.runner.worker import RetryCallback
from storage_proxy.redis.client import connect
from storage_proxy.redis.store import Append, JournalStore
from tests import workers

pytestmark = [
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
    pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used"),
]


def test_the_heartbeat_interface(make_storage) -> None:
    callback = RetryCallback(max_retry=1)
    storage = make_storage(heartbeat_interval=1, grace_period=5,
                           heartbeat_stale_trial_callback=callback)
    assert isinstance(storage, BaseHeartbeat) and is_heartbeat_enabled(storage)
    assert storage.get_heartbeat_interval() == 1
    assert storage.get_heartbeat_stale_trial_callback() is callback
    assert not is_heartbeat_enabled(make_storage())
    with pytest.warns(FutureWarning, match="failed_trial_callback"):
        old = make_storage(heartbeat_interval=1, failed_trial_callback=callback)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        assert old.get_failed_trial_callback() is callback
    assert old.get_heartbeat_stale_trial_callback() is callback
    with pytest.raises(ValueError, match="only one"):
        make_storage(heartbeat_interval=1, failed_trial_callback=callback,
                     heartbeat_stale_trial_callback=callback)
    for bad in ({"heartbeat_interval": 0}, {"heartbeat_interval": -1},
                {"heartbeat_interval": 1, "grace_period": 0}):
        with pytest.raises(ValueError):
            make_storage(**bad)


def test_stale_trials_are_judged_by_the_server_clock(make_storage) -> None:
    storage = make_storage(heartbeat_interval=1.5)  # grace defaults to 2 x interval = 3 s
    study = optuna.create_study(storage=storage)
    silent = study.ask()  # RUNNING without any heartbeat (ask/tell): never stale
    beating = study.ask()
    storage.record_heartbeat(beating._trial_id)
    assert storage._get_stale_trial_ids(study._study_id) == []
    time.sleep(3.3)
    assert storage._get_stale_trial_ids(study._study_id) == [beating._trial_id]
    storage.record_heartbeat(beating._trial_id)
    assert storage._get_stale_trial_ids(study._study_id) == []
    study.tell(beating, 1.0)
    assert storage.heartbeat_ages([silent._trial_id]) == {}


def _entries_about(raw, trial_id: int) -> list[dict]:
    return [e for chunk in raw.ReadLogs(pb.ReadLogsRequest(journal="default"))
            for e in map(json.loads, chunk.entries) if e.get("trial_id") == trial_id]


def _two_failers(make_storage) -> tuple[optuna.Study, optuna.Study, int]:
    options = {"heartbeat_interval": 0.2, "grace_period": 0.5,
               "heartbeat_stale_trial_callback": RetryCallback()}
    first = optuna.create_study(storage=make_storage(read_staleness=0, **options))
    second = optuna.load_study(study_name=first.study_name,
                               storage=make_storage(read_staleness=0, **options))
    dead = first.ask()
    first._storage.record_heartbeat(dead._trial_id)
    assert [t.state for t in second.get_trials()] == [TrialState.RUNNING]
    # from now on the second worker answers reads from memory: it keeps seeing RUNNING
    second._storage.grpc_backend.read_staleness = 60
    time.sleep(0.8)
    return first, second, dead._trial_id


def test_two_workers_failing_the_same_stale_trial(make_storage, raw) -> None:
    """Both see the trial stale; the journal's order makes the first one win, the second
    learns it when its own write comes back (without an error), and the trial is retried
    once."""
    first, second, dead = _two_failers(make_storage)
    fail_stale_trials(first)
    fail_stale_trials(second)  # loses the race: must not raise, must not retry again

    trials = first.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].system_attrs["retry_history"] == [0]
    assert trials[0].system_attrs[HEARTBEAT_LOST_ATTR] == 0
    marks = [e for e in _entries_about(raw, dead) if "system_attr" in e]
    assert len(marks) == 2  # both marked it; the second mark came after the FAIL: ignored


def test_the_second_fail_of_a_trial_is_refused_by_the_journal_order(make_storage) -> None:
    """Both mark it before either fails it: both write FAIL, the journal applies the first,
    and the second writer gets UpdateFinishedTrialError, which fail_stale_trials ignores."""
    first, second, dead = _two_failers(make_storage)
    assert first._storage._get_stale_trial_ids(first._study_id) == [dead]
    assert second._storage._get_stale_trial_ids(second._study_id) == [dead]
    assert first._storage.set_trial_state_values(dead, TrialState.FAIL)
    with pytest.raises(UpdateFinishedTrialError):
        second._storage.set_trial_state_values(dead, TrialState.FAIL)
    assert first._storage.get_trial(dead).state == TrialState.FAIL


def test_concurrent_failers_retry_once(make_storage) -> None:
    options = {"heartbeat_interval": 0.2, "grace_period": 0.5,
               "heartbeat_stale_trial_callback": RetryCallback()}
    study = optuna.create_study(storage=make_storage(**options))
    for _ in range(3):
        study._storage.record_heartbeat(study.ask()._trial_id)
    time.sleep(0.8)
    failers = [optuna.load_study(study_name=study.study_name, storage=make_storage(**options))
               for _ in range(4)]
    barrier, errors = threading.Barrier(4), []

    def fail(s: optuna.Study) -> None:
        barrier.wait()
        try:
            fail_stale_trials(s)
        except Exception as e:  # pragma: no cover - the assertion below reports it
            errors.append(e)

    threads = [threading.Thread(target=fail, args=(s,)) for s in failers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL] * 3 + [TrialState.WAITING] * 3


def test_a_killed_worker_is_failed_and_retried_by_plain_optuna(make_storage,
                                                               tmp_path: Path) -> None:
    """No controller: GrpcJournalStorage + study.optimize, as with RDBStorage."""
    options = {"heartbeat_interval": 0.3, "grace_period": 1.0,
               "heartbeat_stale_trial_callback": RetryCallback()}
    storage = make_storage(**options)
    study = optuna.create_study(storage=storage)
    marker = tmp_path / "pid"
    ctx = multiprocessing.get_context("spawn")
    worker = ctx.Process(target=workers.optimize_hanging,
                         args=(make_storage(**options), study.study_name, str(marker)))
    worker.start()
    deadline = time.monotonic() + 60
    while not marker.exists() or not marker.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(int(marker.read_text()), signal.SIGKILL)
    worker.join()
    time.sleep(1.5)

    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)  # fails, then pops retry
    first, retry = study.get_trials()
    assert first.state == TrialState.FAIL
    assert retry.state == TrialState.COMPLETE and retry.params == first.params
    assert retry.system_attrs["retry_history"] == [0]


def test_heartbeats_of_a_journal_that_does_not_exist_leave_no_key(raw, redis_server) -> None:
    with pytest.raises(grpc.RpcError) as e:
        raw.RecordHeartbeat(pb.RecordHeartbeatRequest(journal="never", trial_ids=[1, 2]))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "existing journal" in e.value.details()
    user = raw.WhoAmI(pb.WhoAmIRequest()).namespace
    with redis.Redis.from_url(redis_server.url) as r:
        assert r.keys(f"ogs:j:{{{user}/never}}*") == []
    assert raw.ListJournals(pb.ListJournalsRequest()).journals == []


def test_heartbeat_keys_expire_with_their_journals_use(raw, redis_server) -> None:
    raw.AppendLogs(pb.AppendLogsRequest(journal="beats", entries=[b'{"op_code": 10}']))
    raw.RecordHeartbeat(pb.RecordHeartbeatRequest(journal="beats", trial_ids=[1]))
    user = raw.WhoAmI(pb.WhoAmIRequest()).namespace
    with redis.Redis.from_url(redis_server.url) as r:
        ttl = r.ttl(f"ogs:j:{{{user}/beats}}:heartbeats")
        assert 0 < ttl <= 7 * 86400  # seven days after the last heartbeat
        r.expire(f"ogs:j:{{{user}/beats}}:heartbeats", 100)
        raw.RecordHeartbeat(pb.RecordHeartbeatRequest(journal="beats", trial_ids=[1]))
        assert r.ttl(f"ogs:j:{{{user}/beats}}:heartbeats") > 100  # each heartbeat renews it


async def test_what_expired_heartbeats_were_charged_goes_back(redis_server) -> None:
    client = connect(redis_server.url)
    store = JournalStore(client, "t" + uuid.uuid4().hex[:6], heartbeat_seconds=1)
    ref = store.ref("ns", "j")
    try:
        await store.append_batch(ref, [Append([b'{"op_code": 10}'], "", 0, 0)], 0, 10, 1 << 20)
        used = int(await client.hget(ref.usage, "used"))
        await store.record_heartbeats(ref, list(range(100)))
        assert int(await client.hget(ref.usage, "used")) == used + 100 * 48
        await asyncio.sleep(1.5)  # the key expires
        assert await client.exists(ref.heartbeats) == 0
        await store.record_heartbeats(ref, [7])
        assert int(await client.hget(ref.usage, "used")) == used + 48
    finally:
        await client.aclose()
