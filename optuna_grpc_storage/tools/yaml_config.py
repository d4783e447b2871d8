"""The YAML config of an experiment (see optuna_grpc_storage.tools.experiment), read and checked.

    study_name: digits-sgd            # required
    direction: maximize               # or directions: [maximize, minimize]
    n_trials: 20
    parallelism: 2
    sampler: {class: TPESampler, args: {seed: 1}}     # or just TPESampler
    pruner: {class: PatientPruner, args: {wrapped_pruner: {class: MedianPruner}, patience: 2}}
    params: {epochs: 10, model: {loss: hinge}}         # static, passed as they are
    search_space:
      alpha: {type: float, low: 1.0e-6, high: 1.0e-2, log: true}
      model.penalty: [l2, l1]                          # choices; a dotted name goes inside
      batch: {type: int, low: 16, high: 256, step: 16}

The session gets `cfg` = the static params with one value of each search-space parameter put
in (`cfg["model"]["penalty"]` above) and returns the value to optimise (a sequence of them for
several directions). A session with a second parameter gets `report(step, value) -> bool`:
it records an intermediate value and answers whether to stop (the trial is then pruned). The
sampler and pruner are Optuna's own classes, by name, recorded with the study as
`optuna_grpc_storage.runner.specs` records them. Every error names the key it is about.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml

from optuna_grpc_storage.runner import specs

TOP_KEYS = ("study_name", "journal", "direction", "directions", "n_trials", "parallelism",
            "timeout", "sampler", "pruner", "params", "search_space", "requirements", "session")
PARAM_KEYS = {"float": ("type", "low", "high", "step", "log"),
              "int": ("type", "low", "high", "step", "log"),
              "categorical": ("type", "choices")}
DIRECTIONS = ("minimize", "maximize")


class ConfigError(ValueError):
    """The config is wrong; the message lists every problem, each with its key path."""


@dataclass(frozen=True)
class Param:
    """One search-space parameter, suggested with Optuna's public suggest_* API."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high),
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high),
                                   step=self.step, log=self.log)


@dataclass(frozen=True)
class Experiment:
    study_name: str
    directions: list[str]
    search_space: list[Param]
    params: dict[str, Any] = field(default_factory=dict)
    journal: str = "default"
    n_trials: int = 10
    parallelism: int = 1
    timeout: float | None = None
    sampler: Any = None  # an Optuna sampler / pruner object, built from the config
    pruner: Any = None
    requirements: tuple[str, ...] = ()
    session: str | None = None


class _Problems:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.lines.append(f"{path}: {message}")


def is_number(v: Any) -> bool:
    """A plain number (a bool is not one)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _number(v: Any) -> float | int | None:
    """A number; also a string such as '1e-4', which YAML 1.1 (PyYAML) reads as a string."""
    if is_number(v):
        return v
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _positive_int(raw: Mapping[str, Any], key: str, default: int, p: _Problems) -> int:
    v = raw.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        p.add(key, f"must be a positive integer (got {v!r})")
        return default
    return v


def load_config(path: str | os.PathLike[str]) -> Experiment:
    """Read and check a config file; ConfigError listing every problem, by key path."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read the config {os.fspath(path)!r}: {e.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{os.fspath(path)} is not valid YAML: {e}") from None
    try:
        return parse_config(raw)
    except ConfigError as e:
        raise ConfigError(f"{os.fspath(path)}:\n{e}") from None


def parse_config(raw: Any) -> Experiment:
    p = _Problems()
    if not isinstance(raw, dict):
        raise ConfigError(f"  (top level): must be a mapping of keys {', '.join(TOP_KEYS)}")
    for key in raw:
        if key not in TOP_KEYS:
            p.add(str(key), f"unknown key (expected one of {', '.join(TOP_KEYS)})")
    name = raw.get("study_name")
    if not isinstance(name, str) or not name.strip():
        p.add("study_name", "must be a non-empty string")
    journal = raw.get("journal", "default")
    if not isinstance(journal, str) or not journal:
        p.add("journal", "must be a journal name")
    directions = _directions(raw, p)
    timeout = raw.get("timeout")
    if timeout is not None and not (is_number(timeout) and timeout > 0):
        p.add("timeout", f"must be a positive number of seconds or null (got {timeout!r})")
    params = raw.get("params", {}) if raw.get("params") is not None else {}
    if not isinstance(params, dict):
        p.add("params", "must be a mapping of static parameters")
        params = {}
    space = _search_space(raw.get("search_space"), params, p)
    requirements = raw.get("requirements", []) or []
    if not isinstance(requirements, list) or not all(isinstance(r, str) for r in requirements):
        p.add("requirements", "must be a list of pip requirement strings")
        requirements = []
    session = raw.get("session")
    if session is not None and (not isinstance(session, str) or ":" not in session):
        p.add("session", "must be 'package.module:function' or 'path/to/file.py:function'")
    experiment = Experiment(
        study_name=name if isinstance(name, str) else "", directions=directions,
        search_space=space, params=params, journal=journal if isinstance(journal, str) else "",
        n_trials=_positive_int(raw, "n_trials", 10, p),
        parallelism=_positive_int(raw, "parallelism", 1, p), timeout=timeout,
        sampler=_optuna_object(raw.get("sampler"), "sampler", "Sampler", p),
        pruner=_optuna_object(raw.get("pruner"), "pruner", "Pruner", p),
        requirements=tuple(requirements), session=session,
    )
    if p.lines:
        raise ConfigError("\n".join(f"  {line}" for line in p.lines))
    return experiment


def _directions(raw: Mapping[str, Any], p: _Problems) -> list[str]:
    if "direction" in raw and "directions" in raw:
        p.add("directions", "give direction or directions, not both")
    if "directions" in raw:
        given, key = raw["directions"], "directions"
        if not isinstance(given, list) or not given:
            p.add(key, "must be a non-empty list of minimize/maximize")
            return ["minimize"]
    else:
        given, key = [raw.get("direction", "minimize")], "direction"
    out = []
    for i, d in enumerate(given):
        where = key if key == "direction" else f"{key}[{i}]"
        if not isinstance(d, str) or d.lower() not in DIRECTIONS:
            p.add(where, f"must be minimize or maximize (got {d!r})")
        else:
            out.append(d.lower())
    return out


def _search_space(raw: Any, params: Mapping[str, Any], p: _Problems) -> list[Param]:
    if not isinstance(raw, dict) or not raw:
        p.add("search_space", "must be a mapping of at least one parameter name to "
              "{type: float|int|categorical, ...} or to a list of choices")
        return []
    out = []
    for name, spec in raw.items():
        where = f"search_space.{name}"
        if not isinstance(name, str) or not name or any(not part for part in name.split(".")):
            p.add(where, "parameter names must be non-empty strings (dots nest them in cfg)")
            continue
        _check_nesting(name, params, where, p)
        param = _param(name, spec, where, p)
        if param is not None:
            out.append(param)
    return out


def _check_nesting(name: str, params: Mapping[str, Any], where: str, p: _Problems) -> None:
    node: Any = params
    parts = name.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            return
        if depth == len(parts) - 1:
            p.add(where, f"is also a static parameter (params.{name}); keep one of them")
            return
        node = node[part]
        if not isinstance(node, dict):
            p.add(where, f"params.{'.'.join(parts[:depth + 1])} is not a mapping, so "
                  f"{name} cannot go inside it")
            return


def _param(name: str, spec: Any, where: str, p: _Problems) -> Param | None:
    if isinstance(spec, list):
        spec = {"type": "categorical", "choices": spec}
    if not isinstance(spec, dict):
        p.add(where, "must be {type: float|int|categorical, ...} or a list of choices")
        return None
    kind = spec.get("type", "categorical" if "choices" in spec else None)
    if kind not in PARAM_KEYS:
        p.add(f"{where}.type", f"must be one of float, int, categorical (got {kind!r})")
        return None
    before = len(p.lines)
    for key in spec:
        if key not in PARAM_KEYS[kind]:
            p.add(f"{where}.{key}", f"unknown key for a {kind} parameter (expected "
                  f"{', '.join(PARAM_KEYS[kind][1:])})")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            p.add(f"{where}.choices", "must be a non-empty list")
        elif not all(c is None or isinstance(c, (bool, int, float, str)) for c in choices):
            p.add(f"{where}.choices", "each choice must be null, a boolean, a number or a "
                  "string (Optuna stores them as such)")
        return None if len(p.lines) > before else Param(name, kind, choices=tuple(choices))
    bounds = {}
    for key in ("low", "high"):
        value = _number(spec.get(key))
        if value is None or (kind == "int" and (not isinstance(value, int) or isinstance(
                value, bool))) or not math.isfinite(value):
            p.add(f"{where}.{key}", f"must be {'an integer' if kind == 'int' else 'a number'}"
                  f" (got {spec.get(key)!r})")
        bounds[key] = value
    log = spec.get("log", False)
    if not isinstance(log, bool):
        p.add(f"{where}.log", f"must be true or false (got {log!r})")
    step = spec.get("step")
    if step is not None:
        step = _number(step)
        if step is None or step <= 0 or (kind == "int" and not isinstance(step, int)):
            p.add(f"{where}.step", f"must be a positive {'integer' if kind == 'int' else 'number'}"
                  f" or null (got {spec.get('step')!r})")
    if len(p.lines) > before:
        return None
    low, high = bounds["low"], bounds["high"]
    if low > high:
        p.add(f"{where}.low", f"must not exceed high ({low} > {high})")
    elif log and low <= 0:
        p.add(f"{where}.low", f"must be > 0 with log: true (got {low})")
    elif log and step not in (None, 1):
        p.add(f"{where}.step", "cannot be combined with log: true")
    return None if len(p.lines) > before else Param(name, kind, low, high, step, log)


def _optuna_object(raw: Any, key: str, kind: str, p: _Problems) -> Any:
    """The sampler or pruner a config names, built through specs (Optuna's own classes)."""
    if raw is None:
        return None
    try:
        return specs.build(_to_spec(raw, key, kind))
    except ConfigError as e:
        p.add(*str(e).split(": ", 1))
    except Exception as e:  # the class's own check of its arguments
        p.add(f"{key}.args", f"{type(e).__name__}: {e}")
    return None


def _classes(kind: str) -> dict[str, str]:
    """Short and full names of Optuna's classes of a kind ('Sampler', 'Pruner', '' for any:
    an argument may be a crossover of NSGA-II, for example)."""
    out = {}
    for full in specs.CLASSES:
        short = full.rsplit(".", 1)[-1]
        if not short.startswith("Base") and short.endswith(kind):
            out[short] = out[full] = full
    return out


def _to_spec(raw: Any, where: str, kind: str) -> dict[str, Any]:
    if isinstance(raw, str):
        raw = {"class": raw}
    if not isinstance(raw, dict) or "class" not in raw or set(raw) - {"class", "args"}:
        raise ConfigError(f"{where}: must be a class name or {{class: Name, args: {{...}}}}")
    known = _classes(kind)
    if not isinstance(raw["class"], str) or raw["class"] not in known:
        names = sorted(n for n in known if "." not in n)
        raise ConfigError(f"{where}.class: {raw['class']!r} is not one of Optuna's "
                          f"{kind.lower() or 'sampler or pruner'}s ({', '.join(names)})")
    args = raw.get("args", {}) or {}
    if not isinstance(args, dict):
        raise ConfigError(f"{where}.args: must be a mapping of argument names to values")
    return {"$class": known[raw["class"]],
            "args": {k: _to_arg(v, f"{where}.args.{k}") for k, v in args.items()}}


def _to_arg(value: Any, where: str) -> Any:
    if isinstance(value, dict) and "class" in value:
        return _to_spec(value, where, "")
    if isinstance(value, dict):
        return {"$dict": {str(k): _to_arg(v, f"{where}.{k}") for k, v in value.items()}}
    if isinstance(value, list):
        return [_to_arg(v, where) for v in value]
    return value
