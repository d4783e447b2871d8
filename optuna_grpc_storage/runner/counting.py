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

Per batch (`batch_statuses`), the same rule applies to each optimize call's trials (marked with
its batch name, retries included); trials no optimize call made (ask/tell, add_trial, enqueued
and not claimed yet) form the pseudo-batch `ask_tell_local`. The groups partition the study's
trials, so the batches' counts add up to the study's, key by key.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from optuna_grpc_storage.runner.attrs import (
    BATCH_ATTR,
    BATCH_FAILED_PREFIX,
    BATCH_RECORD_PREFIX,
    ERROR_ATTR,
    HEARTBEAT_LOST_ATTR,
    RETRY_HISTORY_ATTR,
)

ASK_TELL_LOCAL = "ask_tell_local"  # the pseudo-batch of trials no optimize call made
PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"


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


def _state(trial: FrozenTrial, retried: set[int], policies: Mapping[str, Mapping[str, Any]],
           now: float) -> TrialState | None:
    """The state a trial counts as (None: it does not count, its retry stands for it)."""
    if trial.number in retried:
        return None
    if awaiting_retry(trial, retried, policies.get(trial.system_attrs.get(BATCH_ATTR)), now):
        return TrialState.RUNNING
    return trial.state


def _counts(states: list[TrialState | None]) -> dict[str, int]:
    by_state = {state: 0 for state in TrialState}
    for state in states:
        if state is not None:
            by_state[state] += 1
    return {
        "count_active": by_state[TrialState.RUNNING],
        "count_succeeded": by_state[TrialState.COMPLETE],
        "count_pruned": by_state[TrialState.PRUNED],
        "count_failed": by_state[TrialState.FAIL],
        "count_total": sum(by_state.values()),
        "count_completed": by_state[TrialState.COMPLETE] + by_state[TrialState.PRUNED]
        + by_state[TrialState.FAIL],
    }


def study_status(study_name: str, trials: list[FrozenTrial], study_attrs: Mapping[str, Any],
                 dashboard_url: str = "") -> dict[str, Any]:
    retried = superseded(trials)
    policies, now = retry_policies(study_attrs), time.time()
    return {
        "study_name": study_name,
        **_counts([_state(t, retried, policies, now) for t in trials]),
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
    return _iso(max(times)) if times else None


# -- per batch ----------------------------------------------------------------------------

def batch_of(trial: FrozenTrial) -> str:
    """The batch a trial counts in: its optimize call's, else the ask/tell pseudo-batch."""
    return trial.system_attrs.get(BATCH_ATTR) or ASK_TELL_LOCAL


def batch_failures(study_attrs: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Why each failed batch failed (BATCH_FAILED_PREFIX records), by batch name."""
    return {key[len(BATCH_FAILED_PREFIX):]: record for key, record in study_attrs.items()
            if key.startswith(BATCH_FAILED_PREFIX) and isinstance(record, dict)}


def phase(counts: Mapping[str, int], failure: Mapping[str, Any] | None) -> str:
    """Failed: it can no longer finish (recorded when found); Succeeded: every trial finished,
    whatever its state; Running: some trial started; Pending: none has."""
    if failure is not None:
        return FAILED
    if counts["count_total"] and counts["count_completed"] == counts["count_total"]:
        return SUCCEEDED
    return RUNNING if counts["count_active"] or counts["count_completed"] else PENDING


def batch_statuses(trials: list[FrozenTrial], study_attrs: Mapping[str, Any],
                   include_trials: bool = False) -> dict[str, dict[str, Any]]:
    """Each batch's counts (the rule of study_status, per batch, so they add up to the study's),
    phase and last_error; the batches in the order they were launched, then ask_tell_local."""
    retried = superseded(trials)
    policies, failures, now = retry_policies(study_attrs), batch_failures(study_attrs), time.time()
    names = sorted(policies, key=lambda n: str(policies[n].get("created", "")))
    groups: dict[str, list[FrozenTrial]] = {name: [] for name in names}
    for trial in trials:
        groups.setdefault(batch_of(trial), []).append(trial)
    if ASK_TELL_LOCAL in groups:  # last, as in AIAuto's listing
        groups[ASK_TELL_LOCAL] = groups.pop(ASK_TELL_LOCAL)
    out = {}
    for name, group in groups.items():
        states = [_state(t, retried, policies, now) for t in group]
        counts, failure, record = _counts(states), failures.get(name), policies.get(name, {})
        entry = {"trialbatch_name": name, "phase": phase(counts, failure),
                 "conditions": _conditions(failure), **counts,
                 "n_trials": record.get("n_trials"), "created": record.get("created"),
                 "last_error": last_error(group)}
        if include_trials:
            entry["completed_trials"] = {
                str(t.number): trial_record(t) for t, state in zip(group, states, strict=True)
                if state is not None and state.is_finished()}
        out[name] = entry
    return out


def is_finished(trial: FrozenTrial, trials: list[FrozenTrial],
                study_attrs: Mapping[str, Any]) -> bool:
    """Whether a trial has finished, by the counting rule: a retried trial by its latest
    retry, one awaiting its retry as not finished."""
    retries = [t for t in trials if trial.number in t.system_attrs.get(RETRY_HISTORY_ATTR, ())]
    latest = max(retries, key=lambda t: t.number) if retries else trial
    state = _state(latest, superseded(trials), retry_policies(study_attrs), time.time())
    return state is not None and state.is_finished()


def _conditions(failure: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """AIAuto's TrialBatch conditions: one Failed condition carrying the reason, or none."""
    if failure is None:
        return []
    return [{"type": FAILED, "status": "True", "reason": failure.get("type", ""),
             "message": failure.get("reason", ""), "last_transition_time": failure.get("at")}]


def trial_record(trial: FrozenTrial) -> dict[str, Any]:
    """A finished trial as get_status(include_trials=True) lists it (AIAuto's keys)."""
    values = trial.values
    return {"trialNumber": trial.number, "state": trial.state.name,
            "value": values[0] if values is not None and len(values) == 1 else None,
            "values": list(values) if values is not None else None,
            "params": dict(trial.params), "userAttrs": dict(trial.user_attrs),
            "startTime": _iso(trial.datetime_start), "endTime": _iso(trial.datetime_complete)}


def _iso(at: datetime.datetime | None) -> str | None:
    return at.isoformat() if at else None
