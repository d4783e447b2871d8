"""Large journals: long logs stream back whole, big studies load, snapshots bound the replay."""

from __future__ import annotations

import json
import time

import optuna
import pytest

from bench.reference import build_study
from optuna_grpc_storage import GrpcJournalBackend
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from optuna_grpc_storage.storage import snapshots
from tests import workers


def push(raw, journal: str, entries: list[bytes], batch: int = 1_000) -> None:
    for i in range(0, len(entries), batch):
        raw.AppendLogs(pb.AppendLogsRequest(journal=journal, entries=entries[i : i + batch]))


def test_200k_entries_read_back_by_a_fresh_client(proxy, token, raw) -> None:
    entries = [json.dumps({"op_code": 9, "worker_id": "w", "trial_id": i,
                           "system_attr": {"k": i}}).encode()
               for i in range(200_000)]
    push(raw, "long", entries)
    backend = GrpcJournalBackend(proxy.endpoint, token=token, journal="long")
    logs = backend.read_logs(0)
    assert len(logs) == 200_000
    assert [log["trial_id"] for log in logs[:3]] == [0, 1, 2]
    assert logs[-1] == {"op_code": 9, "worker_id": "w", "trial_id": 199_999,
                        "system_attr": {"k": 199_999}}
    assert backend.read_logs(200_000) == []


def test_10k_trial_study_loads_correctly(proxy, token, raw, make_storage) -> None:
    source, entries = build_study("big", 10_000, workers.quadratic, seed=3)
    push(raw, "big", entries)

    started = time.perf_counter()
    study = optuna.load_study(study_name="big", storage=make_storage("big"))
    trials = study.get_trials()
    elapsed = time.perf_counter() - started
    print(f"\nload_study + get_trials of 10,000 trials: {elapsed:.2f}s")
    assert len(trials) == 10_000
    expected = source.get_trials()
    assert [t.params for t in trials] == [t.params for t in expected]
    assert [t.value for t in trials] == [t.value for t in expected]
    assert study.best_trial.number == source.best_trial.number


def test_snapshots_are_taken_at_thresholds_and_restored(make_storage, monkeypatch) -> None:
    monkeypatch.setattr(snapshots, "FIRST_SNAPSHOT_AT", 40)
    storage = make_storage("snap")
    study = optuna.create_study(study_name="s", storage=storage)
    study.optimize(workers.quadratic, n_trials=30)  # 1 + 30 * 4 entries: crosses 40, 51, 64...
    assert storage.grpc_backend.snapshot_position >= 64
    fresh = make_storage("snap")
    assert fresh.grpc_backend.snapshot_position == storage.grpc_backend.snapshot_position
    reloaded = optuna.load_study(study_name="s", storage=fresh)
    assert [(t.params, t.value) for t in reloaded.trials] == [
        (t.params, t.value) for t in study.trials]
    reloaded.optimize(workers.quadratic, n_trials=2)  # a restored state keeps working
    assert [t.number for t in reloaded.trials] == list(range(32))


@pytest.mark.parametrize("upto, expected", [(9_999, []), (10_000, [10_000]),
                                            (13_000, [10_000, 12_501])])
def test_snapshot_thresholds(upto: int, expected: list[int]) -> None:
    assert snapshots.snapshot_thresholds(upto) == expected
