"""Snapshots of Optuna's replay state: when one is due, and how one is read back safely.

A snapshot is taken when the journal crosses fixed, geometrically spaced positions (10k,
12.5k, 15.6k... entries), by the one worker whose append crossed it, instead of Optuna's pickle
of the whole state every 100 trials by whoever created that trial: the total cost of snapshots
stays proportional to the journal, and a new process replays at most a fifth of it.

A snapshot is written by anyone holding the token, so it is unpickled with an allow-list of
Optuna's own state classes: it cannot run code in the workers that load it. Nor can it change
anything beyond itself: the pickle never gets hold of a real class or function (only stand-ins
made for this one load), so a BUILD aimed at a class sets attributes on a throwaway, and the
result is checked to hold only data and instances before anything uses it.
"""

from __future__ import annotations

import copyreg
import datetime
import enum
import io
import pickle
import types
from typing import Any

from optuna.storages.journal._storage import JournalStorageReplayResult

FIRST_SNAPSHOT_AT = 10_000
SNAPSHOT_GROWTH = 1.25

_SAFE_GLOBALS = {
    ("optuna.storages.journal._storage", "JournalStorageReplayResult"),
    ("optuna.study._frozen", "FrozenStudy"),
    ("optuna.trial._frozen", "FrozenTrial"),
    ("optuna.study._study_direction", "StudyDirection"),
    ("optuna.trial._state", "TrialState"),
    ("optuna.distributions", "FloatDistribution"),
    ("optuna.distributions", "IntDistribution"),
    ("optuna.distributions", "CategoricalDistribution"),
    ("optuna.distributions", "UniformDistribution"),
    ("optuna.distributions", "LogUniformDistribution"),
    ("optuna.distributions", "DiscreteUniformDistribution"),
    ("optuna.distributions", "IntUniformDistribution"),
    ("optuna.distributions", "IntLogUniformDistribution"),
    ("datetime", "datetime"),
    ("datetime", "date"),
    ("datetime", "timedelta"),
    ("datetime", "timezone"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "complex"),
    ("builtins", "object"),
}


_CALLABLES = {("copyreg", "_reconstructor")}
_SCALARS = frozenset({str, int, float, bool, bytes, bytearray, type(None), complex,
                      datetime.datetime, datetime.date, datetime.timedelta, datetime.timezone})
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class defined in Python, whose __class__ may move


class _Member:
    """An enum member as the pickle sees it: a fresh object without attributes (a BUILD on it
    fails), replaced by the real member once the load is over."""

    __slots__ = ("enum", "value")

    def __init__(self, enum_class: type[enum.Enum], value: Any) -> None:
        self.enum, self.value = enum_class, value


class _OptunaStateUnpickler(pickle.Unpickler):
    """Only Optuna's state classes, and never the classes themselves: find_class gives the
    pickle a stand-in made for this load, so a BUILD (or SETITEMS...) aimed at a class
    changes a throwaway. A Python class becomes a fresh subclass of the same layout (NEWOBJ
    needs a type; instances get the real class back in _Settle); an enum, a C type or a
    function becomes a fresh function that REDUCE calls (an enum's gives a _Member)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.stand_ins: dict[Any, Any] = {}  # stand-in -> the real class or function

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _SAFE_GLOBALS | _CALLABLES:
            raise pickle.UnpicklingError(f"snapshot refers to {module}.{name}, refused")
        real = super().find_class(module, name)
        stand_in = self._stand_in(real)
        self.stand_ins[stand_in] = real
        return stand_in

    def _stand_in(self, real: Any) -> Any:
        if isinstance(real, enum.EnumMeta):
            return lambda value: _Member(real, value)
        if isinstance(real, type) and real.__flags__ & _HEAPTYPE:
            return types.new_class(real.__name__, (real,), exec_body=lambda ns: ns.update(
                {"__slots__": (), "__module__": __name__, "__qualname__": real.__qualname__}))
        if real is copyreg._reconstructor:
            return lambda cls, base, state: real(self.stand_ins.get(cls, cls),
                                                 self.stand_ins.get(base, base), state)
        return lambda *args: real(*args)


class _Settle:
    """The loaded state made real: instances get their classes back, enum members replace
    their _Member, and anything but data and instances (a class, a function, a module: a
    stand-in put in a field) refuses the snapshot."""

    def __init__(self, stand_ins: dict[Any, Any]) -> None:
        self.stand_ins = stand_ins
        self.reals = {r for r in stand_ins.values() if isinstance(r, type)}
        self.done: dict[int, Any] = {}

    def __call__(self, obj: Any) -> Any:
        kind = type(obj)
        if kind in _SCALARS:
            return obj
        if id(obj) in self.done:
            return self.done[id(obj)]
        if kind is _Member:
            if type(obj.value) not in _SCALARS:
                raise pickle.UnpicklingError("snapshot holds an odd enum value, refused")
            return obj.enum(obj.value)
        self.done[id(obj)] = obj
        if kind is dict:
            self._dict(obj)
        elif kind is list:
            for i, item in enumerate(obj):
                if (settled := self(item)) is not item:
                    obj[i] = settled
        elif kind is set:
            items = [self(x) for x in obj]
            obj.clear()
            obj.update(items)
        elif kind in (tuple, frozenset):
            self.done[id(obj)] = kind(self(x) for x in obj)
        elif kind in self.stand_ins or kind in self.reals:
            obj.__class__ = self.stand_ins.get(kind, kind)
            self._dict(vars(obj))
        else:
            raise pickle.UnpicklingError(f"snapshot holds a {kind.__name__} "
                                         f"({getattr(obj, '__qualname__', '')}), refused")
        return self.done[id(obj)]

    def _dict(self, d: dict[Any, Any]) -> None:
        if any(type(k) not in _SCALARS for k in d):  # keys to settle too: rebuild it
            items = [(self(k), self(v)) for k, v in d.items()]
            d.clear()
            d.update(items)
            return
        for key, value in d.items():
            if (settled := self(value)) is not value:
                d[key] = settled


def load_replay_state(snapshot: bytes) -> JournalStorageReplayResult:
    """The replay state a snapshot holds, built from fresh objects; pickle.UnpicklingError
    (or another exception) if it holds anything else. Whatever the snapshot says, no class,
    function, enum member or module outside it is changed, valid or not."""
    unpickler = _OptunaStateUnpickler(snapshot)
    restored = _Settle(unpickler.stand_ins)(unpickler.load())
    if not isinstance(restored, JournalStorageReplayResult):
        raise pickle.UnpicklingError(f"snapshot holds a {type(restored).__name__}")
    return restored


def dump_replay_state(state: JournalStorageReplayResult) -> bytes:
    return pickle.dumps(state)


def snapshot_thresholds(upto: int) -> list[int]:
    """Journal positions at which a snapshot is due, up to `upto`."""
    out, t = [], FIRST_SNAPSHOT_AT
    while t <= upto:
        out.append(t)
        t = int(t * SNAPSHOT_GROWTH) + 1
    return out


def snapshot_due(first: int, count: int) -> bool:
    """Whether an append of `count` entries at `first` crossed a threshold."""
    return any(first < t <= first + count for t in snapshot_thresholds(first + count))
