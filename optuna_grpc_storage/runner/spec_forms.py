"""The sampler or pruner of `create_study`, as an object or in AIAuto's dict form.

AIAuto also takes ``{"cls": "TPESampler", "kwargs": {"seed": 42}}``. Such a dict is turned into
the object it names, then recorded by `specs.describe` exactly as that object would be: the same
spec, the same faithfulness check, the same refusals. The class is looked up by name among
`specs.CLASSES` only (Optuna's own samplers and pruners; a bare name or the full
``optuna.samplers.TPESampler``); nothing else is imported, nothing is unpickled, and the only
code run is that class's constructor with plain values. A nested dict of the same form (for
PatientPruner's `wrapped_pruner`, CmaEsSampler's `independent_sampler`, NSGA's `crossover`...)
is built the same way, wherever it appears.
"""

from __future__ import annotations

from typing import Any

import optuna

from optuna_grpc_storage.runner import specs

FORM = '{"cls": "<Optuna class name>", "kwargs": {...}}'
KINDS: dict[str, type] = {"the sampler": optuna.samplers.BaseSampler,
                          "the pruner": optuna.pruners.BasePruner}
_BY_NAME = {name.rsplit(".", 1)[1]: cls for name, cls in specs.CLASSES.items()}


def spec_of(value: Any, where: str) -> dict[str, Any]:
    """The JSON spec to record for `where` ("the sampler" or "the pruner"): an Optuna object of
    that kind or its AIAuto dict. ValueError, naming what is wrong, for anything else."""
    obj = from_dict(value, where) if isinstance(value, dict) else value
    kind = KINDS[where]
    if type(obj) in specs.CLASSES.values() and not isinstance(obj, kind):
        raise ValueError(f"{where} is a {type(obj).__name__}, not an Optuna "
                         f"{kind.__name__.replace('Base', '').lower()}")
    return specs.describe(obj, where)


def is_form(value: Any) -> bool:
    return isinstance(value, dict) and "cls" in value and set(value) <= {"cls", "kwargs"} \
        and isinstance(value["cls"], str)


def from_dict(value: dict[str, Any], where: str) -> Any:
    """The Optuna object an AIAuto dict names, built from plain values."""
    if not is_form(value):
        raise ValueError(f"{where} given as a dict must have the form {FORM}; got {value!r}")
    cls = _class(value["cls"], where)
    kwargs = value.get("kwargs", {})
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ValueError(f"{where}: 'kwargs' must be a dict of argument names to values, "
                         f"got {kwargs!r}")
    args = {k: _value(v, f"{where}'s argument {k!r}") for k, v in kwargs.items()}
    try:
        return cls(**args)
    except Exception as e:
        raise ValueError(f"{where}: {cls.__name__}(**{kwargs!r}) cannot be built: "
                         f"{type(e).__name__}: {e}") from None


def _class(name: str, where: str) -> type:
    cls = specs.CLASSES.get(name) or _BY_NAME.get(name)
    if cls is None or name.startswith("Base") or cls.__name__.startswith("Base"):
        samplers = sorted(n for n, c in _BY_NAME.items() if not n.startswith("Base")
                          and issubclass(c, (optuna.samplers.BaseSampler,
                                             optuna.pruners.BasePruner)))
        raise ValueError(
            f"{where} names {name!r}, which is not one of Optuna's own samplers or pruners; "
            f"only these are rebuilt (nothing is imported or unpickled): {', '.join(samplers)}")
    return cls


def _value(value: Any, where: str) -> Any:
    """A constructor argument: plain JSON-like values, nested dict forms, Optuna objects."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if is_form(value):  # {"cls": str[, "kwargs": {...}]} is always a nested sampler/pruner
        return from_dict(value, where)
    if isinstance(value, list):
        return [_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return tuple(_value(v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _value(v, f"{where}[{k!r}]") for k, v in value.items()}
    if type(value) in specs.CLASSES.values():
        return value  # an Optuna object inside the dict: describe() checks it as always
    raise specs._refuse(where, value)
