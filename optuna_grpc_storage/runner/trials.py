"""Operations on the trials of one batch, as the controller and the workers make them."""

from __future__ import annotations

import datetime

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from optuna_grpc_storage.runner.attrs import BATCH_ATTR, BATCH_FAILED_PREFIX, ERROR_ATTR

MAX_REASON_CHARS = 4000


def batch_trials(study: optuna.Study, batch_id: str, state: TrialState) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(state,))
            if t.system_attrs.get(BATCH_ATTR) == batch_id]


def cancel_waiting(study: optuna.Study, batch_id: str, reason: str) -> int:
    """Fail the batch's trials that never started. Each is popped first (set RUNNING, which
    the journal grants to one process only), so a trial another worker just took is left
    alone."""
    storage, cancelled = study._storage, 0
    for trial in batch_trials(study, batch_id, TrialState.WAITING):
        try:
            if not storage.set_trial_state_values(trial._trial_id, TrialState.RUNNING):
                continue
            storage.set_trial_system_attr(trial._trial_id, ERROR_ATTR, reason)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            cancelled += 1
        except UpdateFinishedTrialError:
            continue
    return cancelled


def fail_batch(study: optuna.Study, batch_id: str, kind: str, reason: str) -> None:
    """Record that the batch can no longer finish, and why (its phase becomes Failed, for
    every process), then end its unfinished trials FAIL with that reason, so the study's
    counts complete: the WAITING ones never start, the RUNNING ones have no worker left (a
    worker that would still tell a result is refused by the journal and logs it)."""
    storage = study._storage
    storage.set_study_system_attr(study._study_id, BATCH_FAILED_PREFIX + batch_id, {
        "type": kind, "reason": reason,
        "at": datetime.datetime.now(datetime.timezone.utc).isoformat()})
    text = f"not finished: trial batch {batch_id} failed ({reason})"[:MAX_REASON_CHARS]
    cancel_waiting(study, batch_id, text)
    for trial in batch_trials(study, batch_id, TrialState.RUNNING):
        try:
            storage.set_trial_system_attr(trial._trial_id, ERROR_ATTR, text)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue
