"""Snapshots of Optuna's replay state: when one is due, and how one is read back safely.

A snapshot is taken when the journal crosses fixed, geometrically spaced positions (10k,
12.5k, 15.6k... entries), by the one worker whose append crossed it, instead of Optuna's pickle
of the whole state every 100 trials by whoever created that trial: the total cost of snapshots
stays proportional to the journal, and a new process replays at most a fifth of it.

A snapshot is written by anyone holding the token, so it is unpickled with an allow-list of
Optuna's own state classes: it cannot run code in the workers that load it.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

from optuna.storages.journal._storage import JournalStorageReplayResult

FIRST_SNAPSHOT_AT = 10_000
SNAPSHOT_GROWTH = 1.25

_SAFE_GLOBALS = {
    ("optuna.storages.journal._storage", "JournalStorageReplayResult"),
    ("optuna.study._frozen", "FrozenStudy"),
    ("optuna.trial._frozen", "FrozenTrial"),
    ("optuna.study._study_direction", "StudyDirection"),
    ("optuna.trial._state", "TrialState"),
    ("optuna.distributions", "FloatDistribution"),
    ("optuna.distributions", "IntDistribution"),
    ("optuna.distributions", "CategoricalDistribution"),
    ("optuna.distributions", "UniformDistribution"),
    ("optuna.distributions", "LogUniformDistribution"),
    ("optuna.distributions", "DiscreteUniformDistribution"),
    ("optuna.distributions", "IntUniformDistribution"),
    ("optuna.distributions", "IntLogUniformDistribution"),
    ("datetime", "datetime"),
    ("datetime", "date"),
    ("datetime", "timedelta"),
    ("datetime", "timezone"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "complex"),
    ("copyreg", "_reconstructor"),
    ("builtins", "object"),
}


class _OptunaStateUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"snapshot refers to {module}.{name}, refused")
        return super().find_class(module, name)


def load_replay_state(snapshot: bytes) -> JournalStorageReplayResult:
    """The replay state a snapshot holds; pickle.UnpicklingError (or another exception) if it
    holds anything else."""
    restored = _OptunaStateUnpickler(io.BytesIO(snapshot)).load()
    if not isinstance(restored, JournalStorageReplayResult):
        raise pickle.UnpicklingError(f"snapshot holds a {type(restored).__name__}")
    return restored


def dump_replay_state(state: JournalStorageReplayResult) -> bytes:
    return pickle.dumps(state)


def snapshot_thresholds(upto: int) -> list[int]:
    """Journal positions at which a snapshot is due, up to `upto`."""
    out, t = [], FIRST_SNAPSHOT_AT
    while t <= upto:
        out.append(t)
        t = int(t * SNAPSHOT_GROWTH) + 1
    return out


def snapshot_due(first: int, count: int) -> bool:
    """Whether an append of `count` entries at `first` crossed a threshold."""
    return any(first < t <= first + count for t in snapshot_thresholds(first + count))
