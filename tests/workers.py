"""Functions run in child processes by the tests (importable, so 'spawn' can find them)."""

from __future__ import annotations

import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)


def quadratic(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -10, 10)
    y = trial.suggest_int("y", 0, 5)
    return (x - 2) ** 2 + y


def optimize(storage: optuna.storages.BaseStorage, study_name: str, n_trials: int) -> int:
    """Run n_trials of `quadratic`; return how many trials this worker ran."""
    study = optuna.load_study(study_name=study_name, storage=storage)
    ran = []
    study.optimize(quadratic, n_trials=n_trials, callbacks=[lambda s, t: ran.append(t.number)])
    return len(ran)


def run_enqueued(storage: optuna.storages.BaseStorage, study_name: str, n_trials: int) -> list:
    """Pop trials (enqueued ones first) and return the (number, x) pairs this worker ran."""
    study = optuna.load_study(study_name=study_name, storage=storage)
    seen = []

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_int("x", 0, 10_000)
        seen.append((trial.number, x))
        return x

    study.optimize(objective, n_trials=n_trials)
    return seen


def optimize_counting(storage, study_name: str, n_trials: int) -> tuple[int, int, int]:
    """Run n_trials of `quadratic`; return (trials, appends, reads) this worker made."""
    study = optuna.load_study(study_name=study_name, storage=storage)
    study.optimize(quadratic, n_trials=n_trials)
    calls = storage.grpc_backend.calls
    return n_trials, calls["append"], calls["read"]


def optimize_hanging(storage: optuna.storages.BaseStorage, study_name: str, marker: str) -> None:
    """Run one trial that announces itself in `marker` and then hangs until killed."""
    import os
    import time

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(600)
        return 0.0

    optuna.load_study(study_name=study_name, storage=storage).optimize(objective, n_trials=1)


def optimize_slowly(storage: optuna.storages.BaseStorage, study_name: str, n_trials: int,
                    seconds: float) -> int:
    """Like optimize, with an objective that takes `seconds`, so faults land mid-study."""
    import time

    def objective(trial: optuna.Trial) -> float:
        value = quadratic(trial)
        time.sleep(seconds)
        return value

    study = optuna.load_study(study_name=study_name, storage=storage)
    ran = []
    study.optimize(objective, n_trials=n_trials, callbacks=[lambda s, t: ran.append(t.number)])
    return len(ran)
