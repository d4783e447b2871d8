"""optimize(top_n_artifacts=N): only the batch's best N finished trials keep their artifacts,
even when several workers finish at the same moment and each applies the rule from what it
sees; trials' outputs are never removed; the rule is checked like AIAuto's."""

from __future__ import annotations

import optuna
import pytest
from optuna.artifacts.exceptions import ArtifactNotFound

from optuna_grpc_storage import Controller, LocalLauncher
from optuna_grpc_storage.runner.attrs import ARTIFACTS_REMOVED_PREFIX
from optuna_grpc_storage.runner.top_n import artifact_ids, best
from optuna_grpc_storage.runner.trial_output import log_artifact_id, log_of

optuna.logging.set_verbosity(optuna.logging.WARNING)
VALUES = [5.0, 3.0, 8.0, 1.0, 7.0, 2.0, 6.0, 4.0]  # by trial number; trial 2 fails instead


def together(barrier: str, workers: int):
    """An objective whose trials upload an artifact, then wait until `workers` of them have,
    so that they all finish at once."""

    def objective(trial: optuna.Trial) -> float:
        import os
        import pathlib
        import time

        import optuna_grpc_storage as ogs

        controller = ogs.AIAutoController()  # in the worker: its endpoint and token
        path = os.path.join(controller.get_artifact_tmp_dir(), f"model-{trial.number}.txt")
        pathlib.Path(path).write_text(f"weights of trial {trial.number}")
        controller.upload_artifact(trial, path)
        print(f"trial {trial.number} done")
        folder = pathlib.Path(barrier)
        (folder / str(trial.number)).touch()
        wave = trial.number // workers
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(
                1 for p in folder.iterdir() if int(p.name) // workers == wave) < workers:
            time.sleep(0.01)
        if trial.number == 2:
            raise RuntimeError("no value")
        return [5.0, 3.0, 8.0, 1.0, 7.0, 2.0, 6.0, 4.0][trial.number]

    return objective


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_four_workers_finishing_at_once_keep_exactly_the_best_n(proxy, token, tmp_path,
                                                                direction) -> None:
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    controller = Controller(token, endpoint=proxy.endpoint,
                            launcher=LocalLauncher(tmp_path / "w"))
    study = controller.create_study(f"top-n-{direction}", direction=direction)
    name = study.optimize(together(str(barrier), 4), n_trials=8, parallelism=4,
                          top_n_artifacts=3, wait_option="WAIT_ALL_TRIALS", wait_timeout=180)
    for process in study.launch_of(name).processes:
        assert process.wait(60) == 0
    trials = study.get_study().trials
    assert len(trials) == 8 and trials[2].state.name == "FAIL"
    ranked = sorted((v, n) for n, v in enumerate(VALUES) if n != 2)
    if direction == "maximize":
        ranked = sorted(ranked, key=lambda p: (-p[0], p[1]))
    expected = {n for _, n in ranked[:3]}
    assert {t.number for t in best(trials, study.get_study().direction, 3)} == expected
    store = controller.get_artifact_store()
    attrs = study.storage.get_study_system_attrs(study.study_id)
    for trial in trials:
        [mine] = [i for i in artifact_ids(trial)
                  if i != log_artifact_id("default", trial._trial_id)]
        assert trial.user_attrs["artifact_id"] == mine
        if trial.number in expected:
            with store.open_reader(mine) as reader:
                assert reader.read() == f"weights of trial {trial.number}".encode()
            assert ARTIFACTS_REMOVED_PREFIX + str(trial.number) not in attrs
        else:
            with pytest.raises(ArtifactNotFound):
                store.open_reader(mine)
            assert attrs[ARTIFACTS_REMOVED_PREFIX + str(trial.number)] == [mine]
        assert f"trial {trial.number} done".encode() in log_of(store, "default", trial)
    assert len(store.list(study=f"top-n-{direction}")) == 3 + 8  # the kept ones, the outputs


@pytest.mark.parametrize("bad", [0, -1, 2.5, "5", True])
def test_top_n_artifacts_is_checked_like_aiautos(proxy, token, bad) -> None:
    study = Controller(token, endpoint=proxy.endpoint).create_study("top-n-check")
    with pytest.raises(ValueError, match="top_n_artifacts must be an int >= 1"):
        study.optimize(lambda t: 0.0, n_trials=1, top_n_artifacts=bad)
    assert study.get_study().trials == []  # refused before anything was created
