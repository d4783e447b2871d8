"""Everything Optuna does with a storage, through the proxy."""

from __future__ import annotations

import concurrent.futures
import multiprocessing

import optuna
import pytest
from optuna.trial import TrialState

from tests import workers

S = optuna.samplers
P = optuna.pruners


def same_trials(a: list[optuna.trial.FrozenTrial], b: list[optuna.trial.FrozenTrial]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert (x.number, x.state, x.params, x.values) == (y.number, y.state, y.params, y.values)
        assert x.intermediate_values == y.intermediate_values
        assert x.distributions == y.distributions
        assert x.user_attrs == y.user_attrs and x.system_attrs == y.system_attrs


def mixed_objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -5, 5)
    n = trial.suggest_int("n", 1, 4)
    c = trial.suggest_categorical("c", ["a", "b"])
    return x**2 + n + (c == "b")


SAMPLERS = {
    "random": lambda: S.RandomSampler(seed=0),
    "tpe": lambda: S.TPESampler(seed=0, n_startup_trials=4),
    "tpe-multivariate": lambda: S.TPESampler(seed=0, multivariate=True, n_startup_trials=4),
    "cmaes": lambda: S.CmaEsSampler(seed=0, n_startup_trials=2),
    "gp": lambda: S.GPSampler(seed=0, n_startup_trials=4),
    "nsgaii": lambda: S.NSGAIISampler(seed=0, population_size=4),
    "nsgaiii": lambda: S.NSGAIIISampler(seed=0, population_size=4),
    "qmc": lambda: S.QMCSampler(seed=0),
    "grid": lambda: S.GridSampler({"x": [-1.0, 0.0, 1.0], "n": [1, 2], "c": ["a", "b"]}),
    "bruteforce": lambda: S.BruteForceSampler(seed=0),
    "partial-fixed": lambda: S.PartialFixedSampler({"n": 2}, S.RandomSampler(seed=0)),
}


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_builtin_sampler(make_storage, name: str) -> None:
    if name == "gp":
        pytest.importorskip("torch", reason="GPSampler needs torch (make test installs it)")
    objective = mixed_objective
    if name == "bruteforce":
        def objective(trial: optuna.Trial) -> float:
            c = trial.suggest_categorical("c", ["a", "b"])
            return trial.suggest_int("n", 1, 4) + (c == "b")
    storage = make_storage()
    study = optuna.create_study(study_name=name, storage=storage, sampler=SAMPLERS[name]())
    study.optimize(objective, n_trials=12)
    expected = 8 if name == "bruteforce" else 12
    trials = study.get_trials()
    assert len(trials) == expected
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert [t.number for t in trials] == list(range(expected))
    if name == "grid":
        assert len({(t.params["x"], t.params["n"], t.params["c"]) for t in trials}) == 12
    reloaded = optuna.load_study(study_name=name, storage=make_storage())
    same_trials(trials, reloaded.get_trials())


@pytest.mark.parametrize("sampler", ["nsgaii", "nsgaiii", "tpe", "random"])
def test_multi_objective(make_storage, sampler: str) -> None:
    study = optuna.create_study(storage=make_storage(), directions=["minimize", "maximize"],
                                sampler=SAMPLERS[sampler]())
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)), n_trials=10)
    reloaded = optuna.load_study(study_name=study.study_name, storage=make_storage())
    assert reloaded.directions == [optuna.study.StudyDirection.MINIMIZE,
                                   optuna.study.StudyDirection.MAXIMIZE]
    assert {t.number for t in reloaded.best_trials} == {t.number for t in study.best_trials}
    assert 1 <= len(reloaded.best_trials) <= 10
    with pytest.raises(RuntimeError):
        reloaded.best_trial  # noqa: B018  (single best is undefined for two objectives)


PRUNERS = {
    "median": lambda: P.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    "percentile": lambda: P.PercentilePruner(50.0, n_startup_trials=2),
    "successive-halving": lambda: P.SuccessiveHalvingPruner(),
    "hyperband": lambda: P.HyperbandPruner(min_resource=1, max_resource=8),
    "threshold": lambda: P.ThresholdPruner(upper=5.0),
    "patient": lambda: P.PatientPruner(P.MedianPruner(n_startup_trials=2), patience=1),
    "wilcoxon": lambda: P.WilcoxonPruner(p_threshold=0.5, n_startup_steps=2),
    "nop": lambda: P.NopPruner(),
}


@pytest.mark.parametrize("name", PRUNERS)
def test_every_builtin_pruner(make_storage, name: str) -> None:
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 10)
        for step in range(8):
            trial.report(x + step, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return x

    study = optuna.create_study(storage=make_storage(), pruner=PRUNERS[name](),
                                sampler=S.RandomSampler(seed=1))
    study.optimize(objective, n_trials=16)
    states = [t.state for t in study.get_trials()]
    assert len(states) == 16 and set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}
    if name in ("threshold", "median", "percentile"):
        assert TrialState.PRUNED in states
    if name == "nop":
        assert TrialState.PRUNED not in states
    pruned = [t for t in study.get_trials() if t.state == TrialState.PRUNED]
    assert all(t.intermediate_values for t in pruned)
    same_trials(study.get_trials(),
                optuna.load_study(study_name=study.study_name, storage=make_storage()).trials)


def test_ask_tell_attrs_dataframe_and_best(make_storage) -> None:
    # read_staleness=0: the last check reads another storage's tell at once; with the default
    # it is only due 0.1 s later (README, Consistency), which this test took only by luck
    # (pandas' first import in trials_dataframe() used to take longer than that)
    study = optuna.create_study(study_name="ask", storage=make_storage(read_staleness=0))
    study.set_user_attr("owner", "alice")
    study.set_metric_names(["loss"])
    for i in range(4):
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        trial.set_user_attr("i", i)
        trial.storage.set_trial_system_attr(trial._trial_id, "sys", {"k": [i]})
        trial.report(0.5, step=0)
        if i == 2:
            study.tell(trial, state=TrialState.PRUNED)
        elif i == 3:
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, i + 0.25)
    fresh = optuna.load_study(study_name="ask", storage=make_storage())
    assert fresh.user_attrs == {"owner": "alice"}
    assert fresh.metric_names == ["loss"]
    assert [t.state for t in fresh.trials] == [TrialState.COMPLETE, TrialState.COMPLETE,
                                               TrialState.PRUNED, TrialState.FAIL]
    assert fresh.best_trial.number == 0 and fresh.best_value == 0.25
    assert fresh.trials[1].user_attrs == {"i": 1}
    assert fresh.trials[1].system_attrs == {"sys": {"k": [1]}}
    df = fresh.trials_dataframe()
    assert list(df["number"]) == [0, 1, 2, 3]
    assert list(df["user_attrs_i"]) == [0, 1, 2, 3]
    assert list(df["state"]) == ["COMPLETE", "COMPLETE", "PRUNED", "FAIL"]
    trial = fresh.ask()
    fresh.tell(trial.number, 0.0)
    assert study.best_trial.number == 4  # the first storage sees the other's tell


def test_delete_study_and_summaries(make_storage) -> None:
    storage = make_storage()
    for name in ("a", "b"):
        optuna.create_study(study_name=name, storage=storage).optimize(
            lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    with pytest.raises(optuna.exceptions.DuplicatedStudyError):
        optuna.create_study(study_name="a", storage=make_storage())
    optuna.delete_study(study_name="a", storage=storage)
    other = make_storage()
    assert [s.study_name for s in optuna.get_all_study_summaries(other)] == ["b"]
    assert optuna.get_all_study_summaries(other)[0].n_trials == 2
    with pytest.raises(KeyError):
        optuna.load_study(study_name="a", storage=other)


def test_copy_study_in_and_out(make_storage, tmp_path) -> None:
    file_storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "journal.log")))
    source = optuna.create_study(study_name="src", storage=file_storage,
                                 directions=["minimize", "maximize"])
    source.set_user_attr("team", "nfs")
    source.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_int("y", 0, 9)), n_trials=8)
    optuna.copy_study(from_study_name="src", from_storage=file_storage,
                      to_storage=make_storage(), to_study_name="copied")
    copied = optuna.load_study(study_name="copied", storage=make_storage())
    assert copied.user_attrs == {"team": "nfs"}
    same_trials(source.trials, copied.trials)
    back = optuna.storages.InMemoryStorage()
    optuna.copy_study(from_study_name="copied", from_storage=make_storage(), to_storage=back)
    same_trials(source.trials, optuna.load_study(study_name="copied", storage=back).trials)


def test_threads_share_one_storage(make_storage) -> None:
    study = optuna.create_study(storage=make_storage())
    study.optimize(workers.quadratic, n_trials=40, n_jobs=4)
    trials = optuna.load_study(study_name=study.study_name, storage=make_storage()).trials
    assert [t.number for t in trials] == list(range(40))
    assert all(t.state == TrialState.COMPLETE for t in trials)


@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_enqueued_trials_run_once_across_processes(make_storage, start_method: str) -> None:
    storage = make_storage()
    study = optuna.create_study(storage=storage)
    for x in range(24):
        study.enqueue_trial({"x": 1000 + x})
    ctx = multiprocessing.get_context(start_method)
    with concurrent.futures.ProcessPoolExecutor(4, mp_context=ctx) as pool:
        runs = [pool.submit(workers.run_enqueued, storage, study.study_name, 8) for _ in range(4)]
        seen = [pair for r in runs for pair in r.result(timeout=240)]
    trials = optuna.load_study(study_name=study.study_name, storage=make_storage()).trials
    assert len(trials) == 32 and all(t.state == TrialState.COMPLETE for t in trials)
    ran = dict(seen)
    assert len(ran) == len(seen) == 32  # no trial number ran twice
    assert [ran[n] for n in range(24)] == [1000 + x for x in range(24)]  # each enqueued once
    assert [t.params["x"] for t in trials[:24]] == [1000 + x for x in range(24)]
