"""Per-batch status and waiting, as AIAuto reports and waits: `optimize` returns the batch's
name, `get_status()["trialbatches"]` counts each batch (and the ask/tell pseudo-batch) so
they add up to the study's counts, WaitOption, wait_timeout, a batch that can no longer finish
raising with its reason, is_trial_finished and wait(trial)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState

from optuna_grpc_storage import (
    BatchFailedError,
    Controller,
    LocalLauncher,
    StudyWrapper,
    WaitOption,
    WaitTimeoutError,
)
from optuna_grpc_storage.runner.attrs import BATCH_ATTR
from optuna_grpc_storage.runner.batch import Batch
from optuna_grpc_storage.runner.launchers.base import Launch, Launcher
from tests.test_controller import HEARTBEAT, notebook_cell

COUNTS = ("count_active", "count_succeeded", "count_pruned", "count_failed", "count_total",
          "count_completed")
QUICK = notebook_cell("def objective(trial):\n    return trial.suggest_float('x', 0, 1)\n")
# Trials numbered in `hold` wait for the file `go` (at most a minute); the others return.
GATED_CELL = '''
import os
import time

def make(go, hold):
    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        deadline = time.monotonic() + 60
        while trial.number in hold and not os.path.exists(go) and time.monotonic() < deadline:
            time.sleep(0.05)
        if x > 2:
            raise AssertionError("never")
        return x
    return objective
'''


def gated(go: Path, hold: set[int] | range) -> Any:
    return notebook_cell(GATED_CELL)["make"](str(go), set(hold))


@pytest.fixture
def controller(proxy, token, tmp_path: Path) -> Controller:
    return Controller(token, endpoint=proxy.endpoint, launcher=LocalLauncher(tmp_path / "w"),
                      **HEARTBEAT)


@pytest.fixture
def study(controller: Controller) -> Any:
    wrapper = controller.create_study("batches")
    yield wrapper
    for launch in wrapper.launches:
        launch.stop()


def add_up(status: dict[str, Any]) -> None:
    for key in COUNTS:
        assert sum(e[key] for e in status["trialbatches"].values()) == status[key], key


def test_per_batch_counts_add_up_to_the_study(study: StudyWrapper) -> None:
    first = study.optimize(QUICK["objective"], n_trials=3, parallelism=1,
                           wait_option=WaitOption.WAIT_ALL_TRIALS)
    second = study.optimize(QUICK["objective"], n_trials=2, parallelism=2,
                            wait_option="WAIT_ALL_TRIALS")
    assert isinstance(first, str) and first != second and study.last_trialbatch_name == second
    real = study.get_study()
    trial = real.ask()
    real.tell(trial, trial.suggest_float("y", 0, 1))
    real.enqueue_trial({"x": 0.5})  # not claimed by any optimize call yet: WAITING, local
    status = study.get_status()
    add_up(status)
    assert list(status["trialbatches"]) == [first, second, "ask_tell_local"]
    one, two, local = status["trialbatches"].values()
    assert (one["count_total"], one["count_succeeded"], one["phase"]) == (3, 3, "Succeeded")
    assert (two["count_total"], two["n_trials"], two["phase"]) == (2, 2, "Succeeded")
    assert (local["count_total"], local["count_succeeded"], local["phase"]) == (2, 1, "Running")
    assert one["trialbatch_name"] == first and one["conditions"] == [] and one["created"]
    assert status["count_total"] == 7 and "completed_trials" not in one

    only = study.get_status(trialbatch_name=first, include_trials=True)
    assert list(only["trialbatches"]) == [first] and only["count_total"] == 7  # flat: study
    records = only["trialbatches"][first]["completed_trials"]
    trials = {t.number: t for t in real.trials}
    assert sorted(records) == sorted(str(n) for n, t in trials.items()
                                     if t.system_attrs.get(BATCH_ATTR) == first)
    for key, record in records.items():
        t = trials[int(key)]
        assert record["trialNumber"] == t.number and record["state"] == "COMPLETE"
        assert record["value"] == t.value and record["values"] == [t.value]
        assert record["params"] == t.params and record["userAttrs"] == t.user_attrs
        assert record["startTime"] == t.datetime_start.isoformat()
        assert record["endTime"] == t.datetime_complete.isoformat()
    local_only = study.get_status("ask_tell_local", include_trials=True)["trialbatches"]
    assert list(local_only["ask_tell_local"]["completed_trials"]) == [str(trial.number)]
    assert study.get_status(trialbatch_name="no-such-batch")["trialbatches"] == {}


def test_ask_on_get_study_never_takes_a_batch_trial(study: StudyWrapper,
                                                    tmp_path: Path) -> None:
    """Optuna's ask() pops WAITING trials first; the batch's are its workers'."""
    go = tmp_path / "go"
    name = study.optimize(gated(go, range(100)), n_trials=4, parallelism=1,
                          wait_option="WAIT_NO")
    real = study.get_study()
    deadline = time.monotonic() + 60
    while study.get_status(name)["trialbatches"][name]["count_active"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    waiting = real.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 3  # still visible as they are
    asked = real.ask()
    assert BATCH_ATTR not in real.trials[asked.number].system_attrs
    assert asked.number == 4  # a new trial, after the batch's
    real.tell(asked, asked.suggest_float("x", 0, 1))
    real.enqueue_trial({"x": 0.25})
    enqueued = real.ask()  # the user's enqueued trial is still taken
    assert enqueued.suggest_float("x", 0, 1) == 0.25
    real.tell(enqueued, 0.25)
    go.touch()
    status = study.wait(timeout=120, poll_interval=0.2, progress_bar=False)
    add_up(status)
    batch = status["trialbatches"][name]
    assert (batch["count_total"], batch["count_succeeded"]) == (4, 4)
    assert status["trialbatches"]["ask_tell_local"]["count_total"] == 2


def test_wait_options(study: StudyWrapper, tmp_path: Path) -> None:
    go = tmp_path / "go"
    objective = gated(go, {1, 2})
    name = study.optimize(objective, n_trials=3, parallelism=2, wait_option="wait_no")
    entry = study.get_status(name)["trialbatches"][name]
    assert entry["count_completed"] == 0 and entry["phase"] in ("Pending", "Running")
    go.touch()
    study.wait(trialbatch_name=name, timeout=120, poll_interval=0.2, progress_bar=False)

    go.unlink()  # trials 3 and 4 run at once; 4 and 5 are held until `go` appears again
    objective = gated(go, {4, 5})
    name = study.optimize(objective, n_trials=3, parallelism=2)  # WAIT_ATLEAST_ONE_TRIAL
    entry = study.get_status(name)["trialbatches"][name]
    assert entry["count_completed"] >= 1 and entry["count_active"] >= 1
    assert entry["phase"] == "Running"
    go.touch()
    name = study.optimize(objective, n_trials=3, parallelism=2, wait_option="WAIT_ALL_TRIALS")
    entry = study.get_status(name)["trialbatches"][name]
    assert (entry["count_completed"], entry["phase"]) == (3, "Succeeded")
    before = study.get_status()["count_total"]
    for refused in ({"wait_option": "WAIT_SOME"}, {"wait_option": 1},
                    {"wait_timeout": 0}, {"wait_timeout": "10"}):
        with pytest.raises(ValueError, match="WAIT_NO, WAIT_ATLEAST_ONE_TRIAL, WAIT_ALL_TRIALS"
                           if "wait_option" in refused else "wait_timeout"):
            study.optimize(objective, n_trials=1, **refused)
    assert study.get_status()["count_total"] == before and len(study.launches) == 3


def test_wait_timeout_raises_and_the_batch_goes_on(study: StudyWrapper, tmp_path: Path) -> None:
    go = tmp_path / "go"
    with pytest.raises(WaitTimeoutError, match=r"0 of 2 trials finished after 1\.0s") as e:
        study.optimize(gated(go, {0, 1}), n_trials=2, parallelism=2, wait_timeout=1)
    assert isinstance(e.value, TimeoutError) and isinstance(e.value, RuntimeError)
    name = study.last_trialbatch_name
    go.touch()
    status = study.wait(trialbatch_name=name, timeout=120, poll_interval=0.2,
                        progress_bar=False)
    assert status["trialbatches"][name]["count_succeeded"] == 2
    with pytest.raises(WaitTimeoutError):
        study.wait(timeout=0.5, trialbatch_name=study.optimize(
            gated(tmp_path / "never", {2}), n_trials=1, wait_option="WAIT_NO"),
            poll_interval=0.1, progress_bar=False)


def test_a_batch_whose_workers_all_died_raises_with_the_reason(study: StudyWrapper,
                                                               controller: Controller) -> None:
    crash = notebook_cell("import os\ndef objective(trial):\n    os._exit(3)\n")
    with pytest.raises(BatchFailedError, match=r"every worker exited with 3 of 3 trials "
                                               r"unfinished(.|\n)*exited with code 3") as e:
        study.optimize(crash["objective"], n_trials=3, parallelism=1)  # the default wait
    assert isinstance(e.value, ValueError) and isinstance(e.value, RuntimeError)  # as AIAuto
    name = e.value.trialbatch_name
    status = study.get_status(name)
    batch = status["trialbatches"][name]
    assert batch["phase"] == "Failed"
    (condition,) = batch["conditions"]
    assert (condition["type"], condition["status"], condition["reason"]) == \
        ("Failed", "True", "WorkersExited")
    assert "exited with code 3" in condition["message"] and condition["last_transition_time"]
    # the trials left ended FAIL saying so, so the study's counts (and B5's loop) complete
    assert (status["count_total"], status["count_completed"], status["count_failed"]) == \
        (3, 3, 3)
    assert "trial batch" in status["last_error"] and "failed" in status["last_error"]
    # any other view of the study (another process, a restarted notebook) sees it Failed
    other = controller.study("batches").get_status(name)["trialbatches"][name]
    assert other["phase"] == "Failed" and other["conditions"] == batch["conditions"]
    with pytest.raises(BatchFailedError):
        study.wait(trialbatch_name=name, timeout=10, progress_bar=False)
    assert study.wait(timeout=10, progress_bar=False)["count_completed"] == 3  # failed before
    assert study.is_trial_finished(0, name) and study.wait(0, timeout=10)


class Idle(Launcher):
    """Starts nothing; its launches report `alive` as told."""

    def __init__(self, alive: bool | None) -> None:
        self.state = alive

    def launch(self, batch: Batch) -> Launch:
        launcher = self

        class Nothing(Launch):
            def alive(self) -> bool | None:
                return launcher.state

            def explain(self) -> str:
                return "nothing was started"

        return Nothing()


def test_phases_pending_and_failed_without_workers(proxy, token) -> None:
    launcher = Idle(None)  # unknown (a cluster that does not answer): never given up
    study = Controller(token, endpoint=proxy.endpoint, launcher=launcher).create_study("idle")
    name = study.optimize(QUICK["objective"], n_trials=2, wait_option="WAIT_NO")
    for _ in range(3):
        entry = study.get_status()["trialbatches"][name]
        assert (entry["phase"], entry["count_active"], entry["count_total"]) == ("Pending", 0, 2)
        time.sleep(0.6)
    launcher.state = False  # every worker gone: seen twice, a second apart, then Failed
    first = time.monotonic()
    again = study.controller.create_study("idle")  # a later cell: another wrapper, same study
    assert again.launch_of(name) is study.launches[0]
    with pytest.raises(BatchFailedError, match=r"every worker exited with 2 of 2 trials "
                                               r"unfinished.*\nnothing was started"):
        again.wait(trialbatch_name=name, timeout=30, poll_interval=0.1, progress_bar=False)
    assert time.monotonic() - first >= 1.0


def test_is_trial_finished_and_waiting_for_one_trial(study: StudyWrapper,
                                                     tmp_path: Path) -> None:
    go = tmp_path / "go"
    name = study.optimize(gated(go, {1}), n_trials=2, parallelism=2)  # trial 0 finishes
    assert study.wait(0, timeout=60) is True
    assert study.is_trial_finished(0) and study.is_trial_finished("0", name)
    assert study.is_trial_finished(1, name) is False
    assert study.wait(trial_identifier=1, trialbatch_name=name, timeout=0.5,
                      poll_interval=0.1) is False  # AIAuto: False on timeout, no raise
    assert study.is_trial_finished(7) is False  # no such trial yet
    assert study.is_trial_finished(0, "ask_tell_local") is False  # another batch's
    for bad in ("pod-abc", -1, 1.0, True):
        with pytest.raises(ValueError, match="by its number"):
            study.is_trial_finished(bad)
    go.touch()
    assert study.wait(1, name, timeout=60, poll_interval=0.1) is True
    status = study.wait(timeout=60, poll_interval=0.2, progress_bar=False)
    assert status["trialbatches"][name]["phase"] == "Succeeded"


def test_a_worker_on_another_python_says_so(study: StudyWrapper, tmp_path: Path) -> None:
    """cloudpickle needs the notebook's Python minor version in the workers: a worker on
    another one exits before unpickling, saying which image to pick, and the batch fails with
    that reason instead of an obscure unpickling error."""
    from dataclasses import replace

    launcher = study.controller.launcher
    original = launcher.launch
    launcher.launch = lambda batch: original(replace(batch, python="2.7"))
    try:
        with pytest.raises(BatchFailedError, match=r"pickled by Python 2\.7; this worker runs "
                                                   r"Python 3\.\d+(.|\n)*with Python 2\.7"):
            study.optimize(QUICK["objective"], n_trials=1, parallelism=1)
    finally:
        launcher.launch = original
