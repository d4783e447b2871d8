"""Reference studies built in memory: a journal in a Python list, without a network, so that
benchmarks and tests can make large journals in seconds and push them in batches."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import optuna
from optuna.storages.journal import BaseJournalBackend, JournalStorage


class ListBackend(BaseJournalBackend):
    def __init__(self) -> None:
        self.logs: list[dict[str, Any]] = []

    def read_logs(self, log_number_from: int) -> list[dict[str, Any]]:
        return self.logs[log_number_from:]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self.logs.extend(json.loads(json.dumps(log)) for log in logs)


def build_study(name: str, n_trials: int, objective: Callable[[optuna.Trial], float],
                seed: int = 0) -> tuple[optuna.Study, list[bytes]]:
    """A study of n_trials RandomSampler trials and its journal as JSON entries."""
    backend = ListBackend()
    study = optuna.create_study(study_name=name, storage=JournalStorage(backend),
                                sampler=optuna.samplers.RandomSampler(seed=seed))
    study.optimize(objective, n_trials=n_trials)
    return study, [json.dumps(log, separators=(",", ":")).encode() for log in backend.logs]
