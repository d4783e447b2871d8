"""The counting rule of get_status(), on trials built by hand (no timing involved)."""

from __future__ import annotations

import datetime

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from optuna_grpc_storage.runner.attrs import (
    BATCH_ATTR,
    BATCH_RECORD_PREFIX,
    ERROR_ATTR,
    HEARTBEAT_LOST_ATTR,
)
from optuna_grpc_storage.runner.counting import study_status

POLICY = {BATCH_RECORD_PREFIX + "b1": {"n_trials": 3, "max_retries": 2, "grace_period": 60}}
X = {"x": FloatDistribution(0, 1)}


def trial(number: int, state: TrialState, ago: float = 0.0, **attrs: object):
    done = datetime.datetime.now() - datetime.timedelta(seconds=ago)
    t = optuna.trial.create_trial(
        state=state, value=1.0 if state == TrialState.COMPLETE else None,
        params={"x": 0.5}, distributions=X, system_attrs={BATCH_ATTR: "b1", **attrs},
    )
    t.number = number
    if state.is_finished():
        t.datetime_start, t.datetime_complete = done, done
    return t


def counts(trials) -> tuple[int, ...]:
    s = study_status("s", trials, POLICY)
    return (s["count_total"], s["count_completed"], s["count_active"], s["count_succeeded"],
            s["count_failed"])


def test_a_retried_trial_counts_once_through_its_retry() -> None:
    lost = trial(1, TrialState.FAIL, **{HEARTBEAT_LOST_ATTR: 1})
    retry = trial(3, TrialState.COMPLETE, retry_history=[1], failed_trial=1,
                  **{HEARTBEAT_LOST_ATTR: 1})  # a retry copies the mark: not its own
    done = [trial(0, TrialState.COMPLETE), lost, trial(2, TrialState.COMPLETE), retry]
    assert counts(done) == (3, 3, 0, 3, 0)
    assert "stopped sending heartbeats" in study_status("s", done, POLICY)["last_error"]


def test_between_the_fail_and_its_retry_the_trial_is_still_active() -> None:
    """The two appends of fail_stale_trials: after the FAIL, before the retry exists, the
    study must not look complete (wait() would return with the retry still to run)."""
    lost = trial(1, TrialState.FAIL, **{HEARTBEAT_LOST_ATTR: 1})
    trials = [trial(0, TrialState.COMPLETE), lost, trial(2, TrialState.COMPLETE)]
    assert counts(trials) == (3, 2, 1, 2, 0)
    retry = trial(3, TrialState.WAITING, retry_history=[1], failed_trial=1)
    assert counts([*trials, retry]) == (3, 2, 0, 2, 0)


def test_a_fail_without_retry_is_final() -> None:
    stale_long_ago = trial(1, TrialState.FAIL, ago=120, **{HEARTBEAT_LOST_ATTR: 1})
    assert counts([trial(0, TrialState.COMPLETE), stale_long_ago]) == (2, 2, 0, 1, 1)
    out_of_retries = trial(1, TrialState.FAIL, retry_history=[7, 8],
                           **{HEARTBEAT_LOST_ATTR: 1})
    assert counts([out_of_retries]) == (1, 1, 0, 0, 1)
    raised = trial(1, TrialState.FAIL, **{ERROR_ATTR: "ValueError: boom"})
    assert counts([raised]) == (1, 1, 0, 0, 1)
    assert study_status("s", [raised], POLICY)["last_error"] == "trial 1: ValueError: boom"
    no_batch = trial(1, TrialState.FAIL, **{HEARTBEAT_LOST_ATTR: 1, BATCH_ATTR: "other"})
    assert counts([no_batch]) == (1, 1, 0, 0, 1)
