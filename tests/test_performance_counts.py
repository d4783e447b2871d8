"""The counts the speed rests on, through real proxies: reads with nothing new cost no Redis
call, Redis calls per trial do not grow with the number of workers, and any replica gives a
client its own writes at once. (Timings belong in bench/, not here.)"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import time

import optuna
import pytest
import redis

from optuna_grpc_storage import GrpcJournalStorage
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from storage_proxy.testing import ProxyProcess
from tests import workers
from tests.conftest import RawClient


def script_calls(url: str) -> int:
    """EVALSHA/EVAL commands Redis has run: every append and every Redis read is one."""
    with redis.Redis.from_url(url) as client:
        stats = client.info("commandstats")
    return sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("evalsha", "eval"))


def test_a_read_with_nothing_new_makes_no_redis_call(redis_server, raw) -> None:
    entry = b'{"op_code": 9, "worker_id": "w", "trial_id": 0, "system_attr": {"a": 1}}'
    raw.AppendLogs(pb.AppendLogsRequest(journal="j", entries=[entry] * 3))

    def read_end() -> list[pb.LogChunk]:
        return list(raw.ReadLogs(pb.ReadLogsRequest(journal="j", position=3)))

    deadline = time.monotonic() + 10  # until the proxy has subscribed and cached the journal
    while True:
        before = script_calls(redis_server.url)
        read_end()
        if script_calls(redis_server.url) == before:
            break
        assert time.monotonic() < deadline, "reads never came from the cache"
        time.sleep(0.05)
    before = script_calls(redis_server.url)
    for _ in range(100):
        chunks = read_end()
        assert [list(c.entries) for c in chunks] == [[]] and chunks[0].journal_length == 3
    assert script_calls(redis_server.url) == before


@pytest.mark.parametrize("n_workers", [1, 4])
def test_redis_calls_per_trial_do_not_grow_with_workers(redis_server, make_storage,
                                                        n_workers: int) -> None:
    storage = make_storage(read_staleness=1.0)  # counts, not staleness, are tested here
    optuna.create_study(study_name="s", storage=storage)
    before = script_calls(redis_server.url)
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(n_workers, mp_context=ctx) as pool:
        reports = list(pool.map(workers.optimize_counting, [storage] * n_workers,
                                ["s"] * n_workers, [40 // n_workers] * n_workers))
    calls = script_calls(redis_server.url) - before
    ran, appends, reads = (sum(column) for column in zip(*reports, strict=True))
    assert ran == 40
    assert 4 * ran <= appends <= 5 * ran  # create, 2 params, finish (+ TPE's attribute)
    assert reads <= 2 * n_workers  # joining; the rest came with the appends' answers
    # At most one Redis call per append (fewer when appends share a batch), one per read.
    assert calls <= appends + reads, (calls, appends, reads)


def test_every_replica_gives_a_client_its_own_writes(redis_server, tmp_path, token) -> None:
    p1 = ProxyProcess(redis_server.url, data_dir=tmp_path / "p1")
    p2 = ProxyProcess(redis_server.url, data_dir=tmp_path / "p2")
    with p1, p2:
        via1, via2 = RawClient(p1.endpoint, token), RawClient(p2.endpoint, token)
        list(via2.ReadLogs(pb.ReadLogsRequest(journal="j")))  # p2 starts caching "j"
        known = 0
        for i in range(50):  # write through one replica, read through the other at once
            entry = json.dumps({"op_code": 9, "worker_id": "w", "trial_id": i,
                                "system_attr": {"i": i}}).encode()
            r = via1.AppendLogs(pb.AppendLogsRequest(journal="j", entries=[entry],
                                                     known_position=known))
            assert r.first_position == i
            known = i + 1
            got = [e for c in via2.ReadLogs(pb.ReadLogsRequest(journal="j", position=i))
                   for e in c.entries]
            assert got[:1] == [entry], i
        # One study through both replicas, balanced per call: exact, and own writes visible.
        target = f"ipv4:{p1.endpoint},{p2.endpoint}"
        study = optuna.create_study(storage=GrpcJournalStorage(target, token=token))
        for _ in range(20):
            trial = study.ask()
            trial.suggest_float("x", 0, 1)
            study.tell(trial, 1.0)
            assert study.trials[-1].state == optuna.trial.TrialState.COMPLETE
        assert [t.number for t in study.trials] == list(range(20))
