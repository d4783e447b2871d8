"""Every Python block of the AIAuto client's README runs here unchanged but for the import line
(`import optuna_grpc_storage as aiauto`) and the token, with the endpoint from
OPTUNA_GRPC_STORAGE_ENDPOINT, on the LocalLauncher against a real proxy.

Blocks run in order in one notebook namespace where the README chains them (2-6, 7-8, 15-16).
Two blocks train a CNN on CIFAR-10 with torchvision and fvcore (a download, two packages
not installed): there the training body gets tiny stand-ins (see `pytorch_stand_in`) while
every call and argument of the block around it stays as written. The README's
`time.sleep(5)`/`(10)` calls (AIAuto creates studies asynchronously; here nothing needs
them) are capped at a second, which only leaves the blocks less slack.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

import optuna_grpc_storage as aiauto
from optuna_grpc_storage import Controller, LocalLauncher, StudyWrapper
from optuna_grpc_storage.runner import specs
from optuna_grpc_storage.runner.attrs import BATCH_ATTR
from optuna_grpc_storage.runner.images import default_image
from optuna_grpc_storage.storage.connection import ENDPOINT_ENV, TOKEN_ENV
from tests.aiauto_notebook import Notebook, blocks, python_blocks, shared_readme

HEARTBEAT = {"heartbeat_interval": 0.5, "grace_period": 5.0}
SLEEP_CAP = 1.0
COUNTS = ("count_active", "count_succeeded", "count_pruned", "count_failed", "count_total",
          "count_completed")
# Which test runs which block (by the README line its code starts on).
RUN_BY = {35: "test_b1_runtime_images", 48: "test_b2_to_b6_execution_flow",
          56: "test_b2_to_b6_execution_flow", 64: "test_b2_to_b6_execution_flow",
          75: "test_b2_to_b6_execution_flow", 82: "test_b2_to_b6_execution_flow",
          96: "test_b7_b8_writefile_objective", 113: "test_b7_b8_writefile_objective",
          129: "test_b9_quick_start_simple", 168: "test_b10_quick_start_pytorch",
          309: "test_b11_quick_start_multi_objective", 449: "test_b12_quick_start_ask_tell",
          533: "test_b13_llm_distributed", 555: "test_b14_llm_ask_tell",
          591: "test_b15_b16_sampler_pruner_and_optuna_api",
          613: "test_b15_b16_sampler_pruner_and_optuna_api"}


def _notebook(proxy: Any, token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
              configure: bool) -> Iterator[Notebook]:
    monkeypatch.setenv(ENDPOINT_ENV, proxy.endpoint)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    work = tmp_path / "notebook"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(work))
    real_sleep = time.sleep
    monkeypatch.setattr(time, "sleep", lambda s: real_sleep(min(s, SLEEP_CAP)))
    if configure:  # what the operator sets up; the blocks' AIAutoController(token) is this one
        Controller(token, launcher=LocalLauncher(tmp_path / "workers"), **HEARTBEAT)
    notebook = Notebook(token, work)
    yield notebook
    for value in list(notebook.ns.values()):  # no worker outlives its test
        if isinstance(value, StudyWrapper):
            for launch in value.launches:
                launch.stop()


@pytest.fixture
def notebook(proxy, token, tmp_path, monkeypatch) -> Iterator[Notebook]:
    yield from _notebook(proxy, token, tmp_path, monkeypatch, configure=True)


@pytest.fixture
def bare_notebook(proxy, token, tmp_path, monkeypatch) -> Iterator[Notebook]:
    """Nothing set up but the endpoint in the environment."""
    yield from _notebook(proxy, token, tmp_path, monkeypatch, configure=False)


def finish(study: StudyWrapper, timeout: float = 240) -> dict[str, Any]:
    """Wait for every trial, then check that the batches' counts add up to the study's."""
    status = study.wait(timeout=timeout, poll_interval=0.2, progress_bar=False)
    for key in COUNTS:
        assert sum(e[key] for e in status["trialbatches"].values()) == status[key], key
    return status


def only_batch(status: dict[str, Any]) -> dict[str, Any]:
    (entry,) = status["trialbatches"].values()
    return entry


# -- the README's own checks ------------------------------------------------------------


def test_every_python_block_is_run_by_a_test() -> None:
    found = blocks()
    assert len(found) == 16 and set(found) == set(RUN_BY)
    names = {name for name in globals() if name.startswith("test_")}
    assert set(RUN_BY.values()) <= names


def test_the_vendored_readme_is_the_reference() -> None:
    reference = shared_readme()
    if reference is None:
        pytest.skip("no shared/reference/aiauto-client-README.md beside this checkout")
    assert python_blocks(reference.read_text(encoding="utf-8")) == list(blocks().values())


# -- the blocks -------------------------------------------------------------------------


def test_b1_runtime_images(notebook: Notebook, capsys) -> None:
    notebook.run_block(35)
    printed = capsys.readouterr().out.splitlines()
    assert printed == aiauto.RUNTIME_IMAGES and isinstance(aiauto.RUNTIME_IMAGES, list)
    assert printed[0] == default_image(False) and printed[1] == default_image(True)
    assert all(image.strip() for image in printed)


USER_OBJECTIVE = '''
def func_with_parameter_trial(trial):  # the user's own: the README leaves it to them
    x = trial.suggest_float('x', -10, 10)
    y = trial.suggest_float('y', -10, 10)
    return -((x - 2) ** 2 + (y - 3) ** 2)  # the study of this flow maximizes
'''


def test_b2_to_b6_execution_flow(notebook: Notebook, capsys) -> None:
    ns = notebook.run(USER_OBJECTIVE)
    notebook.run_block(48)
    assert ns["ac"] is aiauto.Controller(notebook.token) and \
        aiauto.AIAutoController is aiauto.Controller
    notebook.run_block(56)
    study = ns["study_wrapper"]
    assert study.get_study().direction == optuna.study.StudyDirection.MAXIMIZE
    notebook.run_block(64)  # optimize(..., runtime_image=aiauto.RUNTIME_IMAGES[0])
    batch = only_batch(study.get_status())
    assert batch["count_total"] == 4 and batch["count_completed"] >= 1  # it waited for one
    notebook.run_block(75)  # the polling loop ends
    status = study.get_status()
    assert status["count_completed"] == status["count_total"] == status["count_succeeded"] == 4
    assert only_batch(status)["phase"] == "Succeeded"
    notebook.run_block(82)
    best = study.get_study().best_trial
    assert capsys.readouterr().out.strip() == str(best.params) and set(best.params) == {"x", "y"}
    assert best.value == max(t.value for t in study.get_study().trials)


def test_b7_b8_writefile_objective(notebook: Notebook) -> None:
    pytest.importorskip("torch")  # the objective imports it in the worker
    try:
        notebook.run_block(96)  # %%writefile my_objective.py
        written = (notebook.directory / "my_objective.py").read_text()
        assert written.startswith("import optuna_grpc_storage as aiauto\nimport optuna\n")
        ns = notebook.run_block(113)
    finally:
        notebook.forget_modules("my_objective")
    study = ns["study"]
    assert ns["objective"].__module__ == "my_objective"
    status = finish(study)
    assert (status["count_total"], status["count_succeeded"]) == (10, 10)
    assert study.get_study().direction == optuna.study.StudyDirection.MINIMIZE
    launch = study.launch_of(only_batch(status)["trialbatch_name"])
    assert len(launch.processes) == 2


def test_b9_quick_start_simple(notebook: Notebook) -> None:
    study = notebook.run_block(129)["study_wrapper"]
    status = finish(study)
    assert (status["count_total"], status["count_succeeded"]) == (100, 100)
    batch = only_batch(status)  # the block drops optimize's return value; get_status has it
    assert batch["phase"] == "Succeeded" and batch["n_trials"] == 100
    assert len(study.launch_of(batch["trialbatch_name"]).processes) == 4
    assert study.study_name == "simple_optimization"


# The CIFAR-10 blocks: what changes inside their objective, and why.
TORCHVISION = "    from torchvision import transforms, datasets\n"
TORCHVISION_STAND_IN = '''\
    torch.set_num_threads(1)  # stand-in: 4 workers share 2 cores
    from torch.utils.data import TensorDataset

    class transforms:  # stand-in for torchvision.transforms (not installed)
        ToTensor = staticmethod(lambda: None)
        Normalize = staticmethod(lambda mean, std: None)

    class datasets:  # stand-in for torchvision.datasets: 16 random images, no download
        @staticmethod
        def CIFAR10(root, train, download, transform):
            g = torch.Generator().manual_seed(2 * trial.number + train)
            return TensorDataset(torch.randn(16, 3, 32, 32, generator=g),
                                 torch.randint(0, 10, (16,), generator=g))
'''
FVCORE = "    from fvcore.nn import FlopCountAnalysis\n"
FVCORE_STAND_IN = '''\
    class FlopCountAnalysis:  # stand-in for fvcore.nn.FlopCountAnalysis (not installed)
        def __init__(self, model, inputs):
            self.model, self.inputs = model, inputs

        def total(self):
            from torch.utils.flop_counter import FlopCounterMode
            with FlopCounterMode(display=False) as counter:
                self.model(*self.inputs)
            return counter.get_total_flops()
'''
# The README's `def forward` is indented as a function of the objective, not a method of Net
# (so `model(inputs)` raises NotImplementedError, in AIAuto too): indented one level more.
FORWARD = re.compile(r"^    def forward\(self, x\):\n(?:        .*\n)+", re.M)


def pytorch_stand_in(source: str) -> str:
    """The block with its training made tiny: torchvision's CIFAR10 and transforms and fvcore's
    FlopCountAnalysis replaced by stand-ins defined where they were imported (so the calls
    `datasets.CIFAR10(root=..., train=..., download=True, transform=[...])` and
    `FlopCountAnalysis(model, (dummy_input,)).total()` stay as written), DataLoader's
    `num_workers=2` made 0 (two processes forked per epoch would dominate the test), and
    `forward` made a method. The study, the suggest calls, the model, the loop, the
    report/prune logic and the optimize call are the README's."""
    assert source.count(TORCHVISION) == 1 and len(FORWARD.findall(source)) == 1
    source = source.replace(TORCHVISION, TORCHVISION_STAND_IN)
    source = source.replace(FVCORE, FVCORE_STAND_IN)
    source = FORWARD.sub(lambda m: re.sub(r"^", "    ", m.group(0), flags=re.M), source)
    assert source.count("num_workers=2") == 2
    return source.replace("num_workers=2", "num_workers=0")


def test_b10_quick_start_pytorch(notebook: Notebook) -> None:
    pytest.importorskip("torch")
    source = pytorch_stand_in(blocks()[168].source)
    assert "use_gpu=True" in source and "resources_requests={" in source  # as written
    study = notebook.run_block(168, source)["study_wrapper"]
    status = finish(study, timeout=270)
    assert status["count_total"] == status["count_completed"] == 100
    assert status["count_failed"] == 0, status["last_error"]
    assert status["count_succeeded"] + status["count_pruned"] == 100
    real = study.get_study()
    assert specs.describe(real.pruner) == specs.describe(
        optuna.pruners.PatientPruner(optuna.pruners.MedianPruner(), patience=4))
    for t in real.trials:
        assert set(t.params) == {"learning_rate", "momentom", "batch_size", "epochs"}
        assert t.params["batch_size"] in (16, 32, 64, 128) and t.params["epochs"] % 10 == 0
        steps = t.params["epochs"] if t.state == TrialState.COMPLETE else t.last_step + 1
        assert sorted(t.intermediate_values) == list(range(steps))
    for t in real.get_trials(states=(TrialState.PRUNED,)):  # only after max(50, epochs // 5)
        assert t.last_step >= 50


def test_b11_quick_start_multi_objective(notebook: Notebook) -> None:
    pytest.importorskip("torch")
    source = pytorch_stand_in(blocks()[309].source)
    assert source.count(FVCORE_STAND_IN) == 1
    with pytest.warns(UserWarning, match=r"does not install \['fvcore'\]"):
        study = notebook.run_block(309, source)["study_wrapper"]
    status = finish(study, timeout=270)
    assert (status["count_total"], status["count_succeeded"]) == (100, 100), \
        status["last_error"]
    real = study.get_study()
    assert real.directions == [optuna.study.StudyDirection.MINIMIZE] * 2
    flops = {t.values[1] for t in real.trials}
    assert len(flops) == 1 and flops.pop() > 0  # the same LeNet for every trial
    assert real.best_trials


def test_b12_quick_start_ask_tell(notebook: Notebook) -> None:
    ns = notebook.run_block(449)
    status = ns["study_wrapper"].get_status()
    assert list(status["trialbatches"]) == ["ask_tell_local"]
    local = status["trialbatches"]["ask_tell_local"]
    assert (local["count_succeeded"], local["count_total"], local["phase"]) == (1, 1,
                                                                                "Succeeded")
    assert status["count_total"] == 1
    assert ns["study"].trials[0].value == ns["ret"] and isinstance(ns["study"], optuna.Study)


def test_b13_llm_distributed(notebook: Notebook) -> None:
    with pytest.warns(UserWarning, match=r"does not install \['numpy'\]"):
        study = notebook.run_block(533)["study"]
    status = finish(study)
    assert (status["count_total"], status["count_succeeded"]) == (64, 64)
    assert len(study.launch_of(only_batch(status)["trialbatch_name"]).processes) == 8
    assert abs(study.get_study().best_trial.params["x"] - 1.23) < 2


def test_b14_llm_ask_tell(bare_notebook: Notebook) -> None:
    """No controller set up beforehand: the token and the environment's endpoint suffice."""
    ns = bare_notebook.run_block(555)
    assert isinstance(ns["controller"].launcher, LocalLauncher)
    (trial,) = ns["real"].trials
    assert trial.state == TrialState.COMPLETE and trial.value == (trial.params["x"] - 2) ** 2
    assert list(ns["sw"].get_status()["trialbatches"]) == ["ask_tell_local"]


def test_b15_b16_sampler_pruner_and_optuna_api(notebook: Notebook, capsys) -> None:
    ns = notebook.run_block(591)
    study = ns["study"]
    # the next cell runs right away: optimize waited for a first trial, so best_trial exists,
    # and its ask() must not take one of the 50 trials the workers are running
    notebook.run_block(613)
    out = capsys.readouterr().out
    assert "best value: " in out and "best params: {'lr': " in out
    assert list(ns["df"].columns) == ["number", "value", "params_lr", "state"]
    asked = ns["t"]
    assert BATCH_ATTR not in ns["real"].trials[asked.number].system_attrs
    status = finish(study)
    batch_name = next(n for n in status["trialbatches"] if n != "ask_tell_local")
    batch, local = status["trialbatches"][batch_name], status["trialbatches"]["ask_tell_local"]
    assert (batch["count_total"], batch["count_succeeded"]) == (50, 50)
    assert (local["count_total"], local["count_succeeded"]) == (1, 1)
    assert status["count_total"] == 51
    real = study.get_study()
    assert set(real.trials[asked.number].params) == {"x"}
    assert specs.describe(real.sampler) == specs.describe(optuna.samplers.TPESampler(seed=42))
    assert specs.describe(real.pruner) == specs.describe(
        optuna.pruners.MedianPruner(n_startup_trials=5))
