"""The objective travels to the workers by value, with cloudpickle.

A function defined in a notebook cell (or with `exec`, or in a script run as `__main__`) is
pickled with its code, closures, default arguments, type hints and the globals it uses;
imported modules travel by name and are imported again in the worker. So is the user's own
module that defines the objective when it is a file of theirs rather than an installed
package: it may not exist where the workers run.

What cannot travel is anything bound to this process: files open for writing (one open for
reading travels as a copy of its contents), sockets, locks, database connections, threads...
`pack_objective` names the offending variable when it can, so the fix (open or create it
inside the objective) is obvious.

What it ships carries no secret: a storage, artifact store or Controller the objective uses
pickles without its token and client key (connection.without_secrets), and the worker's copy
takes them from its environment, where the launcher put them (from a Secret on Kubernetes).
"""

from __future__ import annotations

import importlib.util
import pickle
import sys
import sysconfig
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle

from optuna_grpc_storage.storage.connection import without_secrets

CANNOT_TRAVEL = (
    "files open for writing, sockets, locks, database or network connections, threads and "
    "processes "
    "cannot be sent to workers; create them inside the objective instead"
)


def pack_objective(objective: Callable[..., Any]) -> bytes:
    """cloudpickle the objective; ValueError naming what could not be pickled."""
    if not callable(objective):
        raise ValueError(f"the objective must be callable, got {type(objective).__name__}")
    module = _own_module(objective)
    if module is not None:
        cloudpickle.register_pickle_by_value(module)
    try:
        with without_secrets():  # it goes into a ConfigMap or a file: no token in it
            return cloudpickle.dumps(objective, protocol=pickle.DEFAULT_PROTOCOL)
    except Exception as e:
        culprit = _find_unpicklable(objective)
        where = f": {culprit}" if culprit else ""
        raise ValueError(
            f"the objective cannot be sent to the workers ({type(e).__name__}: {e}){where}. "
            f"{CANNOT_TRAVEL.capitalize()}."
        ) from e
    finally:
        if module is not None:
            cloudpickle.unregister_pickle_by_value(module)


def unpack_objective(data: bytes) -> Callable[..., Any]:
    objective = cloudpickle.loads(data)
    if not callable(objective):
        raise TypeError(f"the objective payload holds a {type(objective).__name__}")
    return objective


def _own_module(objective: Callable[..., Any]) -> types.ModuleType | None:
    """The objective's module if it is the user's own file (not stdlib, not installed), so it
    travels by value; None when cloudpickle would send it by value anyway or by name."""
    name = getattr(objective, "__module__", None)
    module = sys.modules.get(name) if name else None
    file = getattr(module, "__file__", None)
    if module is None or name == "__main__" or not file or not hasattr(module, "__spec__"):
        return None
    installed = {Path(p).resolve() for key in ("stdlib", "platstdlib", "purelib", "platlib")
                 if (p := sysconfig.get_paths().get(key))}
    path = Path(file).resolve()
    if any(root in path.parents for root in installed):
        return None
    if name.split(".")[0] in ("optuna", "optuna_grpc_storage"):
        return None
    spec = importlib.util.find_spec(name)
    return module if spec is not None else None


def _find_unpicklable(objective: Any) -> str | None:
    """Walk what the objective refers to, innermost first, and describe the first thing that
    cannot be pickled: the variable to fix rather than the function that holds it."""
    name = getattr(objective, "__name__", "objective")
    for path, value in _references(objective, name, depth=0, seen=set()):
        try:
            cloudpickle.dumps(value)
        except Exception:
            kind = f"{type(value).__module__}.{type(value).__qualname__}"
            return f"{path} is {_short(value)} ({kind}), which cannot be pickled"
    return None


def _references(value: Any, path: str, depth: int, seen: set[int]) -> Iterator[tuple[str, Any]]:
    if id(value) in seen or depth > 6 or isinstance(value, (type, types.ModuleType)):
        return
    seen.add(id(value))
    for label, child in _children(value):
        child_path = path + label if label[0] in "[." else f"{path} → {label}"
        yield from _references(child, child_path, depth + 1, seen)
    yield path, value


def _children(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, types.FunctionType):
        code = value.__code__
        for name, cell in zip(code.co_freevars, value.__closure__ or (), strict=False):
            try:
                yield name, cell.cell_contents
            except ValueError:  # an empty cell
                continue
        for name in dict.fromkeys(_global_names(code)):
            if name in value.__globals__:
                yield name, value.__globals__[name]
        for i, default in enumerate(value.__defaults__ or ()):
            yield f"default argument #{i + 1}", default
        for name, default in (value.__kwdefaults__ or {}).items():
            yield f"default of {name}", default
    elif isinstance(value, types.MethodType):
        yield ".__self__", value.__self__
        yield ".__func__", value.__func__
    elif isinstance(value, dict):
        for key, item in list(value.items())[:1000]:
            yield f"[{key!r}]", item
    elif isinstance(value, (list, tuple, set, frozenset)):
        for i, item in enumerate(list(value)[:1000]):
            yield f"[{i}]", item
    elif isinstance(getattr(value, "__dict__", None), dict):
        for key, item in vars(value).items():
            yield f".{key}", item


def _global_names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _global_names(const)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
