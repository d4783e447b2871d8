"""A crafted snapshot changes nothing beyond itself (issue 18): the allow-list unpickler refused
dangerous globals, but a snapshot could name an allowed class and BUILD a state onto the class
object (every FrozenTrial.number became 7; TrialState.is_finished and apply_logs replaced)
before it was judged invalid. Now it is loaded into fresh objects, checked, and a rejected
one leaves every class, function and enum member as it was; a normal study still works."""

from __future__ import annotations

import copyreg
import pickle
import struct
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._storage import JournalStorageReplayResult
from optuna.trial import FrozenTrial, TrialState

from optuna_grpc_storage import GrpcJournalStorage
from optuna_grpc_storage.storage.snapshots import dump_replay_state, load_replay_state

optuna.logging.set_verbosity(optuna.logging.WARNING)


def text(s: str) -> bytes:
    data = s.encode()
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def set_on_class(module: str, name: str, attr: str, value: bytes) -> bytes:
    """GLOBAL module.name; BUILD (None, {attr: value}) on the class object itself; POP."""
    return (b"c" + module.encode() + b"\n" + name.encode() + b"\n"
            + b"N}" + text(attr) + value + b"s" + b"\x86" + b"b" + b"0")


ATTACK = (set_on_class("optuna.trial._frozen", "FrozenTrial", "number", b"K\x07")
          + set_on_class("optuna.trial._state", "TrialState", "is_finished", b"N")
          + set_on_class("optuna.storages.journal._storage", "JournalStorageReplayResult",
                         "apply_logs", b"N")
          + set_on_class("copyreg", "_reconstructor", "__doc__", text("owned")))


def originals() -> dict[str, Any]:
    return {"number": FrozenTrial.__dict__["number"], "is_finished":
            TrialState.__dict__["is_finished"], "apply_logs":
            JournalStorageReplayResult.__dict__["apply_logs"],
            "reconstructor": (copyreg._reconstructor, copyreg._reconstructor.__doc__),
            "complete": dict(vars(TrialState.COMPLETE))}


@pytest.fixture
def untouched() -> Iterator[None]:
    before = originals()
    try:
        yield
        assert originals() == before
        assert TrialState.COMPLETE.is_finished() and not TrialState.RUNNING.is_finished()
    finally:  # a failure must not poison the rest of the session
        FrozenTrial.number = before["number"]
        TrialState.is_finished = before["is_finished"]
        JournalStorageReplayResult.apply_logs = before["apply_logs"]
        copyreg._reconstructor.__doc__ = before["reconstructor"][1]


def a_state(n_trials: int = 3) -> JournalStorageReplayResult:
    """A real replay state: a study of n_trials, kept by Optuna's own JournalStorage."""
    with tempfile.TemporaryDirectory() as directory:
        journal = optuna.storages.JournalStorage(JournalFileBackend(f"{directory}/j.log"))
        optuna.create_study(storage=journal, study_name="s").optimize(
            lambda t: t.suggest_float("x", 0, 1), n_trials=n_trials)
        return journal._replay_result


def test_a_crafted_snapshot_that_is_refused_leaves_nothing_behind(untouched: None) -> None:
    with pytest.raises(pickle.UnpicklingError):
        load_replay_state(b"\x80\x02" + ATTACK + b"N.")


def test_a_crafted_prefix_to_a_valid_snapshot_changes_no_class(untouched: None) -> None:
    state = a_state()
    body = pickle.dumps(state, protocol=3)
    restored = load_replay_state(body[:2] + ATTACK + body[2:])
    numbers = [t.number for t in restored.get_all_trials(0, None)]
    assert numbers == [0, 1, 2]
    assert all(type(t) is FrozenTrial for t in restored.get_all_trials(0, None))
    assert type(restored) is JournalStorageReplayResult


@pytest.mark.parametrize("attack", [
    # BUILD on a shared enum member: REDUCE TrialState(1), then set its _value_
    b"coptuna.trial._state\nTrialState\nK\x01\x85R}" + text("_value_") + b"K\x07sb0",
    # BUILD on the module-level function copyreg._reconstructor (its __dict__)
    b"ccopyreg\n_reconstructor\n}" + text("owned") + b"K\x01sb0",
])
def test_enum_members_and_functions_cannot_be_changed(untouched: None, attack: bytes) -> None:
    with pytest.raises(Exception):  # noqa: B017 (refused, whatever the exception)
        load_replay_state(b"\x80\x02" + attack + b"N.")
    assert TrialState(1) is TrialState.COMPLETE and TrialState.COMPLETE.value == 1
    assert not hasattr(copyreg._reconstructor, "owned")


def test_a_class_put_in_a_field_is_refused(untouched: None) -> None:
    state = a_state(1)
    body = pickle.dumps(state, protocol=3)
    # replace the state by {'x': FrozenTrial}: a class object where data belongs
    crafted = b"\x80\x02}" + text("x") + b"coptuna.trial._frozen\nFrozenTrial\ns."
    with pytest.raises(pickle.UnpicklingError, match="refused"):
        load_replay_state(crafted)
    assert load_replay_state(body).get_all_trials(0, None)[0].number == 0


@pytest.mark.parametrize("protocol", [3, 4, pickle.HIGHEST_PROTOCOL])
def test_real_snapshots_still_load_whole(protocol: int) -> None:
    state = a_state(4)
    restored = load_replay_state(pickle.dumps(state, protocol=protocol))
    assert restored.get_all_trials(0, None) == state.get_all_trials(0, None)
    assert [t.state for t in restored.get_all_trials(0, None)] == [TrialState.COMPLETE] * 4
    assert restored.get_all_trials(0, None)[0].state is TrialState.COMPLETE
    assert load_replay_state(dump_replay_state(state)).get_study(0).study_name == "s"


def test_through_the_proxy_a_crafted_snapshot_is_ignored_and_studies_work(
        make_storage: Callable[..., GrpcJournalStorage], untouched: None) -> None:
    first = make_storage("crafted")
    study = optuna.create_study(study_name="victim", storage=first)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    length = first.grpc_backend._next
    assert first.grpc_backend.save_snapshot_at(b"\x80\x02" + ATTACK + b"N.", length)
    fresh = make_storage("crafted")  # loads the crafted snapshot, refuses it, replays
    assert fresh.grpc_backend.snapshot_position == -1  # forgotten: the next one may be saved
    loaded = optuna.load_study(study_name="victim", storage=fresh)
    assert [t.number for t in loaded.trials] == [0, 1, 2]
    other = optuna.create_study(study_name="after", storage=make_storage("after-crafted"))
    other.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    assert [t.number for t in other.trials] == [0, 1, 2]
    assert all(t.state.is_finished() for t in other.trials)
