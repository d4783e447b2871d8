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
