"""Waiting for trials, as AIAuto does it: `optimize(wait_option=..., wait_timeout=...)`,
`wait(trial_identifier=..., trialbatch_name=..., timeout=...)`.

Every wait polls `get_status`, which is also where a batch whose workers have all exited with
trials left is found and marked Failed (study.py): so a broken batch raises BatchFailedError
with its reason at once, instead of waiting out the timeout.
"""

from __future__ import annotations

import enum
import time
import warnings
from typing import TYPE_CHECKING, Any

from optuna_grpc_storage.runner.counting import FAILED
from optuna_grpc_storage.runner.errors import BatchFailedError, WaitTimeoutError

if TYPE_CHECKING:
    from optuna_grpc_storage.runner.study import StudyWrapper

POLL_INTERVAL = 0.5  # optimize's wait: local reads, cheap


class WaitOption(enum.Enum):
    """How long `optimize` blocks before it returns the batch's name."""

    WAIT_NO = "wait_no"  # return at once
    WAIT_ATLEAST_ONE_TRIAL = "wait_atleast_one"  # one trial finished, in any state (default)
    WAIT_ALL_TRIALS = "wait_all"  # every trial of the batch finished


def wait_option(value: Any) -> WaitOption:
    """A WaitOption, or its name (AIAuto: "WAIT_NO") or value ("wait_no") as a string."""
    if isinstance(value, WaitOption):
        return value
    if isinstance(value, str):
        for option in WaitOption:
            if value.strip().lower() in (option.name.lower(), option.value):
                return option
    raise ValueError(f"wait_option must be one of {', '.join(o.name for o in WaitOption)} "
                     f"(a WaitOption or its name), got {value!r}")


def check_timeout(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be None (no limit) or a positive number of seconds, "
                         f"got {value!r}")
    return float(value)


def failure(entry: dict[str, Any]) -> str:
    return "; ".join(c["message"] for c in entry["conditions"]) or "(no reason recorded)"


def wait_for_batch(study: StudyWrapper, name: str, option: WaitOption, timeout: float | None,
                   poll_interval: float = POLL_INTERVAL) -> dict[str, Any]:
    """Block until the batch meets `option`; its status entry. BatchFailedError if it can no
    longer finish, WaitTimeoutError after `timeout` seconds (the batch goes on)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        entry = study.get_status(trialbatch_name=name)["trialbatches"].get(name)
        if entry is not None:
            if entry["phase"] == FAILED:
                raise BatchFailedError(name, failure(entry))
            total, done = entry["count_total"], entry["count_completed"]
            need = 1 if option is WaitOption.WAIT_ATLEAST_ONE_TRIAL else total
            if option is WaitOption.WAIT_NO or (total and done >= need):
                if done and entry["count_failed"] == done:
                    warnings.warn(f"trial batch {name!r}: every finished trial failed so far "
                                  f"({done}); {entry['last_error']}", stacklevel=3)
                return entry
        if deadline is not None and time.monotonic() > deadline:
            done = entry["count_completed"] if entry else 0
            raise WaitTimeoutError(
                f"trial batch {name!r}: {done} of {entry['count_total'] if entry else '?'} "
                f"trials finished after {timeout}s; it goes on running: follow it with "
                f"get_status(trialbatch_name={name!r}) or wait(trialbatch_name={name!r})")
        time.sleep(poll_interval)


def wait_for_trial(study: StudyWrapper, number: int, trialbatch_name: str | None,
                   timeout: float | None, poll_interval: float) -> bool:
    """True once the trial has finished (any state), False when `timeout` passes first. Each
    poll also checks the batches' workers, so a trial of a dead batch ends (FAIL) rather than
    being waited for forever."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if study.is_trial_finished(number, trialbatch_name):
            return True
        if deadline is not None and time.monotonic() > deadline:
            return False
        study.get_status(trialbatch_name=trialbatch_name)
        time.sleep(poll_interval)


def wait_with_bar(study: StudyWrapper, trialbatch_name: str | None, timeout: float | None,
                  poll_interval: float, progress_bar: bool) -> dict[str, Any]:
    """The study's (or one batch's) trials until all have finished, with a progress bar; the
    final status. BatchFailedError when the batch (study-wide: any batch not failed before the
    wait began) can no longer finish; WaitTimeoutError after `timeout` seconds."""
    from tqdm.auto import tqdm

    deadline = None if timeout is None else time.monotonic() + timeout
    status = study.get_status(trialbatch_name=trialbatch_name)
    failed_before = {n for n, e in status["trialbatches"].items()
                     if e["phase"] == FAILED and trialbatch_name is None}
    bar = tqdm(desc=trialbatch_name or study.study_name, unit="trial",
               total=status["count_total"], disable=not progress_bar)
    try:
        while True:
            counts = status if trialbatch_name is None \
                else status["trialbatches"].get(trialbatch_name)
            if counts is None:
                raise ValueError(f"study {study.study_name!r} has no trial batch "
                                 f"{trialbatch_name!r}")
            bar.total, bar.n = counts["count_total"], counts["count_completed"]
            bar.set_postfix(active=counts["count_active"], failed=counts["count_failed"],
                            refresh=False)
            bar.refresh()
            for name, entry in status["trialbatches"].items():
                if entry["phase"] == FAILED and name not in failed_before:
                    raise BatchFailedError(name, failure(entry))
            if counts["count_completed"] >= counts["count_total"]:
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise WaitTimeoutError(
                    f"study {study.study_name!r}: {counts['count_completed']} of "
                    f"{counts['count_total']} trials done after {timeout}s")
            time.sleep(poll_interval)
            status = study.get_status(trialbatch_name=trialbatch_name)
    finally:
        bar.close()
