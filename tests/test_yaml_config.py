"""YAML-defined experiments: the config is checked with errors that name the bad key, and the
objective built from it gives the session the config it describes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
import yaml

from optuna_grpc_storage.runner import specs
from optuna_grpc_storage.tools.experiment import SessionObjective, load_session
from optuna_grpc_storage.tools.yaml_config import ConfigError, load_config, parse_config

optuna.logging.set_verbosity(optuna.logging.WARNING)

GOOD = """
study_name: s
directions: [maximize, MINIMIZE]
n_trials: 7
parallelism: 3
timeout: 60
sampler: {class: NSGAIISampler, args: {seed: 3, population_size: 10,
          crossover: {class: SBXCrossover, args: {eta: 15.0}}}}
pruner:
  class: PatientPruner
  args: {wrapped_pruner: {class: MedianPruner, args: {n_startup_trials: 2}}, patience: 4}
params: {epochs: 3, model: {depth: 2}}
search_space:
  lr: {type: float, low: 1e-4, high: 1.0e-1, log: true}
  model.width: {type: int, low: 16, high: 256, step: 16}
  optimizer: [adam, sgd]
  dropout: {type: float, low: 0, high: 0.5, step: 0.1}
requirements: [scikit-learn]
"""


def test_a_good_config_maps_to_optuna_classes() -> None:
    e = parse_config(yaml.safe_load(GOOD))
    assert (e.study_name, e.directions, e.n_trials, e.parallelism, e.timeout) == \
        ("s", ["maximize", "minimize"], 7, 3, 60)
    assert type(e.sampler) is optuna.samplers.NSGAIISampler
    assert type(e.pruner) is optuna.pruners.PatientPruner
    assert specs.describe(e.pruner)["args"]["wrapped_pruner"] == \
        {"$class": "optuna.pruners.MedianPruner", "args": {"n_startup_trials": 2}}
    assert specs.describe(e.sampler)["args"]["seed"] == 3
    assert [(p.name, p.kind, p.low, p.high, p.step, p.log) for p in e.search_space] == [
        ("lr", "float", 1e-4, 0.1, None, True), ("model.width", "int", 16, 256, 16, False),
        ("optimizer", "categorical", None, None, None, False),
        ("dropout", "float", 0, 0.5, 0.1, False)]
    assert e.requirements == ("scikit-learn",)


@pytest.mark.parametrize(("change", "message"), [
    ({"search_space": {"lr": {"type": "float", "low": "abc", "high": 1}}},
     "search_space.lr.low: must be a number (got 'abc')"),
    ({"search_space": {"lr": {"type": "float", "low": 1, "hihg": 2}}},
     "search_space.lr.hihg: unknown key for a float parameter (expected low, high, step, log)"),
    ({"search_space": {"n": {"type": "int", "low": 1.5, "high": 4}}},
     "search_space.n.low: must be an integer (got 1.5)"),
    ({"search_space": {"n": {"type": "int", "low": 0, "high": 4, "log": True}}},
     "search_space.n.low: must be > 0 with log: true (got 0)"),
    ({"search_space": {"lr": {"type": "float", "low": 2, "high": 1}}},
     "search_space.lr.low: must not exceed high (2 > 1)"),
    ({"search_space": {"lr": {"type": "float", "low": 1, "high": 2, "log": True,
                              "step": 0.5}}},
     "search_space.lr.step: cannot be combined with log: true"),
    ({"search_space": {"lr": {"low": 1, "high": 2}}},
     "search_space.lr.type: must be one of float, int, categorical (got None)"),
    ({"search_space": {"opt": {"type": "categorical", "choices": []}}},
     "search_space.opt.choices: must be a non-empty list"),
    ({"search_space": {"opt": {"choices": [[1, 2]]}}},
     "search_space.opt.choices: each choice must be null, a boolean, a number or a string"),
    ({"search_space": {"epochs": [1, 2]}},
     "search_space.epochs: is also a static parameter (params.epochs); keep one of them"),
    ({"search_space": {"epochs.x": [1, 2]}},
     "search_space.epochs.x: params.epochs is not a mapping"),
    ({"search_space": {}}, "search_space: must be a mapping of at least one parameter"),
    ({"n_trial": 5}, "n_trial: unknown key (expected one of study_name"),
    ({"n_trials": 0}, "n_trials: must be a positive integer (got 0)"),
    ({"direction": "up"}, "direction: must be minimize or maximize (got 'up')"),
    ({"directions": ["maximize", 3]}, "directions[1]: must be minimize or maximize (got 3)"),
    ({"sampler": "MedianPruner"}, "sampler.class: 'MedianPruner' is not one of Optuna's "
                                  "samplers (BruteForceSampler, CmaEsSampler, GPSampler"),
    ({"sampler": {"class": "TPESampler", "args": {"sed": 1}}},
     "sampler.args: TypeError: TPESampler.__init__() got an unexpected keyword argument 'sed'"),
    ({"pruner": {"class": "MedianPruner", "args": [1]}},
     "pruner.args: must be a mapping of argument names to values"),
    ({"pruner": {"class": "PatientPruner", "args": {"wrapped_pruner": {"class": "Nope"}}}},
     "pruner.args.wrapped_pruner.class: 'Nope' is not one of Optuna's sampler or pruners"),
    ({"study_name": ""}, "study_name: must be a non-empty string"),
    ({"timeout": -1}, "timeout: must be a positive number of seconds or null (got -1)"),
])
def test_errors_name_the_bad_key(change: dict, message: str) -> None:
    raw = {"study_name": "s", "params": {"epochs": 3},
           "search_space": {"lr": {"type": "float", "low": 0.1, "high": 1}}}
    raw.update(change)
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert message in str(caught.value)


def test_every_problem_is_listed_with_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("study_name: s\nn_trials: many\nsearch_space:\n  lr: {type: float}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    lines = str(caught.value).splitlines()
    assert lines[0] == f"{path}:"
    assert set(lines[1:]) == {"  n_trials: must be a positive integer (got 'many')",
                              "  search_space.lr.low: must be a number (got None)",
                              "  search_space.lr.high: must be a number (got None)"}
    path.write_text("study_name: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(path)


SESSION = '''
def single_session(cfg, report=None):
    for step in range(cfg["epochs"]):
        if report is not None and report(step, cfg["lr"] * (step + 1)):
            break
    return cfg["lr"] * cfg["model"]["width"]

def seen(cfg):
    return [cfg["lr"], cfg["model"]["width"]]
'''


def test_the_objective_fills_cfg_and_reports(make_storage, tmp_path: Path) -> None:
    (tmp_path / "mysession.py").write_text(SESSION)
    session = load_session(f"{tmp_path / 'mysession.py'}:single_session")
    experiment = parse_config({
        "study_name": "s", "direction": "minimize", "params": {"epochs": 4, "model": {}},
        "search_space": {"lr": {"type": "float", "low": 0.1, "high": 1.0},
                         "model.width": {"type": "int", "low": 1, "high": 8}},
        "pruner": {"class": "ThresholdPruner", "args": {"upper": 0.9}},
    })
    study = optuna.create_study(study_name="s", storage=make_storage(),
                                pruner=experiment.pruner)
    objective = SessionObjective(session, experiment)
    assert objective.wants_report
    study.enqueue_trial({"lr": 0.2, "model.width": 3})  # every step below the threshold
    study.enqueue_trial({"lr": 0.5, "model.width": 2})  # 1.0 at step 1: pruned there
    study.optimize(objective, n_trials=2)
    done, pruned = study.trials
    assert done.state == optuna.trial.TrialState.COMPLETE
    assert done.value == pytest.approx(0.6) and len(done.intermediate_values) == 4
    assert pruned.state == optuna.trial.TrialState.PRUNED
    assert sorted(pruned.intermediate_values) == [0, 1]
    assert experiment.params == {"epochs": 4, "model": {}}  # each trial gets its own copy
    multi = parse_config({"study_name": "m", "directions": ["minimize", "maximize"],
                          "params": {"model": {}, "epochs": 1},
                          "search_space": {"lr": [0.5], "model.width": [4]}})
    wrong = SessionObjective(session, multi)  # returns one number for two directions
    with pytest.raises(TypeError, match="must return 2 numbers, one per direction"):
        wrong(optuna.create_study(directions=multi.directions).ask())
    seen = SessionObjective(load_session(f"{tmp_path / 'mysession.py'}:seen"), multi)
    assert not seen.wants_report
    assert seen(optuna.create_study(directions=multi.directions).ask()) == [0.5, 4.0]


def test_load_session_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pkg_for_session_test.py").write_text(SESSION)
    monkeypatch.chdir(tmp_path)  # 'module:function' is found from the current directory
    assert load_session("pkg_for_session_test:seen").__name__ == "seen"
    with pytest.raises(ConfigError, match="session: cannot import 'no_such_mod': "
                                          "ModuleNotFoundError"):
        load_session("no_such_mod:f")
    with pytest.raises(ConfigError, match="has no function 'nope'"):
        load_session("pkg_for_session_test:nope")
    with pytest.raises(ConfigError, match=r"session: no file 'missing\.py'"):
        load_session("missing.py:f")
    with pytest.raises(ConfigError, match=r"must be 'package\.module:function'"):
        load_session("justamodule")


def test_run_check_reports_config_errors_and_exit_codes(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(textwrap.dedent("""
        study_name: s
        search_space:
          lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: yes}
          width: {type: int, low: 1, high: 3, step: 0.5}
    """))
    env = {**os.environ, "OPTUNA_GRPC_STORAGE_ENDPOINT": "127.0.0.1:1"}
    out = subprocess.run([sys.executable, "-m", "optuna_grpc_storage.tools.cli", "run", str(config),
                          "--session", "x:y", "--check"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    assert "search_space.width.step: must be a positive integer or null (got 0.5)" in out.stderr
