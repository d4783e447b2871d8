"""`StudyWrapper.get_status()`: a study's trials counted by state.

The counting rule: every trial counts once, except a trial failed for lost heartbeats and then
retried, which is represented by its retry (Optuna's RetryFailedTrialCallback lists the trials
a retry stands for in its `retry_history`). Since each `optimize` call creates its `n_trials`
trials before it returns, `count_total` is the trials asked for by all `optimize` calls plus
those created any other way (ask/tell, enqueue_trial or add_trial on `get_study()`), and
`count_completed` reaches it exactly when nothing is left to run.
"""

from __future__ import annotations

import datetime
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from optuna_grpc_storage.batch import ERROR_ATTR


def superseded(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of the trials that were retried: their retries stand for them."""
    out: set[int] = set()
    for trial in trials:
        out.update(trial.system_attrs.get("retry_history", ()))
    return out


def study_status(study_name: str, trials: list[FrozenTrial],
                 dashboard_url: str = "") -> dict[str, Any]:
    retried = superseded(trials)
    counted = [t for t in trials if t.number not in retried]
    by_state = {state: 0 for state in TrialState}
    for trial in counted:
        by_state[trial.state] += 1
    finished = by_state[TrialState.COMPLETE] + by_state[TrialState.PRUNED] \
        + by_state[TrialState.FAIL]
    return {
        "study_name": study_name,
        "count_active": by_state[TrialState.RUNNING],
        "count_succeeded": by_state[TrialState.COMPLETE],
        "count_pruned": by_state[TrialState.PRUNED],
        "count_failed": by_state[TrialState.FAIL],
        "count_total": len(counted),
        "count_completed": finished,
        "dashboard_url": dashboard_url.format(study_name=study_name)
        if dashboard_url else "",
        "last_error": last_error(trials),
        "updated_at": _updated_at(trials),
    }


def last_error(trials: list[FrozenTrial]) -> str:
    """What went wrong in the most recently failed trial, or '' if none failed."""
    failed = [t for t in trials if t.state == TrialState.FAIL]
    if not failed:
        return ""
    trial = max(failed, key=lambda t: (t.datetime_complete or datetime.datetime.min, t.number))
    if ERROR_ATTR in trial.system_attrs:
        return f"trial {trial.number}: {trial.system_attrs[ERROR_ATTR]}"
    retries = [t.number for t in trials if trial.number in t.system_attrs.get("retry_history", ())]
    if retries:
        return (f"trial {trial.number}: its worker stopped sending heartbeats (killed, out of "
                f"memory or preempted?); retried as trial {min(retries)}")
    return (f"trial {trial.number} failed without an exception: its worker stopped sending "
            "heartbeats, or Optuna refused the objective's return value (see the worker's log)")


def _updated_at(trials: list[FrozenTrial]) -> str | None:
    times = [t for trial in trials for t in (trial.datetime_start, trial.datetime_complete) if t]
    return max(times).isoformat() if times else None
