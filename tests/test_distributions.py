"""The proxy's distribution rules (protocol/distributions.py) held against Optuna's own code:
everything Optuna writes is accepted, and nothing accepted makes Optuna's replay raise."""

from __future__ import annotations

import json
import math
import warnings

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
    json_to_distribution,
)

from optuna_grpc_storage.protocol.distributions import (
    DistributionError,
    check_value,
    parse_distribution,
)

NAMES = ["FloatDistribution", "UniformDistribution", "LogUniformDistribution",
         "DiscreteUniformDistribution", "IntDistribution", "IntUniformDistribution",
         "IntLogUniformDistribution", "CategoricalDistribution", "Nope"]
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=4),
    max_leaves=8)
NUMBERS = (st.integers(-10, 10) | st.integers(-10**6, 10**6) | st.floats(-1e6, 1e6)
           | st.sampled_from([0, 1, -1, 0.5, 1e30, math.inf, -math.inf, math.nan, True]))


def optuna_reads(text: str, value: object) -> bool:
    """What Optuna's replay does with a parameter: rebuild the distribution, read the value."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            json_to_distribution(text).to_external_repr(value)
            return True
        except Exception:
            return False


KEYS = {"FloatDistribution": ["low", "high", "log", "step"],
        "UniformDistribution": ["low", "high"], "LogUniformDistribution": ["low", "high"],
        "DiscreteUniformDistribution": ["low", "high", "q"],
        "IntDistribution": ["low", "high", "log", "step"],
        "IntUniformDistribution": ["low", "high", "step"],
        "IntLogUniformDistribution": ["low", "high", "step"],
        "CategoricalDistribution": ["choices"], "Nope": ["low"]}


@st.composite
def crafted(draw: st.DrawFn) -> tuple[str, object]:
    """Distribution JSON of plausible shape (each class's own attributes, sometimes one more
    or one less), attributes of any type, and a value."""
    name = draw(st.sampled_from(NAMES))
    keys = set(KEYS[name])
    if draw(st.integers(0, 4)) == 0:
        keys ^= {draw(st.sampled_from(["low", "high", "log", "step", "q", "choices", "x"]))}
    attrs: dict[str, object] = {}
    for k in sorted(keys):
        if k == "choices":
            attrs[k] = draw(st.lists(ANY_JSON, max_size=3) | ANY_JSON)
        elif k == "log":
            attrs[k] = draw(st.booleans() | ANY_JSON)
        else:
            attrs[k] = draw(NUMBERS | st.none() | ANY_JSON)
    shape = draw(st.sampled_from(["full"] * 8 + ["bare", "garbage"]))
    doc = {"name": name, "attributes": attrs} if shape == "full" else (
        attrs if shape == "bare" else draw(ANY_JSON))
    return json.dumps(doc), draw(st.integers(-5, 5) | NUMBERS)


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(crafted())
def test_nothing_accepted_breaks_optuna(case: tuple[str, object]) -> None:
    text, value = case
    try:
        check_value(*parse_distribution(text), value)
    except DistributionError:
        return
    assert optuna_reads(text, value), (text, value)


@st.composite
def written_by_optuna(draw: st.DrawFn) -> tuple[str, float]:
    """A distribution Optuna builds for a suggest_* call, and a value sampled from it."""
    kind = draw(st.sampled_from(["float", "float-log", "float-step", "int", "int-log",
                                 "int-step", "categorical"]))
    if kind == "categorical":
        choices = draw(st.lists(st.none() | st.booleans() | st.integers() | st.text()
                                | st.floats(allow_nan=False) | st.lists(st.integers()),
                                min_size=1, max_size=5))
        d = CategoricalDistribution(choices)
        return distribution_to_json(d), draw(st.integers(0, len(choices) - 1))
    low = draw(st.integers(1, 1000) if kind.startswith("int") else st.floats(0.001, 1000))
    high = low + draw(st.integers(0, 1000) if kind.startswith("int") else st.floats(0, 1000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind.startswith("int"):
            d = IntDistribution(low, high, log=kind == "int-log",
                                step=draw(st.integers(1, 7)) if kind == "int-step" else 1)
        else:
            d = FloatDistribution(low, high, log=kind == "float-log",
                                  step=draw(st.floats(0.01, 10)) if kind == "float-step"
                                  else None)
    value = d.to_internal_repr(draw(st.floats(d.low, d.high)) if isinstance(
        d, FloatDistribution) else draw(st.integers(d.low, d.high)))
    return distribution_to_json(d), value


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(written_by_optuna())
def test_everything_optuna_writes_is_accepted(case: tuple[str, float]) -> None:
    text, value = case
    check_value(*parse_distribution(text), value)


@pytest.mark.parametrize("legacy", [
    optuna.distributions.UniformDistribution(0, 1),
    optuna.distributions.LogUniformDistribution(1e-3, 1),
    optuna.distributions.DiscreteUniformDistribution(0, 1, 0.25),
    optuna.distributions.IntUniformDistribution(0, 10, 2),
    optuna.distributions.IntLogUniformDistribution(1, 100),
])
def test_deprecated_classes_from_old_journals_are_accepted(legacy: object) -> None:
    check_value(*parse_distribution(distribution_to_json(legacy)), 1)
