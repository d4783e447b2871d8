"""The README's quick start, runnable: a notebook's distributed study against a throwaway proxy.

    python examples/notebook_flow.py [--trials 100] [--parallelism 4]

The operator's part (a proxy on an embedded Redis, a token) is done here first; everything in
`notebook()` is what a data scientist types into a notebook.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import optuna

from optuna_grpc_storage import Controller, LocalLauncher
from storage_proxy.testing import ProxyProcess


def notebook(token: str, endpoint: str, n_trials: int, parallelism: int,
             workdir: Path) -> bool:
    ac = Controller(token, endpoint=endpoint,
                    launcher=LocalLauncher(workdir))  # the default, with its logs in workdir
    study = ac.create_study(
        "cnn", direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=1),
        pruner=optuna.pruners.PatientPruner(optuna.pruners.MedianPruner(), patience=4),
    )

    def objective(trial: optuna.Trial) -> float:  # defined right here, no file needed
        x = trial.suggest_float("x", -10, 10)
        return (x - 2) ** 2

    name = study.optimize(objective, n_trials=n_trials, parallelism=parallelism)
    print("optimize returned once a trial had finished:", study.get_status(name)["trialbatches"])
    status = study.wait()
    print("after wait:", status)
    real = study.get_study()
    print("best params:", real.best_trial.params, "value:", round(real.best_value, 6))
    for process in study.launch_of(name).processes:  # let the workers finish before the proxy stops
        process.wait()
    return status["count_succeeded"] == status["count_total"] == n_trials


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--parallelism", type=int, default=4)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="storage-proxy-demo-") as data_dir:
        proxy = ProxyProcess(data_dir=data_dir)
        endpoint = proxy.start()
        try:
            ok = notebook(proxy.issue_token("demo"), endpoint, args.trials, args.parallelism,
                          Path(data_dir) / "workers")
        finally:
            proxy.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
