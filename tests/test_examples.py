"""Every example runs, in quick mode, against the test proxy (the examples use the proxy named
by OPTUNA_GRPC_STORAGE_ENDPOINT/TOKEN when set), with real worker processes; the tests then
read the studies the examples left. The quick start (examples/notebook_flow.py) is run by
tests/test_controller.py::test_the_readme_quick_start_runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from optuna_grpc_storage.runner import specs
from optuna_grpc_storage.runner.attrs import PRUNER_ATTR, SAMPLER_ATTR

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def attrs(study: optuna.Study) -> dict:
    return study._storage.get_study_system_attrs(study._study_id)


def run_example(proxy, token: str, *args: str, cwd: Path = EXAMPLES) -> str:
    env = {**os.environ, "OPTUNA_GRPC_STORAGE_ENDPOINT": proxy.endpoint,
           "OPTUNA_GRPC_STORAGE_TOKEN": token}
    result = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                            timeout=240, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_sklearn_pruning(proxy, token, make_storage) -> None:
    out = run_example(proxy, token, str(EXAMPLES / "sklearn_pruning.py"), "--quick")
    study = optuna.load_study(study_name="digits-sgd-pruning", storage=make_storage())
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) == len(study.trials) == 10
    assert {t.state for t in finished} <= {TrialState.COMPLETE, TrialState.PRUNED}
    for t in finished:  # every trial reported per epoch; a pruned one stopped early
        assert sorted(t.intermediate_values) == list(range(len(t.intermediate_values)))
        assert len(t.intermediate_values) == t.last_step + 1
        # pruned after the 2 warm-up steps, at the latest at the last epoch's check (11)
        assert t.last_step == 11 if t.state == TrialState.COMPLETE else 2 <= t.last_step <= 11
    pruned = [t for t in finished if t.state == TrialState.PRUNED]
    assert f"{10 - len(pruned)} complete, {len(pruned)} pruned, 0 failed of 10 trials" in out
    assert f"best accuracy {study.best_value:.4f}" in out and study.best_value > 0.8


def test_multi_objective_prints_the_pareto_front(proxy, token, make_storage) -> None:
    out = run_example(proxy, token, str(EXAMPLES / "multi_objective.py"), "--quick")
    study = optuna.load_study(study_name="digits-accuracy-vs-size", storage=make_storage())
    assert len(study.trials) == 12 and all(t.state == TrialState.COMPLETE for t in study.trials)
    front = study.best_trials
    assert f"Pareto front: {len(front)} trials" in out
    for t in front:
        assert f"{t.number:>5}  {t.values[0]:>8.4f}  {int(t.values[1]):>6}" in out
    # nothing on the front is beaten on both accuracy and size by another trial
    for t in front:
        assert not any(o.values[0] >= t.values[0] and o.values[1] <= t.values[1]
                       and o.values != t.values for o in study.trials)
    assert attrs(study)[SAMPLER_ATTR]["$class"] == "optuna.samplers.NSGAIISampler"


def test_ask_tell_notebook(proxy, token, make_storage) -> None:
    out = run_example(proxy, token, str(EXAMPLES / "ask_tell_notebook.py"), "--quick")
    study = optuna.load_study(study_name="digits-svc-ask-tell", storage=make_storage())
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE] * 5 + [TrialState.FAIL]
    assert study.trials[0].params == {"C": 1.0, "kernel": "rbf"}  # the enqueued point first
    assert f"best accuracy {study.best_value:.4f}" in out
    assert len([line for line in out.splitlines() if line.startswith("trial ")]) == 5


def test_yaml_experiment_runs_from_the_shell(proxy, token, make_storage, tmp_path) -> None:
    config = EXAMPLES / "yaml_experiment" / "config.yaml"
    out = run_example(proxy, token, "-m", "optuna_grpc_storage.tools.cli", "run", str(config),
                      "--session", str(EXAMPLES / "yaml_experiment" / "train.py") +
                      ":single_session", "--n-trials", "6", "--workdir", str(tmp_path),
                      "--quiet", cwd=tmp_path)  # from elsewhere: the session travels by value
    study = optuna.load_study(study_name="digits-sgd-yaml", storage=make_storage())
    assert len(study.trials) == 6
    assert {t.state for t in study.trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert set(study.trials[0].params) == {"alpha", "eta0", "model.penalty"}
    assert all(t.intermediate_values for t in study.trials)  # report() reached the pruner
    assert specs.build(attrs(study)[SAMPLER_ATTR])._n_startup_trials == 5
    assert attrs(study)[PRUNER_ATTR] == {
        "$class": "optuna.pruners.MedianPruner",
        "args": {"n_startup_trials": 3, "n_warmup_steps": 2}}
    assert f"best value {study.best_value:.6g}" in out
    # The same study again, with other directions: refused, naming the key.
    bad = tmp_path / "bad.yaml"
    bad.write_text(config.read_text().replace("direction: maximize", "direction: minimize"))
    env = {**os.environ, "OPTUNA_GRPC_STORAGE_ENDPOINT": proxy.endpoint,
           "OPTUNA_GRPC_STORAGE_TOKEN": token}
    refused = subprocess.run([sys.executable, "-m", "optuna_grpc_storage.tools.cli", "run",
                              str(bad), "--session", "train:single_session"], env=env, text=True,
                             capture_output=True, timeout=120, cwd=EXAMPLES / "yaml_experiment")
    assert refused.returncode == 2
    assert "directions: study 'digits-sgd-yaml' exists with directions ['maximize']" \
        in refused.stderr
    assert len(optuna.load_study(study_name="digits-sgd-yaml", storage=make_storage()).trials) \
        == 6


def test_artifacts_and_logs(proxy, token, make_storage) -> None:
    out = run_example(proxy, token, str(EXAMPLES / "artifacts_and_logs.py"), "--quick")
    study = optuna.load_study(study_name="artifacts-demo", storage=make_storage())
    assert len(study.trials) == 8
    best = study.best_trial
    assert f"best trial {best.number}: loss {best.value:.4f}, checkpoint " in out
    kept = sorted(t.number for t in study.trials if t.state == TrialState.COMPLETE)
    kept = sorted(kept, key=lambda n: (study.trials[n].value, n))[:3]
    assert f"trials that kept their checkpoint (top_n_artifacts=3): {sorted(kept)}" in out
    shown = next((t for t in study.trials if t.state == TrialState.FAIL), study.trials[0])
    assert f"trial_number: {shown.number}, epoch 4: loss" in out  # TrialController lines
    assert f"trained with lr={shown.params['lr']:.5f}" in out
    if shown.state == TrialState.FAIL:
        assert "RuntimeError: diverged at lr=" in out and "Traceback" in out


# What the examples need beyond the imports they name (Optuna imports these when called).
IMPLIED = {"trials_dataframe": "pandas"}


def test_make_run_installs_everything_the_examples_import() -> None:
    """Issue 17, item 5: scikit-learn (three examples) and pandas (`trials_dataframe` in
    ask_tell_notebook.py, which crashed after 25 trials) came with nothing `make run`
    installs. Now the `examples` extra holds them, and `make run` installs it."""
    import ast
    import re
    from importlib import metadata

    tomllib = pytest.importorskip("tomllib")
    root = EXAMPLES.parent
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    makefile = (root / "Makefile").read_text()
    extras = re.search(r"pip install -q -e '\.\[([a-z,]+)\]'([^\n]*)", makefile)
    assert extras and "examples" in extras.group(1).split(",")
    installed = [*project["dependencies"], *extras.group(2).split()]
    for extra in extras.group(1).split(","):
        installed += project["optional-dependencies"][extra]
    names = {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower().replace("_", "-")
             for r in installed}
    distributions = metadata.packages_distributions()
    local = {p.stem for p in EXAMPLES.rglob("*.py")} | {"optuna_grpc_storage", "storage_proxy"}
    needed: dict[str, set[str]] = {}
    for path in EXAMPLES.rglob("*.py"):
        source = path.read_text()
        modules = {name for word, name in IMPLIED.items() if word in source}
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module.split(".")[0])
        for module in modules - local - set(sys.stdlib_module_names):
            for dist in distributions.get(module, [module]):
                needed.setdefault(dist.lower().replace("_", "-"), set()).add(path.name)
    assert {"scikit-learn", "pandas"} <= set(needed)
    missing = {dist: sorted(files) for dist, files in needed.items() if dist not in names}
    assert missing == {}
