"""Samplers and pruners recorded as class + arguments (JSON) and rebuilt, never unpickled."""

from __future__ import annotations

import json
import warnings

import numpy as np
import optuna
import pytest

from optuna_grpc_storage.runner import specs

S, P, N = optuna.samplers, optuna.pruners, optuna.samplers.nsgaii

OBJECTS = {
    "tpe": lambda: S.TPESampler(seed=1),
    "tpe-many": lambda: S.TPESampler(seed=7, n_startup_trials=3, multivariate=True, group=True,
                                     constant_liar=False, prior_weight=2.0,
                                     consider_endpoints=True, n_ei_candidates=5),
    "tpe-optuna-gamma": lambda: S.TPESampler(gamma=optuna.samplers._tpe.sampler
                                             .hyperopt_default_gamma),
    "tpe-unseeded": lambda: S.TPESampler(),
    "random": lambda: S.RandomSampler(seed=3),
    "cmaes": lambda: S.CmaEsSampler(seed=4, x0={"x": 1.0}, sigma0=0.5, n_startup_trials=2,
                                    independent_sampler=S.TPESampler(seed=2),
                                    use_separable_cma=True),
    "gp": lambda: S.GPSampler(seed=0, n_startup_trials=4, deterministic_objective=True),
    "nsgaii": lambda: S.NSGAIISampler(seed=0, population_size=4, mutation_prob=0.3,
                                      crossover=N.SBXCrossover(eta=3.0), crossover_prob=0.7,
                                      swapping_prob=0.4),
    "nsgaiii": lambda: S.NSGAIIISampler(seed=0, population_size=4, dividing_parameter=5,
                                        reference_points=np.array([[0.0, 1.0], [1.0, 0.0]])),
    "qmc": lambda: S.QMCSampler(seed=0, qmc_type="halton", scramble=True),
    "qmc-unseeded": lambda: S.QMCSampler(),
    "grid": lambda: S.GridSampler({"x": [-1.0, 0.0, 1.0], "n": [1, 2], "c": ["a", "b"]}),
    "bruteforce": lambda: S.BruteForceSampler(seed=0, avoid_premature_stop=True),
    "partial-fixed": lambda: S.PartialFixedSampler({"n": 2}, S.RandomSampler(seed=0)),
    "patient-median": lambda: P.PatientPruner(P.MedianPruner(n_startup_trials=3,
                                                             n_warmup_steps=2),
                                              patience=4, min_delta=0.1),
    "percentile": lambda: P.PercentilePruner(25.0, n_startup_trials=2),
    "hyperband": lambda: P.HyperbandPruner(min_resource=2, max_resource=30, reduction_factor=2),
    "halving": lambda: P.SuccessiveHalvingPruner(min_resource=2),
    "threshold": lambda: P.ThresholdPruner(upper=1.0, n_warmup_steps=3),
    "wilcoxon": lambda: P.WilcoxonPruner(p_threshold=0.05),
    "nop": lambda: P.NopPruner(),
}


def make(name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return OBJECTS[name]()


@pytest.mark.parametrize("name", OBJECTS)
def test_round_trip_through_json(name: str) -> None:
    original = make(name)
    spec = specs.describe(original)
    rebuilt = specs.build(json.loads(json.dumps(spec, allow_nan=False)))
    assert type(rebuilt) is type(original)
    assert specs.first_difference(original, rebuilt) is None
    assert specs.describe(rebuilt) == spec


@pytest.mark.parametrize("name", ["tpe", "random", "cmaes", "gp", "nsgaii", "bruteforce"])
def test_the_seed_is_recovered_exactly(name: str) -> None:
    original = make(name)
    rebuilt = specs.build(specs.describe(original))
    rng = "_cma_rng" if name == "cmaes" else "_rng"
    a, b = getattr(original, rng).rng.get_state(), getattr(rebuilt, rng).rng.get_state()
    assert np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_nested_pruner_spec_is_plain_json() -> None:
    assert specs.describe(make("patient-median"), "the pruner") == {
        "$class": "optuna.pruners.PatientPruner",
        "args": {"wrapped_pruner": {"$class": "optuna.pruners.MedianPruner",
                                    "args": {"n_startup_trials": 3, "n_warmup_steps": 2}},
                 "patience": 4, "min_delta": 0.1},
    }


def test_workers_get_their_own_seeds_but_shared_sequences_stay_shared() -> None:
    spec = specs.describe(S.TPESampler(seed=1))
    seeds = {specs.describe(specs.build(spec, salt=f"batch:{i}"))["args"]["seed"]
             for i in range(4)}
    assert len(seeds) == 4 and 1 not in seeds
    assert specs.describe(specs.build(spec, salt="batch:0"))["args"]["seed"] in seeds  # stable
    assert specs.describe(specs.build(specs.describe(S.TPESampler()), salt="b:0")) == \
        {"$class": "optuna.samplers.TPESampler", "args": {}}  # unseeded stays unseeded
    qmc = specs.describe(make("qmc"))
    assert specs.describe(specs.build(qmc, salt="b:1")) == qmc
    grid = specs.build(specs.describe(make("grid")), salt="b:2")
    assert grid._all_grids == make("grid")._all_grids  # every worker walks the same grid


def test_used_generator_warns_and_leaves_the_seed_out() -> None:
    sampler = S.RandomSampler(seed=3)
    sampler._rng.rng.rand()
    with pytest.warns(UserWarning, match="cannot be read back"):
        assert specs.describe(sampler) == {"$class": "optuna.samplers.RandomSampler",
                                           "args": {}}


class MySampler(S.RandomSampler):
    pass


@pytest.mark.parametrize("make_bad, culprit", [
    (lambda: MySampler(), "MySampler"),
    (lambda: S.TPESampler(gamma=lambda n: 3), "'gamma'"),
    (lambda: S.TPESampler(constraints_func=lambda t: [0.0]), "'constraints_func'"),
    (lambda: S.PartialFixedSampler({"x": 1}, MySampler()), "MySampler"),
])
def test_anything_else_is_refused(make_bad, culprit) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bad = make_bad()
    with pytest.raises(ValueError, match=culprit):
        specs.describe(bad)


def test_a_seeded_grid_is_kept_with_a_warning() -> None:
    """GridSampler shuffles its grid with the seed at once, so the seed cannot be read back;
    the workers still share one order (seed None = 0), so each point runs once."""
    with pytest.warns(UserWarning, match="another order"):
        spec = specs.describe(S.GridSampler({"x": list(range(10))}, seed=5))
    assert spec["args"]["seed"] is None


@pytest.mark.parametrize("spec, message", [
    ({"$class": "os.system", "args": {}}, "not one of Optuna's"),
    ({"$class": "optuna.samplers.RandomSampler", "args": {"seed": {"$pickle": "gASV"}}},
     "unexpected value"),
    ({"$class": "optuna.samplers.TPESampler",
      "args": {"gamma": {"$function": "os:system"}}}, "not a function of optuna"),
    ({"$class": "optuna.samplers.TPESampler",
      "args": {"gamma": {"$function": "optuna.samplers._tpe.sampler:np"}}}, "not a function"),
    ({"$class": "optuna.pruners.NopPruner"}, "not a sampler/pruner spec"),
    ({"$class": "optuna.samplers.NSGAIIISampler",
      "args": {"reference_points": {"$ndarray": [1], "dtype": "|O"}}}, "not rebuilt"),
])
def test_build_refuses_what_is_not_optunas_own(spec, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        specs.build(spec)
