"""Operations on the trials of one batch, as the controller and the workers make them."""

from __future__ import annotations

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from optuna_grpc_storage.runner.attrs import BATCH_ATTR, ERROR_ATTR


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
