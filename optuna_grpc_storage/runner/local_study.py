"""The optuna.Study that `StudyWrapper.get_study()` returns: ask/tell here never takes a trial
that an optimize call made for its workers.

Optuna's `ask()` (and so a local `study.optimize`) first pops any WAITING trial, enqueued ones
meant to run first. The controller's batches are WAITING trials too, made for that batch's
workers (and its objective): popped here, one would run in the notebook instead, count in the
batch and leave the batch a trial short. So while a `LocalStudy` asks, the controller's storage
lists only the WAITING trials no batch owns (those the user enqueued). Everywhere else, such
as `get_trials(states=(WAITING,))`, the storage shows every trial as it is. The worker's
storage (worker.BatchStorage) is the mirror image: it pops its own batch's trials only.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from optuna_grpc_storage.runner.attrs import BATCH_ATTR
from optuna_grpc_storage.storage import GrpcJournalStorage
from optuna_grpc_storage.storage.waiting import only_waiting

_ASKING = contextvars.ContextVar("optuna_grpc_storage_local_ask", default=False)


class ControllerStorage(GrpcJournalStorage):
    """The controller's storage: while a LocalStudy asks, batches' WAITING trials are hidden."""

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Sequence[TrialState] | None = None) -> list[FrozenTrial]:
        trials = super().get_all_trials(study_id, deepcopy, states)
        if _ASKING.get() and only_waiting(states):
            trials = [t for t in trials if BATCH_ATTR not in t.system_attrs]
        return trials


class LocalStudy(optuna.Study):
    """A real optuna.Study (every method is Optuna's) whose ask() leaves batches' trials alone;
    its trials count in the `ask_tell_local` pseudo-batch."""

    def ask(self, fixed_distributions: dict[str, Any] | None = None) -> optuna.Trial:
        token = _ASKING.set(True)
        try:
            return super().ask(fixed_distributions)
        finally:
            _ASKING.reset(token)
