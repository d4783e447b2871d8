"""What a trial prints is kept with the trial and outlives its worker: stdout and stderr at
the file-descriptor level (prints, os.write, child processes, the traceback of a failure),
bounded to the last few MiB, shown by `optuna-grpc-storage logs`, followed live with
--follow; and AIAuto's TrialController lines as the trial's optuna-dashboard note."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna_dashboard import get_note

from optuna_grpc_storage import Controller, GrpcArtifactStore, LocalLauncher, TrialController
from optuna_grpc_storage.runner.trial_controller import NOTE_MAX_CHARS
from optuna_grpc_storage.runner.trial_output import MAX_LOG_BYTES, log_artifact_id, log_of

optuna.logging.set_verbosity(optuna.logging.WARNING)


def loud(trial: optuna.Trial) -> float:
    """Prints by every route; trial 2 fails, trial 3 floods its output."""
    import os
    import subprocess
    import sys

    import optuna_grpc_storage as ogs

    print(f"print of trial {trial.number}")
    sys.stderr.write(f"stderr of trial {trial.number}\n")
    os.write(1, f"fd 1 of trial {trial.number}\n".encode())
    subprocess.run(["echo", f"child of trial {trial.number}"], check=True)
    ogs.TrialController(trial).log(f"tc line of trial {trial.number}")
    if trial.number == 2:
        raise ValueError("the model diverged")
    if trial.number == 3:
        line = "y" * 1023 + "\n"
        sys.stdout.write(line * (6 << 10))  # 6 MiB
        print("last line of trial 3")
    return float(trial.number)


def cli(proxy, token: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPTUNA_GRPC_STORAGE_ENDPOINT": proxy.endpoint,
           "OPTUNA_GRPC_STORAGE_TOKEN": token}
    return subprocess.run([sys.executable, "-m", "optuna_grpc_storage.tools.cli", *args],
                          env=env, capture_output=True, timeout=timeout)


def run_batch(proxy, token: str, tmp_path: Path, objective, name: str, n: int,
              parallelism: int = 2) -> Controller:
    controller = Controller(token, endpoint=proxy.endpoint, launcher=LocalLauncher(tmp_path))
    study = controller.create_study(name, direction="minimize")
    batch = study.optimize(objective, n_trials=n, parallelism=parallelism,
                           wait_option="WAIT_ALL_TRIALS", wait_timeout=180)
    for process in study.launch_of(batch).processes:
        assert process.wait(60) == 0
    return controller


def test_every_trials_output_is_kept_and_shown(proxy, token, tmp_path) -> None:
    controller = run_batch(proxy, token, tmp_path, loud, "loud", 4)
    study = controller.study("loud")
    trials = study.get_study().trials
    store = GrpcArtifactStore(proxy.endpoint, token)
    for trial in trials:
        text = log_of(store, "default", trial).decode()
        for route in ("print", "stderr", "fd 1", "child", "tc line") if trial.number != 3 else ():
            assert f"{route} of trial {trial.number}" in text, (trial.number, text[:500])
        # optuna-dashboard lists it with the trial's artifacts
        meta = trial.system_attrs[f"artifacts:{log_artifact_id('default', trial._trial_id)}"]
        assert f"trial-{trial.number}-output.log" in meta
    failed = log_of(store, "default", trials[2]).decode()
    assert "Traceback (most recent call last)" in failed
    assert "ValueError: the model diverged" in failed
    assert study.get_status()["last_error"] == "trial 2: ValueError: the model diverged"
    flooded = log_of(store, "default", trials[3])
    assert len(flooded) <= MAX_LOG_BYTES + 100 and flooded.startswith(b"[... ")
    assert flooded.rstrip().endswith(b"last line of trial 3")
    # the worker's own log (the Pod's) still got everything
    assert "print of trial 0" in "".join(p.read_text() for p in tmp_path.rglob("worker-*.log"))

    one = cli(proxy, token, "logs", "loud", "2")
    assert one.returncode == 0, one.stderr
    assert b"ValueError: the model diverged" in one.stdout and b"==> trial" not in one.stdout
    every = cli(proxy, token, "logs", "loud")
    assert every.returncode == 0, every.stderr
    headers = [line for line in every.stdout.decode().splitlines() if line.startswith("==> ")]
    assert headers == ["==> trial 0 (COMPLETE) <==", "==> trial 1 (COMPLETE) <==",
                       "==> trial 2 (FAIL) <==", "==> trial 3 (COMPLETE) <=="]
    missing = cli(proxy, token, "logs", "nope")
    assert missing.returncode == 1 and b"there is no study 'nope'" in missing.stderr
    assert token.encode() not in every.stdout + every.stderr


def slow_printer(gate: str):
    """An objective that prints a line, waits for the file `gate`, prints another."""

    def objective(trial: optuna.Trial) -> float:
        import pathlib
        import time

        print("first line", flush=True)
        deadline = time.monotonic() + 60
        while not pathlib.Path(gate).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        print("second line", flush=True)
        return 1.0

    return objective


def test_logs_follow_a_running_trial(proxy, token, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OPTUNA_GRPC_STORAGE_LOG_UPLOAD_SECONDS", "0.5")
    gate = tmp_path / "go"
    controller = Controller(token, endpoint=proxy.endpoint, launcher=LocalLauncher(tmp_path))
    study = controller.create_study("slow", direction="minimize")
    batch = study.optimize(slow_printer(str(gate)), n_trials=1, parallelism=1,
                           wait_option="WAIT_NO")
    env = {**os.environ, "OPTUNA_GRPC_STORAGE_ENDPOINT": proxy.endpoint,
           "OPTUNA_GRPC_STORAGE_TOKEN": token}
    follower = subprocess.Popen([sys.executable, "-m", "optuna_grpc_storage.tools.cli", "logs",
                                 "slow", "0", "--follow"], env=env, stdout=subprocess.PIPE)
    try:
        _wait_for(lambda: _trial_started(study))
        assert follower.stdout.readline() == b"first line\n"  # while the trial still runs
        assert not study.get_study().trials[0].state.is_finished()
        gate.touch()
        assert follower.stdout.readline() == b"second line\n"
        assert follower.wait(60) == 0  # it ends with the trial
    finally:
        follower.kill()
        for process in study.launch_of(batch).processes:
            process.wait(60)


def _trial_started(study) -> bool:
    trials = study.get_study().trials
    return bool(trials) and trials[0].state.name == "RUNNING"


def _wait_for(check, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_trial_controller_writes_the_dashboards_note(make_storage) -> None:
    study = optuna.create_study(storage=make_storage())
    trial = study.ask()
    tc = TrialController(trial)
    assert TrialController(trial) is tc  # one per trial
    for i in range(12):
        tc.log(f"epoch {i}")
    tc.flush()
    note = get_note(trial)  # read back by optuna-dashboard's own code
    assert note.startswith("[00001] epoch 0\n----------\n[00002] epoch 1")
    assert note.endswith("[00012] epoch 11")
    with pytest.raises(ValueError, match="reserved"):
        tc.set_user_attr("artifact_id", "x")
    tc.set_user_attr("lr", 0.1)
    for i in range(3000):  # far beyond the note's size: the newest lines stay
        tc.log(f"line {i} " + "z" * 40)
    TrialController.finish(trial)
    note = get_note(trial)
    assert len(note) <= NOTE_MAX_CHARS + 100
    assert note.startswith("[... ") and note.endswith("[03012] line 2999 " + "z" * 40)
    study.tell(trial, 1.0)
    assert study.trials[0].user_attrs == {"lr": 0.1}
    frozen = study.trials[0]
    TrialController(frozen).log("only logged")  # a FrozenTrial (ask/tell): no error
