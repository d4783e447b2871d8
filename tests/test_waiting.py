"""The WAITING-trial index answers exactly what Optuna's own replay answers."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.storages.journal import JournalStorage
from optuna.trial import TrialState

from optuna_grpc_storage import GrpcJournalBackend
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from optuna_grpc_storage.storage import snapshots
from tests import workers

WAITING = (TrialState.WAITING,)


def plain_view(proxy, token: str, journal: str) -> JournalStorage:
    """Optuna's JournalStorage with its own full scan, on the same journal."""
    return JournalStorage(GrpcJournalBackend(proxy.endpoint, token=token, journal=journal,
                                             read_staleness=0))


def waiting_numbers(storage, study_id: int) -> list[int]:
    return [t.number for t in storage.get_all_trials(study_id, states=WAITING)]


def test_waiting_trials_match_optunas_own_answer(proxy, token, make_storage, raw) -> None:
    storage = make_storage("w", read_staleness=0)
    study = optuna.create_study(storage=storage)
    sid = study._study_id
    for x in range(10):
        study.enqueue_trial({"x": float(x), "y": 1})
    assert waiting_numbers(storage, sid) == list(range(10))
    study.optimize(workers.quadratic, n_trials=4)  # pops the first four
    plain = plain_view(proxy, token, "w")
    assert waiting_numbers(storage, sid) == waiting_numbers(plain, sid) == list(range(4, 10))
    # An entry that sets a running trial back to WAITING (Optuna never writes one, but the
    # journal allows it) is seen too.
    trial = study.ask()
    entry = {"op_code": 6, "worker_id": "w", "trial_id": trial._trial_id, "state": 4,
             "values": None, "datetime_start": "2026-01-01T00:00:00+00:00"}
    raw.AppendLogs(pb.AppendLogsRequest(journal="w", entries=[json.dumps(entry).encode()]))
    expected = sorted([*range(5, 10), trial.number])
    assert waiting_numbers(storage, sid) == waiting_numbers(plain, sid) == expected
    assert [t.params for t in storage.get_all_trials(sid, states=WAITING)] == [
        t.params for t in plain.get_all_trials(sid, states=WAITING)]
    with pytest.raises(KeyError):
        storage.get_all_trials(sid + 100, states=WAITING)


def test_index_is_rebuilt_from_a_snapshot(proxy, token, make_storage, monkeypatch) -> None:
    monkeypatch.setattr(snapshots, "FIRST_SNAPSHOT_AT", 20)
    storage = make_storage("snapw")
    study = optuna.create_study(storage=storage)
    for x in range(30):
        study.enqueue_trial({"x": float(x), "y": 1})
    study.optimize(workers.quadratic, n_trials=10)
    assert storage.grpc_backend.snapshot_position > 0
    fresh = make_storage("snapw")
    assert fresh.grpc_backend.snapshot_position == storage.grpc_backend.snapshot_position
    sid = study._study_id
    assert waiting_numbers(fresh, sid) == waiting_numbers(plain_view(proxy, token, "snapw"),
                                                          sid) == list(range(10, 30))
