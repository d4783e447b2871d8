"""Helpers shared by the fault tests: read a journal as stored, wait for a state, check that
nothing was lost or doubled."""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Callable, Iterable

import grpc
import optuna

from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from tests import ops_helpers
from tests.conftest import RawClient


def journal(raw: RawClient, name: str = "default") -> list[bytes]:
    """Every entry of a journal, as Redis holds it."""
    return [e for c in raw.ReadLogs(pb.ReadLogsRequest(journal=name)) for e in c.entries]


def health(endpoint: str) -> int:
    """The proxy's health status, or -1 while it does not answer (killed, restarting)."""
    try:
        return ops_helpers.health(endpoint)
    except grpc.RpcError:
        return -1


def entry(tag: str, i: int) -> bytes:
    """A valid journal entry that says who wrote it and in which order."""
    return json.dumps({"op_code": 9, "worker_id": tag, "trial_id": 0,
                       "system_attr": {"i": i}}).encode()


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


TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
             grpc.StatusCode.CANCELLED}


class Writer(threading.Thread):
    """Appends entries 1..n one at a time with its own idempotency key, retrying transient
    failures with the same key (as the client does); remembers what was acknowledged."""

    def __init__(self, endpoint: str, token: str, name: str, n: int) -> None:
        super().__init__(daemon=True)
        self.raw = RawClient(endpoint, token)
        self.tag, self.n = name, n
        # sequence -> position, or None when the answer was "duplicate" (a retry of an append
        # that had landed: the proxy does not say where, only that it is there)
        self.acked: dict[int, int | None] = {}
        self.acked_at: dict[int, float] = {}  # sequence -> time.monotonic() of the answer
        self.failures = 0
        self.longest = 0.0  # seconds, the slowest single attempt
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for seq in range(1, self.n + 1):
                request = pb.AppendLogsRequest(journal="default", entries=[entry(self.tag, seq)],
                                               client_id=self.tag, sequence=seq)
                while True:
                    started = time.monotonic()
                    try:
                        answer = self.raw.stub.AppendLogs(
                            request, metadata=self.raw.metadata, timeout=5)
                        self.acked[seq] = None if answer.duplicate else answer.first_position
                        self.acked_at[seq] = time.monotonic()
                        break
                    except grpc.RpcError as e:
                        if e.code() not in TRANSIENT:
                            raise
                        self.failures += 1
                        time.sleep(0.05)
                    finally:
                        self.longest = max(self.longest, time.monotonic() - started)
        except BaseException as e:  # reported by the test
            self.error = e


def check_writers(team: list[Writer], stored: list[bytes],
                  may_lose: Callable[[float], bool] | None = None) -> int:
    """The journal holds the writers' entries, each once, each where it was acknowledged,
    each writer's in its order. An acknowledged entry may be missing only if may_lose(the
    time.monotonic() of its acknowledgement); returns how many are missing."""
    twice = {e: [i for i, x in enumerate(stored) if x == e] for e in doubled(stored)}
    assert twice == {}, twice
    present = set(stored)
    lost = [(w.tag, s, w.acked_at[s]) for w in team for s in w.acked
            if entry(w.tag, s) not in present]
    unexpected = [x for x in lost if may_lose is None or not may_lose(x[2])]
    assert unexpected == [], f"{len(unexpected)} acknowledged appends missing: {unexpected[:10]}"
    assert len(stored) == sum(len(w.acked) for w in team) - len(lost)
    for w in team:
        assert w.error is None, w.error
        assert len(w.acked) == w.n
        kept = [s for s in range(1, w.n + 1) if entry(w.tag, s) in present]
        told = [s for s in kept if w.acked[s] is not None]
        assert [stored[w.acked[s]] for s in told] == [entry(w.tag, s) for s in told]
        positions = [stored.index(entry(w.tag, s)) for s in kept]
        assert positions == sorted(positions)
    return len(lost)
