"""Optuna's parameter distributions as a journal stores them, checked without importing Optuna.

Optuna's replay rebuilds each distribution with `json_to_distribution` and reads each
parameter value with `to_external_repr`; an entry where either fails breaks the study for every
client. These rules accept every distribution Optuna writes (`distribution_to_json`: a class
name and its attributes) and refuse anything that Optuna's constructors or `to_external_repr`
would raise on; where Optuna is lenient about odd types (a bool for a bound, a float for an
integer bound) they are stricter. tests/test_distributions.py holds them against Optuna's own
code. The proxy does not import Optuna: that would load half a second and ~20 MiB of modules
(numpy, tqdm, the samplers) into every server process for these few rules.
"""

from __future__ import annotations

import decimal
import json
import math
from typing import Any

# Each class json_to_distribution knows: its required and optional attributes (with defaults).
_ATTRIBUTES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "FloatDistribution": (("low", "high"), {"log": False, "step": None}),
    "UniformDistribution": (("low", "high"), {}),
    "LogUniformDistribution": (("low", "high"), {}),
    "DiscreteUniformDistribution": (("low", "high", "q"), {}),
    "IntDistribution": (("low", "high"), {"log": False, "step": 1}),
    "IntUniformDistribution": (("low", "high"), {"step": 1}),
    "IntLogUniformDistribution": (("low", "high"), {"step": 1}),
    "CategoricalDistribution": (("choices",), {}),
}
_LOG = {"LogUniformDistribution": True, "IntLogUniformDistribution": True}


class DistributionError(ValueError):
    """The distribution, or a value in it, would break Optuna's replay."""


def _real(v: Any, what: str) -> float:
    if type(v) not in (int, float) or math.isnan(v):
        raise DistributionError(f"{what} must be a number")
    return float(v)


def _integer(v: Any, what: str) -> int:
    if type(v) is not int:
        raise DistributionError(f"{what} must be an integer")
    return v


def parse_distribution(text: Any) -> tuple[str, dict[str, Any]]:
    """(class name, attributes with defaults filled in) of a distribution's JSON text."""
    if not isinstance(text, str):
        raise DistributionError("a distribution must be a JSON string")
    try:
        d = json.loads(text)
    except ValueError:
        raise DistributionError("a distribution must be valid JSON") from None
    if not isinstance(d, dict) or not isinstance(d.get("attributes"), dict):
        raise DistributionError('a distribution must be {"name": ..., "attributes": {...}}')
    name, attributes = d.get("name"), d["attributes"]
    if name not in _ATTRIBUTES:
        raise DistributionError(f"unknown distribution class {str(name)[:80]!r}")
    required, optional = _ATTRIBUTES[name]
    unknown = set(attributes) - set(required) - set(optional)
    if unknown or any(k not in attributes for k in required):
        raise DistributionError(f"{name} takes {', '.join([*required, *optional])}")
    attrs = {**optional, **attributes}
    if name == "CategoricalDistribution":
        if not isinstance(attrs["choices"], list) or not attrs["choices"]:
            raise DistributionError("choices must be a non-empty list")
    elif name.startswith("Int"):
        _check_int(attrs, _LOG.get(name, attrs.get("log", False)))
    else:
        _check_float(attrs, _LOG.get(name, attrs.get("log", False)),
                     attrs.get("q", attrs.get("step")))
    return name, attrs


def _check_float(attrs: dict[str, Any], log: Any, step: Any) -> None:
    low, high = _real(attrs["low"], "low"), _real(attrs["high"], "high")
    if type(log) is not bool:
        raise DistributionError("log must be true or false")
    if low > high or (log and (low <= 0 or step is not None)):
        raise DistributionError("low <= high must hold, and low > 0 without a step with log")
    if step is not None:
        if _real(step, "step") <= 0 or not (math.isfinite(low) and math.isfinite(high)
                                            and math.isfinite(step)):
            raise DistributionError("a step must be > 0, with finite low and high")
        try:  # what Optuna does with a step: decimal arithmetic on str() of each
            span = decimal.Decimal(str(high)) - decimal.Decimal(str(low))
            span % decimal.Decimal(str(step)), span // decimal.Decimal(str(step))
        except decimal.DecimalException:
            raise DistributionError("(high - low) / step is too large") from None


def _check_int(attrs: dict[str, Any], log: Any) -> None:
    low, high = _integer(attrs["low"], "low"), _integer(attrs["high"], "high")
    step = _integer(attrs["step"], "step")
    if type(log) is not bool:
        raise DistributionError("log must be true or false")
    if low > high or step <= 0 or (log and (low < 1 or step != 1)):
        raise DistributionError("low <= high and step > 0 must hold (log: low >= 1, step 1)")


def check_value(name: str, attrs: dict[str, Any], value: Any) -> None:
    """Raise DistributionError unless `to_external_repr(value)` works on the distribution."""
    if type(value) not in (int, float):
        raise DistributionError("the internal value must be a number")
    if name == "CategoricalDistribution" or name.startswith("Int"):
        if not math.isfinite(value):  # int() of it would raise
            raise DistributionError("the internal value must be finite")
        if name == "CategoricalDistribution" and not (
                -len(attrs["choices"]) <= int(value) < len(attrs["choices"])):
            raise DistributionError("the internal value is not an index of the choices")
