"""`StudyWrapper.get_status()`: a study's trials counted by state.

The counting rule: every trial counts once, except a trial failed for lost heartbeats and then
retried, which is represented by its retry (Optuna's RetryFailedTrialCallback lists the trials
a retry stands for in its `retry_history`). Since each `optimize` call creates its `n_trials`
trials before it returns, `count_total` is the trials asked for by all `optimize` calls plus
those created any other way (ask/tell, enqueue_trial or add_trial on `get_study()`), and
`count_completed` reaches it exactly when nothing is left to run.

Failing a stale trial and queueing its retry are two appends, so for a moment a trial is FAIL
with its retry not yet there: such a trial (marked by the storage as failed for lost heartbeats,
with retries left in its batch) counts as active, never as completed, or `wait()` could return
in that moment with the retry still to run.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from optuna_grpc_storage.runner.attrs import (
    BATCH_ATTR,
    BATCH_RECORD_PREFIX,
    ERROR_ATTR,
    HEARTBEAT_LOST_ATTR,
    RETRY_HISTORY_ATTR,
)


def superseded(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of the trials that were retried: their retries stand for them."""
    out: set[int] = set()
    for trial in trials:
        out.update(trial.system_attrs.get(RETRY_HISTORY_ATTR, ()))
    return out


def lost_heartbeat(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.FAIL and \
        trial.system_attrs.get(HEARTBEAT_LOST_ATTR) == trial.number


def awaiting_retry(trial: FrozenTrial, retried: set[int], policy: Mapping[str, Any] | None,
                   now: float) -> bool:
    """Failed for lost heartbeats, with retries left in its batch's `policy` (max_retries,
    grace_period), and the retry not queued yet. Not for longer than a grace period: a retry
    still missing by then never comes (its failer died in between), and the FAIL is final."""
    if policy is None or trial.number in retried or not lost_heartbeat(trial):
        return False
    if len(trial.system_attrs.get(RETRY_HISTORY_ATTR, ())) >= policy.get("max_retries", 0):
        return False
    failed_at = trial.datetime_complete.timestamp() if trial.datetime_complete else now
    return now - failed_at < policy.get("grace_period", 0)


def retry_policies(study_attrs: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Each batch's record (BATCH_RECORD_PREFIX), by batch id."""
    return {key[len(BATCH_RECORD_PREFIX):]: record for key, record in study_attrs.items()
            if key.startswith(BATCH_RECORD_PREFIX) and isinstance(record, dict)}


def study_status(study_name: str, trials: list[FrozenTrial], study_attrs: Mapping[str, Any],
                 dashboard_url: str = "") -> dict[str, Any]:
    retried = superseded(trials)
    policies, now = retry_policies(study_attrs), time.time()
    by_state = {state: 0 for state in TrialState}
    for trial in trials:
        if trial.number in retried:
            continue
        policy = policies.get(trial.system_attrs.get(BATCH_ATTR))
        if awaiting_retry(trial, retried, policy, now):
            by_state[TrialState.RUNNING] += 1
        else:
            by_state[trial.state] += 1
    finished = by_state[TrialState.COMPLETE] + by_state[TrialState.PRUNED] \
        + by_state[TrialState.FAIL]
    return {
        "study_name": study_name,
        "count_active": by_state[TrialState.RUNNING],
        "count_succeeded": by_state[TrialState.COMPLETE],
        "count_pruned": by_state[TrialState.PRUNED],
        "count_failed": by_state[TrialState.FAIL],
        "count_total": sum(by_state.values()),
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
    if lost_heartbeat(trial):
        retries = [t.number for t in trials
                   if trial.number in t.system_attrs.get(RETRY_HISTORY_ATTR, ())]
        then = f"retried as trial {min(retries)}" if retries else "not retried (yet)"
        return (f"trial {trial.number}: its worker stopped sending heartbeats (killed, out of "
                f"memory or preempted?); {then}")
    return (f"trial {trial.number} failed without an exception (Optuna refused the "
            "objective's return value, or its worker died; see the worker's log)")


def _updated_at(trials: list[FrozenTrial]) -> str | None:
    times = [t for trial in trials for t in (trial.datetime_start, trial.datetime_complete) if t]
    return max(times).isoformat() if times else None
