"""The notebook flow end to end: Controller -> real worker processes -> real proxy -> Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState

from optuna_grpc_storage import Controller, LocalLauncher
from optuna_grpc_storage.runner import specs
from optuna_grpc_storage.runner.attrs import BATCH_ATTR
from optuna_grpc_storage.runner.worker import RetryCallback
from optuna_grpc_storage.storage.errors import AuthenticationError, ProxyUnavailableError

# Short heartbeats so a dead worker's trial is failed in seconds, not a minute; the grace
# period stays long enough that a live worker's late beat on a loaded 2-core CI machine is
# not mistaken for a death.
HEARTBEAT = {"heartbeat_interval": 0.5, "grace_period": 5.0}

NOTEBOOK_CELL = '''
import math
import os
import optuna
from optuna_grpc_storage.runner import specs

OFFSET = 2.0                       # a notebook global

def make_objective(scale: float):  # a closure over a local
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -10, 10)
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("sampler", type(trial.study.sampler).__name__)
        trial.set_user_attr("n_startup", trial.study.sampler._n_startup_trials)
        trial.set_user_attr("pruner", specs.describe(trial.study.pruner, "the pruner"))
        return scale * math.pow(x - OFFSET, 2)
    return objective

objective = make_objective(1.0)
'''


def notebook_cell(source: str) -> dict:
    """Run source as a notebook cell does: in a __main__ namespace, with no file behind it."""
    namespace: dict = {"__name__": "__main__"}
    exec(compile(source, "<notebook cell>", "exec", dont_inherit=True), namespace)
    return namespace


@pytest.fixture
def controller(proxy, token, tmp_path: Path) -> Controller:
    return Controller(token, endpoint=proxy.endpoint, launcher=LocalLauncher(tmp_path),
                      **HEARTBEAT)


def test_notebook_flow_end_to_end(controller: Controller) -> None:
    sampler = optuna.samplers.TPESampler(seed=1, n_startup_trials=5)
    pruner = optuna.pruners.PatientPruner(optuna.pruners.MedianPruner(n_startup_trials=3),
                                          patience=4)
    study = controller.create_study("cnn", direction="minimize", sampler=sampler, pruner=pruner)
    objective = notebook_cell(NOTEBOOK_CELL)["objective"]
    assert objective.__module__ == "__main__"

    name = study.optimize(objective, n_trials=12, parallelism=3, wait_option="WAIT_NO")
    launch = study.launch_of(name)
    assert len(launch.processes) == 3 and study.launches == [launch]
    status = study.get_status()  # optimize has returned at once: every trial exists
    assert status["count_total"] == 12 and status["count_completed"] < 12

    final = study.wait(timeout=180, poll_interval=0.2, progress_bar=False)
    assert final["count_total"] == final["count_completed"] == final["count_succeeded"] == 12
    assert (final["count_failed"], final["count_pruned"], final["count_active"]) == (0, 0, 0)
    assert final["last_error"] == "" and final["study_name"] == "cnn"
    assert final["updated_at"] and final["dashboard_url"] == ""

    real = study.get_study()
    trials = real.get_trials()
    assert len(trials) == 12 and all(t.state == TrialState.COMPLETE for t in trials)
    assert real.best_trial.value == pytest.approx((real.best_trial.params["x"] - 2) ** 2)
    # at most 3 at once: only the 3 launched processes ran trials, never overlapping more
    assert {t.user_attrs["pid"] for t in trials} <= {p.pid for p in launch.processes}
    events = sorted([(t.datetime_start, 1) for t in trials]
                    + [(t.datetime_complete, -1) for t in trials])
    running = [sum(step for _, step in events[: i + 1]) for i in range(len(events))]
    assert max(running) <= 3
    # sampler and pruner restored in the workers...
    assert {t.user_attrs["sampler"] for t in trials} == {"TPESampler"}
    assert {t.user_attrs["n_startup"] for t in trials} == {5}
    assert all(t.user_attrs["pruner"] == specs.describe(pruner) for t in trials)
    # ...and in get_study(), the same as the ones passed in (seed included)
    assert specs.first_difference(sampler, real.sampler) is None
    assert specs.describe(real.sampler) == specs.describe(sampler)
    assert specs.describe(real.pruner) == specs.describe(pruner)
    assert [p.wait(30) for p in launch.processes] == [0, 0, 0]  # all done, all clean


def test_the_same_token_gives_the_same_controller(proxy, token, new_user) -> None:
    a = Controller(token, endpoint=proxy.endpoint)
    assert Controller(token, endpoint=proxy.endpoint) is a
    assert Controller(new_user()[1], endpoint=proxy.endpoint) is not a
    assert token not in repr(a)
    assert Controller(token, endpoint=proxy.endpoint, grace_period=90).grace_period == 90
    with pytest.raises(ValueError, match="grace_period longer"):
        Controller(token, endpoint=proxy.endpoint, heartbeat_interval=5, grace_period=1)
    assert (a.heartbeat_interval, a.grace_period) == (10.0, 90)  # a refused change changes nothing


def test_a_wrong_token_or_address_fails_at_once(proxy, monkeypatch) -> None:
    with pytest.raises(AuthenticationError, match="refused") as e:
        Controller("ogs_not-a-token", endpoint=proxy.endpoint)
    assert "ogs_not-a-token" not in str(e.value)
    monkeypatch.setattr(Controller, "CONNECT_DEADLINE", 1.0)
    with pytest.raises(ProxyUnavailableError, match=r"127\.0\.0\.1:9"):
        Controller("ogs_x", endpoint="127.0.0.1:9")


FAILING_CELL = '''
import optuna

def objective(trial: optuna.Trial) -> float:
    x = trial.suggest_int("x", 0, 9)
    if trial.number % 2:
        raise ValueError(f"the model diverged at x={x}")
    return x
'''


def test_a_failing_objective_is_counted_and_explained(controller: Controller) -> None:
    study = controller.create_study("failing")
    study.optimize(notebook_cell(FAILING_CELL)["objective"], n_trials=6, parallelism=2)
    status = study.wait(timeout=120, poll_interval=0.2, progress_bar=False)
    assert (status["count_total"], status["count_completed"]) == (6, 6)
    assert (status["count_succeeded"], status["count_failed"]) == (3, 3)
    assert "ValueError: the model diverged at x=" in status["last_error"]
    failed = study.get_study().get_trials(states=(TrialState.FAIL,))
    assert sorted(t.number % 2 for t in failed) == [1, 1, 1]
    latest = max(failed, key=lambda t: t.datetime_complete)
    assert status["last_error"].startswith(f"trial {latest.number}: ")


KILLED_CELL = '''
import os
import time
import optuna

def make(marker: str):
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        if trial.number == 1:          # the first attempt of trial 1 hangs until killed
            with open(marker, "w") as f:
                f.write(str(os.getpid()))
            time.sleep(600)
        return x
    return objective
'''


def test_a_worker_killed_mid_trial_has_its_trial_failed_and_retried(
    controller: Controller, tmp_path: Path
) -> None:
    marker = tmp_path / "hanging.pid"
    study = controller.create_study("killed")
    objective = notebook_cell(KILLED_CELL)["make"](str(marker))
    launch = study.launch_of(study.optimize(objective, n_trials=5, parallelism=2))
    deadline = time.monotonic() + 60
    while not marker.exists() or not marker.read_text():
        assert time.monotonic() < deadline, "trial 1 never started"
        time.sleep(0.05)
    pid = int(marker.read_text())
    assert pid in {p.pid for p in launch.processes}
    os.kill(pid, signal.SIGKILL)
    killed_at = time.time()

    status = study.wait(timeout=120, poll_interval=0.2, progress_bar=False)
    real = study.get_study()
    trials = real.get_trials()
    # exactly n_trials counted: trial 1 is represented by its retry
    assert (status["count_total"], status["count_succeeded"], status["count_failed"]) == (5, 5, 0)
    assert len(trials) == 6
    (batch,) = status["trialbatches"].values()  # and once in its batch, where the retry is
    assert (batch["count_total"], batch["count_succeeded"], batch["phase"]) == (5, 5, "Succeeded")
    assert trials[1].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("retry_history") == [1]]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.state == TrialState.COMPLETE and retry.params == trials[1].params
    assert retry.system_attrs[BATCH_ATTR] == trials[1].system_attrs[BATCH_ATTR]
    assert "stopped sending heartbeats" in status["last_error"]
    # failed by the other worker once the grace period had passed since the last heartbeat
    failed_after = trials[1].datetime_complete.timestamp() - killed_at
    retried_after = retry.datetime_complete.timestamp() - killed_at
    assert failed_after > 0
    print(f"\nSIGKILL -> trial FAIL {failed_after:.2f}s, retry COMPLETE {retried_after:.2f}s "
          f"(heartbeat every {HEARTBEAT['heartbeat_interval']}s, grace "
          f"{HEARTBEAT['grace_period']}s)")


MULTI_CELL = '''
import optuna

def objective(trial: optuna.Trial) -> tuple[float, float]:
    x = trial.suggest_float("x", 0, 1)
    return x, (1 - x) ** 2
'''


def test_multi_objective(controller: Controller) -> None:
    study = controller.create_study("multi", directions=["minimize", "minimize"],
                                    sampler=optuna.samplers.NSGAIISampler(seed=3,
                                                                          population_size=4))
    study.optimize(notebook_cell(MULTI_CELL)["objective"], n_trials=8, parallelism=2)
    status = study.wait(timeout=120, poll_interval=0.2, progress_bar=False)
    assert status["count_succeeded"] == status["count_total"] == 8
    real = study.get_study()
    assert real.directions == [optuna.study.StudyDirection.MINIMIZE] * 2
    assert isinstance(real.sampler, optuna.samplers.NSGAIISampler)
    assert real.best_trials and all(len(t.values) == 2 for t in real.best_trials)


PRUNING_CELL = '''
import time
import optuna

def objective(trial: optuna.Trial) -> float:
    trial.suggest_float("x", 0, 1)
    for step in range(8):          # later trials report worse curves: they get pruned
        value = trial.number + step
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
        time.sleep(0.05)
    return value
'''


def test_pruning_with_intermediate_values(controller: Controller) -> None:
    pruner = optuna.pruners.PatientPruner(optuna.pruners.MedianPruner(n_startup_trials=2),
                                          patience=1)
    study = controller.create_study("pruned", pruner=pruner)
    study.optimize(notebook_cell(PRUNING_CELL)["objective"], n_trials=10, parallelism=2)
    status = study.wait(timeout=120, poll_interval=0.2, progress_bar=False)
    assert status["count_completed"] == status["count_total"] == 10
    assert status["count_pruned"] >= 1 and status["count_succeeded"] >= 2
    assert status["count_pruned"] + status["count_succeeded"] == 10
    pruned = study.get_study().get_trials(states=(TrialState.PRUNED,))
    assert all(t.intermediate_values and t.last_step < 7 for t in pruned)


def test_ask_and_tell_on_get_study(controller: Controller) -> None:
    study = controller.create_study("asktell", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(notebook_cell(FAILING_CELL)["objective"], n_trials=2, parallelism=1)
    study.wait(timeout=120, poll_interval=0.2, progress_bar=False)
    real = study.get_study()
    trial = real.ask()
    x = trial.suggest_float("y", 0, 1)
    status = study.get_status()
    assert (status["count_total"], status["count_active"]) == (3, 1)
    real.tell(trial, x)
    status = study.get_status()
    assert (status["count_total"], status["count_completed"], status["count_active"]) == (3, 3, 0)
    assert study.get_study().trials[-1].params == {"y": x}


def test_enqueued_trials_run_first_and_count_once(controller: Controller) -> None:
    study = controller.create_study("enqueued")
    study.get_study().enqueue_trial({"x": 7})
    study.optimize(notebook_cell(FAILING_CELL)["objective"], n_trials=3, parallelism=1)
    status = study.wait(timeout=120, poll_interval=0.2, progress_bar=False)
    assert status["count_total"] == 3
    assert study.get_study().trials[0].params == {"x": 7}


def test_timeout_stops_starting_trials(controller: Controller) -> None:
    study = controller.create_study("timeout")
    slow = notebook_cell("import time\ndef objective(trial):\n"
                         "    time.sleep(0.3)\n    return trial.suggest_float('x', 0, 1)\n")
    study.optimize(slow["objective"], n_trials=200, parallelism=1, timeout=4)
    status = study.wait(timeout=120, poll_interval=0.2, progress_bar=False)
    assert status["count_total"] == status["count_completed"] == 200
    assert status["count_succeeded"] < 200  # at 0.3 s a trial, 4 s leave time for ~13
    assert status["count_failed"] == 200 - status["count_succeeded"]
    assert "optimize timeout passed" in status["last_error"]


def test_dashboard_url_comes_from_the_configuration(proxy, new_user) -> None:
    controller = Controller(new_user()[1], endpoint=proxy.endpoint,
                            dashboard_url="https://dash.example/studies/{study_name}")
    study = controller.create_study("dash")
    assert study.get_status()["dashboard_url"] == "https://dash.example/studies/dash"


def test_argument_rules_raise_before_anything_is_launched(controller: Controller,
                                                         tmp_path: Path) -> None:
    study = controller.create_study("rules")
    objective = notebook_cell(FAILING_CELL)["objective"]
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("scikit-learn\n")
    refused = [
        {"n_trials": 0}, {"n_trials": -3}, {"n_trials": 2.5}, {"n_trials": True},
        {"parallelism": 0}, {"parallelism": "4"},
        {"requirements_file": str(requirements), "requirements_list": ["torch"]},
        {"requirements_list": "torch"},
        {"resources_requests": {"cpu": "lots"}}, {"resources_limits": {"memory": "1 GB"}},
        {"resources_limits": "1Gi"}, {"timeout": 0}, {"timeout": -5.0},
        {"use_gpu": "yes"}, {"runtime_image": ""},
    ]
    for kwargs in refused:
        with pytest.raises(ValueError):
            study.optimize(objective, **kwargs)
    with pytest.raises(ValueError, match="direction or directions"):
        controller.create_study("both", direction="minimize", directions=["minimize"])

    class MySampler(optuna.samplers.RandomSampler):
        pass

    with pytest.raises(ValueError, match="MySampler"):
        controller.create_study("custom", sampler=MySampler())
    with pytest.raises(ValueError, match="gamma"):
        controller.create_study("custom", sampler=optuna.samplers.TPESampler(gamma=lambda n: 1))
    with pytest.raises(KeyError):
        controller.study("custom")  # refused before anything was created
    locked = notebook_cell("import threading\nLOCK = threading.Lock()\n"
                           "def objective(trial):\n    with LOCK:\n        return 1.0\n")
    with pytest.raises(ValueError, match=r"objective → LOCK is <unlocked _thread.lock"):
        study.optimize(locked["objective"])
    assert study.get_status()["count_total"] == 0
    assert study.launches == [] and list(tmp_path.iterdir()) == [requirements]


def test_wait_says_so_when_every_worker_died(controller: Controller) -> None:
    study = controller.create_study("crashing")
    crash = notebook_cell("import os\ndef objective(trial):\n    os._exit(3)\n")
    study.optimize(crash["objective"], n_trials=2, parallelism=1, wait_option="WAIT_NO")
    with pytest.raises(RuntimeError, match="exited with code 3"):
        study.wait(timeout=120, poll_interval=0.2, progress_bar=False)


def test_the_readme_quick_start_runs() -> None:
    """examples/notebook_flow.py is the README's quick start with a throwaway proxy."""
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, str(root / "examples" / "notebook_flow.py"),
                             "--trials", "12", "--parallelism", "3"],
                            capture_output=True, text=True, timeout=240, cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "'count_succeeded': 12, 'count_pruned': 0, 'count_failed': 0, 'count_total': 12" \
        in result.stdout
    assert "best params: {'x': " in result.stdout


SLOW_CELL = '''
import os
import time
import optuna

def make(marker: str, go: str):
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        if trial.number == 0:           # runs until the test has failed it elsewhere
            open(marker, "w").close()
            deadline = time.monotonic() + 60
            while not os.path.exists(go) and time.monotonic() < deadline:
                time.sleep(0.05)
        return x
    return objective
'''


def test_a_live_worker_whose_trial_was_failed_meanwhile_carries_on(
    proxy, token, tmp_path: Path, make_storage
) -> None:
    """Someone with a shorter grace period fails a trial that is still running: the worker's
    result is refused, the worker logs it and goes on; the retry runs; nothing crashes."""
    controller = Controller(token, endpoint=proxy.endpoint, launcher=LocalLauncher(tmp_path),
                            heartbeat_interval=1.0, grace_period=1.5)
    study = controller.create_study("late")
    marker, go = tmp_path / "started", tmp_path / "go"
    launch = study.launch_of(study.optimize(
        notebook_cell(SLOW_CELL)["make"](str(marker), str(go)), n_trials=3, parallelism=1,
        wait_option="WAIT_NO"))
    impatient = optuna.load_study(study_name="late", storage=make_storage(
        heartbeat_interval=0.1, grace_period=0.2, heartbeat_stale_trial_callback=RetryCallback()))
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    while impatient.trials[0].state == TrialState.RUNNING:
        assert time.monotonic() < deadline
        fail_stale_trials(impatient)
        time.sleep(0.1)
    go.touch()  # now the worker finishes trial 0 and tries to tell its result

    status = study.wait(timeout=120, poll_interval=0.2, progress_bar=False)
    assert (status["count_total"], status["count_succeeded"]) == (3, 3)
    trials = study.get_study().trials
    assert trials[0].state == TrialState.FAIL and len(trials) == 4
    assert [t.state for t in trials if t.system_attrs.get("retry_history") == [0]] == \
        [TrialState.COMPLETE]
    assert launch.processes[0].wait(30) == 0
    assert "was failed by another worker while it ran here" in \
        (launch.directory / "worker-0.log").read_text()


def test_local_requirements_are_installed_only_when_asked(proxy, token, tmp_path: Path) -> None:
    objective = notebook_cell(FAILING_CELL)["objective"]
    study = Controller(token, endpoint=proxy.endpoint, launcher=LocalLauncher(tmp_path / "a"),
                       **HEARTBEAT).create_study("reqs")
    with pytest.warns(UserWarning, match=r"does not install \['optuna'\]"):
        study.optimize(objective, n_trials=1, requirements_list=["optuna"])
    Controller(token, endpoint=proxy.endpoint,
               launcher=LocalLauncher(tmp_path / "b", install_requirements=True))
    launch = study.launch_of(study.optimize(objective, n_trials=1,
                                            requirements_list=["optuna  # ours"]))
    assert "already satisfied: optuna" in (launch.directory / "pip.log").read_text()
    assert study.wait(timeout=120, poll_interval=0.2, progress_bar=False)["count_total"] == 2
