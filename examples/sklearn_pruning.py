"""scikit-learn on the digits dataset (it ships inside scikit-learn), with pruning: each trial
trains a linear classifier epoch by epoch, reports its validation accuracy after every epoch,
and stops early when the pruner sees it doing worse than the median of earlier trials.

    .venv/bin/python examples/sklearn_pruning.py [--quick]

The objective runs on the controller's workers (local processes here); the study records the
sampler and pruner, so every worker uses the same ones.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import optuna
from _proxy import proxy_endpoint

from optuna_grpc_storage import Controller, LocalLauncher

EPOCHS = 12


def objective(trial: optuna.Trial) -> float:
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.linear_model import SGDClassifier
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_train, X_valid, y_train, y_valid = train_test_split(X / 16.0, y, test_size=0.3,
                                                          random_state=0)
    model = SGDClassifier(
        alpha=trial.suggest_float("alpha", 1e-6, 1e-1, log=True),
        loss=trial.suggest_categorical("loss", ["hinge", "log_loss", "modified_huber"]),
        eta0=trial.suggest_float("eta0", 1e-4, 1e-1, log=True),
        learning_rate="constant", random_state=0,
    )
    accuracy = 0.0
    for epoch in range(EPOCHS):
        model.partial_fit(X_train, y_train, classes=np.unique(y))
        accuracy = model.score(X_valid, y_valid)
        trial.report(accuracy, epoch)           # an intermediate value per epoch
        if trial.should_prune():                 # worse than the median at this epoch
            raise optuna.TrialPruned()
    return accuracy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials (for the tests)")
    parser.add_argument("--study", default="digits-sgd-pruning")
    args = parser.parse_args()
    n_trials, parallelism = (10, 2) if args.quick else (40, 4)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with proxy_endpoint() as (endpoint, token), tempfile.TemporaryDirectory() as workdir:
        ac = Controller(token, endpoint=endpoint, launcher=LocalLauncher(Path(workdir)))
        study = ac.create_study(
            args.study, direction="maximize", sampler=optuna.samplers.TPESampler(seed=1),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
        )
        name = study.optimize(objective, n_trials=n_trials, parallelism=parallelism)
        status = study.wait()
        for process in study.launch_of(name).processes:  # local workers exit once all is done
            process.wait()
        real = study.get_study()
        print(f"{status['count_succeeded']} complete, {status['count_pruned']} pruned, "
              f"{status['count_failed']} failed of {status['count_total']} trials")
        for trial in real.get_trials(states=(optuna.trial.TrialState.PRUNED,)):
            print(f"  trial {trial.number} pruned after epoch {trial.last_step} at accuracy "
                  f"{trial.intermediate_values[trial.last_step]:.3f}")
        print(f"best accuracy {real.best_value:.4f} with {real.best_params}")
        return 0 if status["count_failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
