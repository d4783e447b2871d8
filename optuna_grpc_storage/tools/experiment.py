"""Experiments defined in YAML: training code that knows nothing of Optuna, and a config that
says what to search (optuna_grpc_storage.tools.yaml_config):

    optuna-grpc-storage run config.yaml --session pkg.module:single_session

`single_session(cfg) -> float` gets the static params with one value of each search-space
parameter put in, and returns the value to optimise (a sequence for several directions). With
a second parameter it gets `report(step, value) -> bool`, which records an intermediate value
and answers whether to stop; the trial is then pruned. The study is created (or loaded) through
the Controller with the config's sampler and pruner, and runs on the controller's workers: the
session and its module travel to them by value, as a notebook's objective does.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import importlib
import importlib.util
import inspect
import json
import os
import sys
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import optuna

from optuna_grpc_storage.runner.controller import Controller
from optuna_grpc_storage.runner.launchers.base import Launcher
from optuna_grpc_storage.tools.yaml_config import ConfigError, Experiment, is_number

# -- the objective -------------------------------------------------------------------------


class SessionObjective:
    """Optuna objective around `single_session(cfg)`; travels to the workers by value."""

    def __init__(self, session: Callable[..., Any], experiment: Experiment) -> None:
        self.session = session
        self.params = experiment.params
        self.space = experiment.search_space
        self.n_objectives = len(experiment.directions)
        positional = [q for q in inspect.signature(session).parameters.values()
                      if q.kind in (q.POSITIONAL_ONLY, q.POSITIONAL_OR_KEYWORD, q.VAR_POSITIONAL)]
        self.wants_report = len(positional) >= 2

    def __call__(self, trial: optuna.Trial) -> Any:
        cfg = copy.deepcopy(self.params)
        for param in self.space:
            *outer, last = param.name.split(".")
            node = cfg
            for part in outer:
                node = node.setdefault(part, {})
            node[last] = param.suggest(trial)
        if not self.wants_report:
            return self._check(self.session(cfg))
        stopped: list[int] = []

        def report(step: int, value: float) -> bool:
            """Record an intermediate value; True means stop: the trial is pruned."""
            trial.report(value, step)
            if trial.should_prune():
                stopped.append(step)
                return True
            return False

        result = self.session(cfg, report if self.n_objectives == 1 else None)
        if stopped:
            raise optuna.TrialPruned(f"pruned at step {stopped[0]}")
        return self._check(result)

    def _check(self, result: Any) -> Any:
        name = getattr(self.session, "__name__", "the session")
        if self.n_objectives == 1:
            if not is_number(result) and not hasattr(result, "__float__"):
                raise TypeError(f"{name} returned {result!r}; it must return one number")
            return float(result)
        if not isinstance(result, (list, tuple)) or len(result) != self.n_objectives:
            raise TypeError(f"{name} returned {result!r}; it must return "
                            f"{self.n_objectives} numbers, one per direction")
        return [float(v) for v in result]


def load_session(ref: str) -> Callable[..., Any]:
    """'package.module:function' (found from the current directory too) or
    'path/to/file.py:function'. ConfigError saying what is wrong."""
    target, _, attr = ref.rpartition(":")
    if not target or not attr:
        raise ConfigError(f"session: {ref!r} must be 'package.module:function' or "
                          "'path/to/file.py:function'")
    try:
        if target.endswith(".py"):
            path = Path(target).resolve()
            if not path.is_file():
                raise ConfigError(f"session: no file {target!r}")
            sys.path.insert(0, str(path.parent))  # for the file's own imports
            name = path.stem
            if getattr(sys.modules.get(name), "__file__", str(path)) != str(path):
                name = f"_session_{abs(hash(str(path)))}"  # never shadow another module
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(target)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"session: cannot import {target!r}: {type(e).__name__}: {e}") \
            from None
    function = getattr(module, attr, None)
    if not callable(function):
        raise ConfigError(f"session: {target!r} has no function {attr!r}")
    return function


@contextlib.contextmanager
def by_value(function: Callable[..., Any]) -> Iterator[None]:
    """Send the session's module with it (cloudpickle by value), unless it is installed: the
    workers may not have the user's files."""
    module = sys.modules.get(getattr(function, "__module__", "") or "")
    file = getattr(module, "__file__", None)
    installed = [Path(p).resolve() for key in ("stdlib", "platstdlib", "purelib", "platlib")
                 if (p := sysconfig.get_paths().get(key))]
    own = module is not None and file is not None and module.__name__ != "__main__" and not any(
        root in Path(file).resolve().parents for root in installed)
    if own:
        cloudpickle.register_pickle_by_value(module)
    try:
        yield
    finally:
        if own:
            cloudpickle.unregister_pickle_by_value(module)


# -- running ----------------------------------------------------------------------------------


def run_experiment(experiment: Experiment, session: Callable[..., Any], *,
                   endpoint: str | None = None, token: str | None = None,
                   launcher: Launcher | None = None, wait: bool = True,
                   progress: bool = True) -> tuple[Any, dict[str, Any]]:
    """Create or load the study, launch `n_trials` trials of the session on the controller's
    workers and (with `wait`) block until they are done; (StudyWrapper, status)."""
    controller = Controller(token, endpoint, launcher, journal=experiment.journal)
    storage = controller.storage
    try:
        existing = storage.get_study_directions(storage.get_study_id_from_name(
            experiment.study_name))
    except KeyError:
        existing = None
    if existing is not None and [d.name.lower() for d in existing] != experiment.directions:
        raise ConfigError(
            f"directions: study {experiment.study_name!r} exists with directions "
            f"{[d.name.lower() for d in existing]}, the config says {experiment.directions}; "
            "use another study_name")
    study = controller.create_study(experiment.study_name, directions=experiment.directions,
                                    sampler=experiment.sampler, pruner=experiment.pruner)
    objective = SessionObjective(session, experiment)
    with by_value(session):
        name = study.optimize(objective, n_trials=experiment.n_trials,
                              parallelism=experiment.parallelism, timeout=experiment.timeout,
                              requirements_list=list(experiment.requirements) or None,
                              wait_option="WAIT_NO")  # waited for below, with a progress bar
    if not wait:
        return study, study.get_status()
    status = study.wait(progress_bar=progress)
    for process in getattr(study.launch_of(name), "processes", ()):  # local workers exit
        process.wait()
    return study, status


def summary(study: optuna.Study) -> str:
    """The best trial, or the Pareto front of a multi-objective study, as text."""
    if len(study.directions) == 1:
        try:
            best = study.best_trial
        except ValueError:
            return "no trial completed"
        return f"best value {best.value:.6g} (trial {best.number}) with {best.params}"
    names = ", ".join(d.name.lower() for d in study.directions)
    lines = [f"Pareto front ({len(study.best_trials)} trials; values: {names}):"]
    for t in sorted(study.best_trials, key=lambda t: t.values):
        lines.append(f"  trial {t.number}: {[round(v, 6) for v in t.values]} {t.params}")
    return "\n".join(lines)


def run_command(args: argparse.Namespace) -> int:
    """`optuna-grpc-storage run CONFIG`: check a YAML experiment, or run it and wait."""
    from optuna_grpc_storage.tools.yaml_config import load_config

    experiment = load_config(args.config)
    changes = {k: v for k, v in (("n_trials", args.n_trials), ("parallelism", args.parallelism),
                                 ("journal", args.journal)) if v is not None}
    experiment = dataclasses.replace(experiment, **changes)
    ref = args.session or experiment.session
    if not ref:
        raise ConfigError("session: give --session pkg.module:function (or `session:` in the "
                          "config)")
    session = load_session(ref)
    if args.check:
        print(f"{args.config}: OK; study {experiment.study_name!r}, {experiment.n_trials} "
              f"trials, {len(experiment.search_space)} parameters, session {ref}")
        return 0
    study, status = run_experiment(experiment, session, endpoint=args.endpoint,
                                   token=args.token, launcher=_launcher(args),
                                   wait=not args.no_wait, progress=not args.quiet)
    print(json.dumps(status))
    if args.no_wait:
        return 0
    print(summary(study.get_study()))
    if status["count_failed"] == status["count_total"]:
        print(f"error: every trial failed; last error: {status['last_error']}", file=sys.stderr)
        return 1
    return 0


def _launcher(args: argparse.Namespace) -> Launcher | None:
    if args.kubernetes_namespace:
        from optuna_grpc_storage.runner.launchers import KubernetesLauncher

        return KubernetesLauncher(namespace=args.kubernetes_namespace)
    if args.workdir:
        from optuna_grpc_storage.runner.launchers import LocalLauncher

        return LocalLauncher(Path(args.workdir))
    return None
