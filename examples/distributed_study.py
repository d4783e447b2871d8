"""The main job: a proxy on an embedded Redis, a token, and one study shared by 4 worker processes.

    python examples/distributed_study.py [--trials 200] [--workers 4]

Each worker is a separate process that knows only the proxy's address and its token (from
OPTUNA_GRPC_STORAGE_ENDPOINT / OPTUNA_GRPC_STORAGE_TOKEN), exactly as a trial Pod would.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import tempfile
import time

import optuna

from optuna_grpc_storage import GrpcJournalStorage
from storage_proxy.testing import ProxyProcess

STUDY = "demo-rosenbrock"


def objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -3, 3)
    y = trial.suggest_float("y", -3, 3)
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def worker(n_trials: int) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=STUDY, storage=GrpcJournalStorage(),
                              sampler=optuna.samplers.TPESampler())
    study.optimize(objective, n_trials=n_trials)
    return n_trials


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="storage-proxy-demo-") as data_dir:
        proxy = ProxyProcess(data_dir=data_dir)
        endpoint = proxy.start()
        print(f"proxy: storage-proxy serve on {endpoint}, embedded Redis in {data_dir}")
        try:
            token = proxy.issue_token("demo")
            print(f"token: issued for user 'demo' ({token[:12]}...)")
            os.environ["OPTUNA_GRPC_STORAGE_ENDPOINT"] = endpoint
            os.environ["OPTUNA_GRPC_STORAGE_TOKEN"] = token

            optuna.create_study(study_name=STUDY, storage=GrpcJournalStorage())
            shares = [args.trials // args.workers + (i < args.trials % args.workers)
                      for i in range(args.workers)]
            print(f"study: {STUDY!r}, {args.trials} trials on {args.workers} worker processes")
            started = time.perf_counter()
            with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
                pool.map(worker, shares)
            elapsed = time.perf_counter() - started

            study = optuna.load_study(study_name=STUDY, storage=GrpcJournalStorage())
            trials = study.get_trials()
            complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
            best = study.best_trial
            span = (max(t.datetime_complete for t in complete)
                    - min(t.datetime_start for t in trials)).total_seconds()
            print(f"trials: {len(trials)} ({len(complete)} complete); {len(trials) / span:.0f} "
                  f"trials/s from first start to last finish ({elapsed:.1f}s with process "
                  "start-up)")
            print(f"best trial: #{best.number} value={best.value:.6f} params="
                  + ", ".join(f"{k}={v:.4f}" for k, v in best.params.items()))
            ok = len(trials) == args.trials and math.isfinite(best.value)
        finally:
            code = proxy.stop()
            print(f"proxy: stopped (exit code {code})")
    return 0 if ok and code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
