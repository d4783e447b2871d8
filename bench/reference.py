"""Reference studies built in memory: a journal in a Python list, without a network, so that
benchmarks and tests can make large journals in seconds and push them in batches."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import optuna
from optuna.storages.journal import BaseJournalBackend, JournalStorage
from optuna.trial import TrialState


class ListBackend(BaseJournalBackend):
    def __init__(self) -> None:
        self.logs: list[dict[str, Any]] = []

    def read_logs(self, log_number_from: int) -> list[dict[str, Any]]:
        return self.logs[log_number_from:]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self.logs.extend(json.loads(json.dumps(log)) for log in logs)


def build_study(name: str, n_trials: int, objective: Callable[[optuna.Trial], float],
                seed: int = 0) -> tuple[optuna.Study, list[bytes]]:
    """A study of n_trials RandomSampler trials and its journal as JSON entries.

    Each trial is written as study.optimize writes it (create, the objective's suggestions,
    the final state) but without optimize's search for WAITING trials, which scans every
    trial and would make a 100,000-trial build quadratic."""
    backend = ListBackend()
    storage = JournalStorage(backend)
    study = optuna.create_study(study_name=name, storage=storage,
                                sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(n_trials):
        trial = optuna.Trial(study, storage.create_new_trial(study._study_id))
        storage.set_trial_state_values(trial._trial_id, TrialState.COMPLETE, [objective(trial)])
    return study, [json.dumps(log, separators=(",", ":")).encode() for log in backend.logs]
