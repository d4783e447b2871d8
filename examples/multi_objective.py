"""A multi-objective study: accuracy against model size. Random forests on the digits dataset
(it ships inside scikit-learn); a bigger forest is more accurate but costs more nodes. NSGA-II
searches both at once and the study's Pareto front is the set of best trade-offs: no other
trial is both more accurate and smaller.

    .venv/bin/python examples/multi_objective.py [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import optuna
from _proxy import proxy_endpoint

from optuna_grpc_storage import Controller, LocalLauncher


def objective(trial: optuna.Trial) -> tuple[float, int]:
    from sklearn.datasets import load_digits
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_train, X_valid, y_train, y_valid = train_test_split(X, y, test_size=0.3, random_state=0)
    model = RandomForestClassifier(
        n_estimators=trial.suggest_int("n_estimators", 1, 40, log=True),
        max_depth=trial.suggest_int("max_depth", 2, 16),
        min_samples_leaf=trial.suggest_int("min_samples_leaf", 1, 8),
        random_state=0, n_jobs=1,
    ).fit(X_train, y_train)
    nodes = sum(tree.tree_.node_count for tree in model.estimators_)
    return model.score(X_valid, y_valid), nodes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials (for the tests)")
    parser.add_argument("--study", default="digits-accuracy-vs-size")
    args = parser.parse_args()
    n_trials, parallelism = (12, 2) if args.quick else (60, 4)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with proxy_endpoint() as (endpoint, token), tempfile.TemporaryDirectory() as workdir:
        ac = Controller(token, endpoint=endpoint, launcher=LocalLauncher(Path(workdir)))
        study = ac.create_study(
            args.study, directions=["maximize", "minimize"],
            sampler=optuna.samplers.NSGAIISampler(population_size=8, seed=1),
        )
        name = study.optimize(objective, n_trials=n_trials, parallelism=parallelism)
        status = study.wait()
        for process in study.launch_of(name).processes:  # local workers exit once all is done
            process.wait()
        front = sorted(study.get_study().best_trials, key=lambda t: t.values[1])
        print(f"{status['count_succeeded']} of {status['count_total']} trials complete; "
              f"Pareto front: {len(front)} trials")
        print(f"{'trial':>5}  {'accuracy':>8}  {'nodes':>6}  params")
        for t in front:
            print(f"{t.number:>5}  {t.values[0]:>8.4f}  {int(t.values[1]):>6}  {t.params}")
        return 0 if status["count_succeeded"] == status["count_total"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
