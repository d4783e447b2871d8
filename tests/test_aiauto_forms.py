"""AIAuto's names and forms: AIAutoController, RUNTIME_IMAGES as a list, `direction` as a list,
samplers and pruners as {"cls": ..., "kwargs": ...} dicts (checked exactly as objects are)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

import optuna_grpc_storage as aiauto
from optuna_grpc_storage import AIAutoController, Controller, LocalLauncher
from optuna_grpc_storage.runner import specs
from optuna_grpc_storage.runner.attrs import PRUNER_ATTR, SAMPLER_ATTR
from optuna_grpc_storage.runner.images import CPU_IMAGE_ENV, GPU_IMAGE_ENV, default_image
from optuna_grpc_storage.storage.connection import ENDPOINT_ENV
from tests.test_controller import HEARTBEAT, notebook_cell


def test_runtime_images_is_an_ordered_list_whose_first_entry_is_the_cpu_default(
        monkeypatch) -> None:
    from optuna_grpc_storage import runner

    images = runner.RUNTIME_IMAGES
    assert isinstance(images, list) and len(images) == 2
    assert images[0] == default_image(False) and images[0].endswith("-cpu")
    assert images[1] == default_image(True) != images[0]
    monkeypatch.setenv(CPU_IMAGE_ENV, "registry.example/cpu:1")
    monkeypatch.setenv(GPU_IMAGE_ENV, "registry.example/gpu:1")
    assert runner.RUNTIME_IMAGES == ["registry.example/cpu:1", "registry.example/gpu:1"]
    assert (default_image(False), default_image(True)) == tuple(runner.RUNTIME_IMAGES)


def test_aiauto_controller_is_the_controller(proxy, token, monkeypatch) -> None:
    monkeypatch.setenv(ENDPOINT_ENV, proxy.endpoint)
    assert aiauto.AIAutoController is AIAutoController is Controller
    ac = aiauto.AIAutoController(token)
    assert aiauto.AIAutoController(token) is ac is Controller(token, endpoint=proxy.endpoint)
    with pytest.warns(UserWarning, match=r"\['shared_cache_size', 'storage_size'\].*ignored"):
        assert AIAutoController(token, storage_size="1Gi", shared_cache_size="1Gi") is ac
    with pytest.raises(TypeError, match="storage_sise"):
        AIAutoController(token, storage_sise="1Gi")


def test_direction_as_a_list_is_multi_objective(proxy, token) -> None:
    ac = Controller(token, endpoint=proxy.endpoint)
    study = ac.create_study("multi", direction=["minimize", "maximize"])
    assert study.get_study().directions == [optuna.study.StudyDirection.MINIMIZE,
                                            optuna.study.StudyDirection.MAXIMIZE]
    assert ac.create_study("multi", direction=("minimize", "maximize")).study_id == \
        study.study_id
    assert ac.create_study("single", direction=["maximize"]).get_study().direction == \
        optuna.study.StudyDirection.MAXIMIZE
    for kwargs in ({"direction": ["minimize"], "directions": ["minimize"]},
                   {"direction": "minimize", "directions": ["minimize"]}, {"direction": []}):
        with pytest.raises(ValueError, match="direction"):
            ac.create_study("refused", **kwargs)
    with pytest.raises(KeyError):
        ac.study("refused")


def test_a_study_loaded_with_other_directions_is_refused(proxy, token) -> None:
    """The AIAuto README names three studies 'test' (maximize, minimize, minimize): a notebook
    running its blocks in order must not optimize the minimize objective on the maximize
    study without a word."""
    ac = Controller(token, endpoint=proxy.endpoint)
    ac.create_study("test", direction="maximize")
    with pytest.raises(ValueError, match=r"'test' exists with direction\(s\) \['maximize'\], "
                                         r"not \['minimize'\]: use another study_name"):
        ac.create_study("test", "minimize", sampler=optuna.samplers.RandomSampler(seed=1))
    with pytest.raises(ValueError, match="not \\['maximize', 'maximize'\\]"):
        ac.create_study("test", directions=["maximize", "maximize"])
    attrs = ac.storage.get_study_system_attrs(ac.study("test").study_id)
    assert SAMPLER_ATTR not in attrs  # nothing was recorded by the refused calls
    assert ac.create_study("test").get_study().direction.name == "MAXIMIZE"  # none given: load


AS_DICTS = [
    ({"cls": "TPESampler", "kwargs": {"seed": 42, "n_startup_trials": 5}},
     optuna.samplers.TPESampler(seed=42, n_startup_trials=5)),
    ({"cls": "optuna.samplers.RandomSampler", "kwargs": {"seed": 3}},
     optuna.samplers.RandomSampler(seed=3)),
    ({"cls": "CmaEsSampler", "kwargs": {"independent_sampler": {"cls": "TPESampler",
                                                                "kwargs": {"seed": 1}},
                                        "seed": 2}},
     optuna.samplers.CmaEsSampler(independent_sampler=optuna.samplers.TPESampler(seed=1),
                                  seed=2)),
    ({"cls": "GridSampler", "kwargs": {"search_space": {"x": [1, 2]}}},
     optuna.samplers.GridSampler({"x": [1, 2]})),
    ({"cls": "NSGAIISampler", "kwargs": {"population_size": 8,
                                         "crossover": {"cls": "SBXCrossover"}}},
     optuna.samplers.NSGAIISampler(population_size=8,
                                   crossover=optuna.samplers.nsgaii.SBXCrossover())),
    ({"cls": "PatientPruner", "kwargs": {"wrapped_pruner": {"cls": "MedianPruner",
                                                            "kwargs": {"n_startup_trials": 2}},
                                         "patience": 4}},
     optuna.pruners.PatientPruner(optuna.pruners.MedianPruner(n_startup_trials=2), patience=4)),
    ({"cls": "PatientPruner", "kwargs": {"wrapped_pruner": optuna.pruners.MedianPruner(),
                                         "patience": 1}},
     optuna.pruners.PatientPruner(optuna.pruners.MedianPruner(), patience=1)),
    ({"cls": "SuccessiveHalvingPruner"}, optuna.pruners.SuccessiveHalvingPruner()),
]


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.parametrize("form, obj", AS_DICTS, ids=lambda v: str(v)[:40])
def test_sampler_and_pruner_dicts_record_as_their_objects(proxy, token, form, obj) -> None:
    ac = Controller(token, endpoint=proxy.endpoint)
    key, kind = (SAMPLER_ATTR, "sampler") if isinstance(obj, optuna.samplers.BaseSampler) \
        else (PRUNER_ATTR, "pruner")
    study = ac.create_study("by-dict", **{kind: form})
    recorded = ac.storage.get_study_system_attrs(study.study_id)[key]
    assert recorded == specs.describe(obj, f"the {kind}")
    rebuilt = getattr(study.get_study(), kind)
    assert type(rebuilt) is type(obj) and specs.first_difference(obj, rebuilt) is None


REFUSED = [
    ({"cls": "ExhaustiveCategoricalSampler"}, "not one of Optuna's own samplers or pruners"),
    ({"cls": "os.system", "kwargs": {"command": "true"}}, "not one of Optuna's own"),
    ({"cls": "BaseSampler"}, "not one of Optuna's own"),
    ({"cls": "MedianPruner"}, "the sampler is a MedianPruner, not an Optuna sampler"),
    ({"cls": "TPESampler", "kwargs": {"gamma": lambda n: 1}}, "argument 'gamma' is <function"),
    ({"cls": "TPESampler", "kwargs": {"seed": 1}, "args": []}, 'must have the form {"cls"'),
    ({"cls": "TPESampler", "kwargs": ["seed", 1]}, "'kwargs' must be a dict"),
    ({"cls": "TPESampler", "kwargs": {"n_startup": 5}}, "TPESampler.*unexpected keyword"),
    ({"kwargs": {"seed": 1}}, 'must have the form {"cls"'),
    ({"cls": "CmaEsSampler", "kwargs": {"independent_sampler": {"cls": "pickle.loads"}}},
     "independent_sampler' names 'pickle.loads'"),
    (optuna.pruners.MedianPruner(), "the sampler is a MedianPruner, not an Optuna sampler"),
]


@pytest.mark.parametrize("sampler, message", REFUSED, ids=lambda v: str(v)[:40])
def test_sampler_dicts_are_refused_as_objects_are(proxy, token, sampler, message) -> None:
    ac = Controller(token, endpoint=proxy.endpoint)
    with pytest.raises(ValueError, match=message):
        ac.create_study("refused", sampler=sampler)
    with pytest.raises(ValueError, match="the pruner is a RandomSampler, not an Optuna pruner"):
        ac.create_study("refused", pruner={"cls": "RandomSampler"})
    with pytest.raises(KeyError):
        ac.study("refused")  # nothing was created


SAMPLER_CELL = '''
def objective(trial):
    trial.set_user_attr("sampler", type(trial.study.sampler).__name__)
    trial.set_user_attr("n_startup", trial.study.sampler._n_startup_trials)
    trial.set_user_attr("pruner", type(trial.study.pruner).__name__)
    return trial.suggest_float("x", 0, 1)
'''


def test_the_workers_use_a_sampler_given_as_a_dict(proxy, token, tmp_path: Path) -> None:
    ac = Controller(token, endpoint=proxy.endpoint, launcher=LocalLauncher(tmp_path),
                    **HEARTBEAT)
    study = ac.create_study("dict-run", sampler={"cls": "TPESampler",
                                                 "kwargs": {"n_startup_trials": 3}},
                            pruner={"cls": "HyperbandPruner", "kwargs": {"max_resource": 9}})
    study.optimize(notebook_cell(SAMPLER_CELL)["objective"], n_trials=3, parallelism=1,
                   wait_option="WAIT_ALL_TRIALS")
    trials = study.get_study().trials
    assert {(t.user_attrs["sampler"], t.user_attrs["n_startup"], t.user_attrs["pruner"])
            for t in trials} == {("TPESampler", 3, "HyperbandPruner")}
