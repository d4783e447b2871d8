"""Record an Optuna sampler or pruner as its class and arguments (plain JSON), and rebuild it.

A study's sampler and pruner live in the process that made them, but every worker and every
later `get_study()` must use the same ones. They are stored with the study as JSON specs::

    {"$class": "optuna.pruners.PatientPruner",
     "args": {"wrapped_pruner": {"$class": "optuna.pruners.MedianPruner", "args": {}},
              "patience": 4}}

Rebuilding only ever calls the constructor of a class exported by `optuna.samplers`,
`optuna.samplers.nsgaii` or `optuna.pruners`, with JSON values, nested specs of the same kind,
or functions defined in those packages, named and looked up. Nothing is unpickled, so a spec
written by anyone holding the token cannot run code in the workers that read it.

Optuna objects do not keep their constructor arguments, so `describe` reads them back: each
argument from the attribute of the same name (one level deep as well, for the TPE parameters
or the NSGA strategies), keeping only those that differ from a default-built object, and the
seed from the random state, which a seeded, unused generator reveals (numpy seeds MT19937 so
that its first key word is the seed). It then rebuilds the object and compares the whole state
with the original: if anything differs, the object cannot be recorded faithfully and a
ValueError says which attribute, rather than a different sampler being used silently.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import math
import types
import warnings
from typing import Any

import numpy as np
from optuna.samplers._lazy_random_state import LazyRandomState

ALLOWED_MODULES = ("optuna.samplers", "optuna.samplers.nsgaii", "optuna.pruners")
_FUNCTION_PREFIXES = ("optuna.samplers.", "optuna.pruners.")
# Arguments stored under another name; found by name otherwise.
_ALIASES = {("GPSampler", "deterministic_objective"): "_deterministic"}
# Samplers whose seed defines a sequence all workers must share (scrambled QMC points are
# indexed by trial number); every other seed is varied per worker (see build).
_SHARED_SEED = {"QMCSampler"}
_MISSING = object()


def _registry() -> dict[str, type]:
    out = {}
    for module_name in ALLOWED_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type):
                out[f"{module_name}.{name}"] = obj
    return out


CLASSES = _registry()
_NAMES = {cls: name for name, cls in CLASSES.items()}


def _refuse(where: str, value: Any) -> ValueError:
    return ValueError(
        f"{where} is {value!r} ({type(value).__module__}.{type(value).__qualname__}), which "
        "cannot be sent to the workers: only Optuna's own samplers and pruners (from "
        "optuna.samplers and optuna.pruners) with plain arguments (numbers, strings, lists, "
        "dicts, other Optuna samplers/pruners) are recorded with a study; subclasses and "
        "callables are refused, since rebuilding them would mean unpickling code"
    )


# -- describe -----------------------------------------------------------------------------


def describe(obj: Any, where: str = "the sampler") -> dict[str, Any]:
    """The JSON spec of an Optuna sampler or pruner; ValueError if it cannot be recorded."""
    refused: list[ValueError] = []
    spec = _describe(obj, where, refused)
    try:
        rebuilt = build(spec)
    except Exception as e:
        raise ValueError(f"{where} ({type(obj).__name__}) cannot be rebuilt from {spec}: {e}") \
            from None
    difference = _first_difference(obj, rebuilt, type(obj).__name__)
    if difference is not None:
        if refused:
            raise refused[0]
        raise ValueError(
            f"{where} ({type(obj).__name__}) cannot be recorded faithfully: rebuilt from "
            f"{spec} its {difference}; pass a {type(obj).__name__} built from plain arguments"
        )
    return spec


def _describe(obj: Any, where: str, refused: list[ValueError]) -> dict[str, Any]:
    name = _NAMES.get(type(obj))
    if name is None:
        raise _refuse(where, obj)
    default = _default_instance(type(obj))
    args: dict[str, Any] = {}
    for param, default_value in _parameters(type(obj)).items():
        value = _read_argument(obj, param)
        if value is _MISSING:
            continue  # not kept at all (deprecated, no effect): the state check decides
        if default is not None and _first_difference(value, _read_argument(default, param),
                                                     param) is None:
            continue
        try:
            args[param] = _encode(value, f"{where}'s argument {param!r}", refused)
        except ValueError as e:
            if default_value is not None:
                raise
            # Optuna built this object itself from None (NSGA's strategies, for example):
            # leave it out; the state check tells whether the user had passed their own.
            refused.append(e)
    return {"$class": name, "args": args}


def _parameters(cls: type) -> dict[str, Any]:
    """Constructor parameters and their defaults."""
    return {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _default_instance(cls: type) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cls()
    except Exception:  # some need arguments (PercentilePruner, ThresholdPruner)
        return None


def _read_argument(obj: Any, param: str) -> Any:
    if param == "seed" and "_seed" not in vars(obj):
        return _seed_of(obj)
    if param == "seed" and vars(obj)["_seed"] >= 2**32:
        # An unseeded QMCSampler drew a 64-bit seed, which its constructor would refuse;
        # the workers need one shared seed (any), so they get it reduced to 32 bits.
        return vars(obj)["_seed"] % 2**32
    alias = _ALIASES.get((type(obj).__name__, param))
    state = vars(obj)
    for key in (alias, f"_{param}", param):
        if key is not None and key in state:
            return state[key]
    for child in state.values():  # one level deep: TPE's parzen parameters, NSGA strategies
        fields = child._asdict() if isinstance(child, tuple) and hasattr(child, "_asdict") \
            else getattr(child, "__dict__", None)
        if isinstance(fields, dict):
            for key in (f"_{param}", param):
                if key in fields:
                    return fields[key]
    return _MISSING


def _seed_of(obj: Any) -> Any:
    """The seed a LazyRandomState was made with, while it is unused; else None (unknown)."""
    for key in ("_rng", "_cma_rng"):
        lazy = vars(obj).get(key)
        if isinstance(lazy, LazyRandomState):
            break
    else:
        return _MISSING
    if lazy._rng is None:
        return None
    if hasattr(obj, "_all_grids"):  # GridSampler shuffles its grid with `seed or 0` at once
        return None if obj._all_grids == _default_grid(obj)._all_grids else _unknown_seed(obj)
    _, words, position, has_gauss, _ = lazy._rng.get_state()
    candidate = int(words[0])
    if position == 624 and not has_gauss and np.array_equal(
        np.random.RandomState(candidate).get_state()[1], words
    ):
        return candidate
    return _unknown_seed(obj)


def _default_grid(grid: Any) -> Any:
    return type(grid)(grid._search_space)


def _unknown_seed(obj: Any) -> None:
    warnings.warn(
        f"the seed of this {type(obj).__name__} cannot be read back (it has already drawn "
        "numbers), so it is not recorded: the workers draw their own"
        + (" and visit the grid in another order (each point once, as always)"
           if hasattr(obj, "_all_grids") else ""), stacklevel=5,
    )
    return None


def _encode(value: Any, where: str, refused: list[ValueError]) -> Any:
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return _encode(value.item(), where, refused)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return {"$ndarray": _encode(value.tolist(), where, refused), "dtype": value.dtype.str}
    if isinstance(value, list):
        return [_encode(v, where, refused) for v in value]
    if isinstance(value, tuple) and not hasattr(value, "_asdict"):
        return {"$tuple": [_encode(v, where, refused) for v in value]}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"$dict": {k: _encode(v, f"{where}[{k!r}]", refused) for k, v in value.items()}}
    if isinstance(value, types.FunctionType) and value.__module__.startswith(_FUNCTION_PREFIXES) \
            and "." not in value.__qualname__:
        return {"$function": f"{value.__module__}:{value.__qualname__}"}
    if type(value) in _NAMES:
        return _describe(value, where, refused)
    raise _refuse(where, value)


# -- build --------------------------------------------------------------------------------


def build(spec: dict[str, Any] | None, salt: str | None = None) -> Any:
    """The sampler or pruner a spec describes (None for None). With `salt`, every seed is
    replaced by one derived from (seed, salt): parallel workers rebuilding TPESampler(seed=1)
    would otherwise all draw the same "random" startup points. QMCSampler keeps its seed."""
    if spec is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation and experimental notes were seen once
        return _build(spec, salt, "the recorded spec")


def _build(spec: Any, salt: str | None, where: str) -> Any:
    if not isinstance(spec, dict) or set(spec) != {"$class", "args"} \
            or not isinstance(spec["args"], dict):
        raise ValueError(f"{where} is not a sampler/pruner spec: {spec!r}")
    cls = CLASSES.get(spec["$class"])
    if cls is None:
        raise ValueError(
            f"{where} names {spec['$class']!r}, which is not one of Optuna's samplers or "
            f"pruners; refused (only classes from {', '.join(ALLOWED_MODULES)} are rebuilt)"
        )
    args = {k: _decode(v, salt, f"{spec['$class']}({k}=...)") for k, v in spec["args"].items()}
    if salt is not None and args.get("seed") is not None and cls.__name__ not in _SHARED_SEED:
        digest = hashlib.sha256(f"{args['seed']}:{salt}".encode()).digest()
        args["seed"] = int.from_bytes(digest[:4], "little")
    return cls(**args)


def _decode(value: Any, salt: str | None, where: str) -> Any:
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if isinstance(value, list):
        return [_decode(v, salt, where) for v in value]
    if not isinstance(value, dict) or not value:
        raise ValueError(f"{where}: unexpected value {value!r}")
    if "$class" in value:
        return _build(value, salt, where)
    if set(value) == {"$float"} and value["$float"] in ("inf", "-inf", "nan"):
        return float(value["$float"])
    if set(value) == {"$tuple"}:
        return tuple(_decode(v, salt, where) for v in value["$tuple"])
    if set(value) == {"$dict"} and isinstance(value["$dict"], dict):
        return {k: _decode(v, salt, where) for k, v in value["$dict"].items()}
    if set(value) == {"$ndarray", "dtype"}:
        dtype = np.dtype(value["dtype"])
        if dtype.kind not in "biuf":
            raise ValueError(f"{where}: arrays of {dtype} are not rebuilt")
        return np.asarray(_decode(value["$ndarray"], salt, where), dtype=dtype)
    if set(value) == {"$function"}:
        return _function(value["$function"], where)
    raise ValueError(f"{where}: unexpected value {value!r}")


def _function(ref: Any, where: str) -> Any:
    module_name, _, name = str(ref).partition(":")
    if not module_name.startswith(_FUNCTION_PREFIXES) or not name.isidentifier():
        raise ValueError(f"{where}: {ref!r} is not a function of optuna.samplers/pruners")
    function = getattr(importlib.import_module(module_name), name, None)
    if not isinstance(function, types.FunctionType):
        raise ValueError(f"{where}: {ref!r} is not a function of optuna.samplers/pruners")
    return function


# -- comparing states ---------------------------------------------------------------------


def _first_difference(a: Any, b: Any, path: str, depth: int = 0) -> str | None:
    """Where two samplers'/pruners' states differ (random generators aside), or None."""
    if depth > 12:
        return None
    if isinstance(a, (LazyRandomState, np.random.RandomState)):
        return None if type(a) is type(b) else f"{path} differs"
    if path.endswith("._seed") and isinstance(a, int) and a >= 2**32:
        return None if b == a % 2**32 else f"{path} is {b!r}, not {a!r}"
    if path.endswith("._all_grids"):  # its order comes from the seed (see _unknown_seed)
        a, b = sorted(map(repr, a)), sorted(map(repr, b))
    numbers = (int, float, np.integer, np.floating)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        same = a == b or (math.isnan(a) and math.isnan(b))
        return None if same else f"{path} is {b!r}, not {a!r}"
    if type(a) is not type(b):
        return f"{path} is a {type(b).__name__}, not a {type(a).__name__}"
    if isinstance(a, np.ndarray):
        return None if np.array_equal(a, b, equal_nan=a.dtype.kind == "f") \
            else f"{path} differs"
    if isinstance(a, dict):
        if list(a) != list(b):
            return f"{path} has keys {list(b)}, not {list(a)}"
        for key in a:
            found = _first_difference(a[key], b[key], f"{path}[{key!r}]", depth + 1)
            if found:
                return found
        return None
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return f"{path} has {len(b)} items, not {len(a)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _first_difference(x, y, f"{path}[{i}]", depth + 1)
            if found:
                return found
        return None
    if isinstance(a, (types.FunctionType, types.BuiltinFunctionType, type)):
        return None if a is b else f"{path} is {b!r}, not {a!r}"
    if hasattr(a, "__dict__"):
        if list(vars(a)) != list(vars(b)):
            return f"{path} has attributes {list(vars(b))}, not {list(vars(a))}"
        for key, value in vars(a).items():
            found = _first_difference(value, vars(b)[key], f"{path}.{key}", depth + 1)
            if found:
                return found
        return None
    return None if a == b else f"{path} is {b!r}, not {a!r}"


def first_difference(a: Any, b: Any) -> str | None:
    """Public for tests: where two samplers' or pruners' states differ, or None."""
    return _first_difference(a, b, type(a).__name__)


__all__ = ["CLASSES", "build", "describe", "first_difference"]
