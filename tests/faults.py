"""Helpers shared by the fault tests: read a journal as stored, wait for a state, check that
nothing was lost or doubled."""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Callable, Iterable

import grpc
import optuna
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from optuna_grpc_storage.v1 import journal_pb2 as pb
from tests.conftest import RawClient

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def journal(raw: RawClient, name: str = "default") -> list[bytes]:
    """Every entry of a journal, as Redis holds it."""
    return [e for c in raw.ReadLogs(pb.ReadLogsRequest(journal=name)) for e in c.entries]


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"not reached within {timeout}s: {what or predicate}")
        time.sleep(0.05)


def health(endpoint: str) -> int:
    try:
        with grpc.insecure_channel(endpoint) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            return stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status
    except grpc.RpcError:
        return -1


def entry(tag: str, i: int) -> bytes:
    """A valid journal entry that says who wrote it and in which order."""
    return json.dumps({"op_code": 9, "worker_id": tag, "trial_id": 0, "i": i}).encode()


def doubled(entries: Iterable[bytes]) -> list[bytes]:
    """Entries that occur more than once (a journal written once holds none: every entry
    Optuna writes carries a worker id and a timestamp, a value or a counter)."""
    return [e for e, n in collections.Counter(entries).items() if n > 1]


def assert_study_intact(study: optuna.Study, raw: RawClient, n_trials: int,
                        journal_name: str = "default") -> None:
    """Exactly n_trials trials, numbered 0..n-1, all COMPLETE, and no journal entry twice."""
    trials = study.get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == list(range(n_trials))
    states = collections.Counter(t.state.name for t in trials)
    assert states == {"COMPLETE": n_trials}, states
    stored = journal(raw, journal_name)
    assert doubled(stored) == []
    ops = collections.Counter(json.loads(e)["op_code"] for e in stored)
    assert ops[4] == n_trials  # one CREATE_TRIAL per trial
    assert ops[6] == n_trials  # one final SET_TRIAL_STATE_VALUES per trial
