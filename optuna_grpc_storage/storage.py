"""GrpcJournalStorage: Optuna's JournalStorage on a GrpcJournalBackend, with three changes.

* Snapshots are loaded with an unpickler that only rebuilds Optuna's own state classes, so a
  snapshot written by anyone holding the token cannot run code in every worker that loads it.
* Snapshots are taken when the journal crosses fixed, geometrically spaced positions (10k,
  12.5k, 15.6k... entries), by the one worker whose append crossed it, instead of Optuna's
  pickle of the whole state every 100 trials by whoever created that trial. The total cost of
  snapshots stays proportional to the journal, and a new process replays at most a fifth of it.
* The WAITING trials every optimize() trial asks for come from an index (waiting.py) instead
  of a scan of the whole study, so a trial costs the same in a large study as in a small one.
"""

from __future__ import annotations

import copy
import io
import logging
import pickle
from collections.abc import Container
from typing import Any

from optuna.storages.journal import BaseJournalBackend, JournalStorage
from optuna.storages.journal._storage import JournalStorageReplayResult
from optuna.trial import FrozenTrial, TrialState

from optuna_grpc_storage.backend import GrpcJournalBackend
from optuna_grpc_storage.waiting import WaitingIndex, only_waiting

log = logging.getLogger(__name__)

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
    ("copyreg", "_reconstructor"),
    ("builtins", "object"),
}


class _OptunaStateUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"snapshot refers to {module}.{name}, refused")
        return super().find_class(module, name)


def snapshot_thresholds(upto: int) -> list[int]:
    """Journal positions at which a snapshot is due, up to `upto`."""
    out, t = [], FIRST_SNAPSHOT_AT
    while t <= upto:
        out.append(t)
        t = int(t * SNAPSHOT_GROWTH) + 1
    return out


class _LogOnly(BaseJournalBackend):
    """The backend seen by JournalStorage's own code: logs only, so Optuna does not pickle
    the whole state every 100 trials (snapshots are this module's job)."""

    def __init__(self, backend: GrpcJournalBackend) -> None:
        self.backend = backend

    def read_logs(self, log_number_from: int) -> Any:
        return self.backend.read_logs(log_number_from)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self.backend.append_logs(logs)


class GrpcJournalStorage(JournalStorage):
    """A ready JournalStorage on the storage proxy.

    Usable wherever Optuna takes a storage::

        storage = GrpcJournalStorage("proxy:13000", token="...")   # or from the environment
        study = optuna.load_study(study_name="cnn", storage=storage)

    Extra keyword arguments go to GrpcJournalBackend (read_staleness, timeout, ...).
    """

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        journal: str = "default",
        **backend_kwargs: Any,
    ) -> None:
        self.grpc_backend = GrpcJournalBackend(endpoint, token, journal, **backend_kwargs)
        self._waiting = WaitingIndex()
        super().__init__(self.grpc_backend)  # loads the snapshot through restore_replay_result
        self._backend = _LogOnly(self.grpc_backend)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # a fresh replay state: the index starts fresh too
        self._waiting = WaitingIndex()

    def restore_replay_result(self, snapshot: bytes) -> None:
        try:
            restored = _OptunaStateUnpickler(io.BytesIO(snapshot)).load()
            if not isinstance(restored, JournalStorageReplayResult):
                raise pickle.UnpicklingError(f"snapshot holds a {type(restored).__name__}")
        except Exception as e:  # a bad snapshot costs a full replay, never a wrong state
            log.warning("ignoring the snapshot of this journal: %s", e)
            self.grpc_backend.snapshot_position = -1
            return
        # As JournalStorage.restore_replay_result does: the state is ours, the identity is new.
        restored._worker_id_prefix = self._worker_id_prefix
        restored._worker_id_to_owned_trial_id = {}
        restored._last_created_trial_id_by_this_process = -1
        self._replay_result = restored
        self._waiting.rebuild(restored)

    def take_snapshot(self) -> bool:
        """Save a snapshot of the whole journal now, e.g. after a bulk import, so that new
        processes need not replay it; False if the proxy already has one as recent."""
        with self._thread_lock:
            self._sync_with_backend()
            position = self._replay_result.log_number_read
            return self.grpc_backend.save_snapshot_at(pickle.dumps(self._replay_result), position)

    def _sync_with_backend(self) -> None:
        replay = self._replay_result
        trials_before = len(replay._trials)
        logs = self._backend.read_logs(replay.log_number_read)
        try:
            replay.apply_logs(logs)  # as JournalStorage does; it raises on its own bad entries
        finally:
            self._waiting.add_new_trials(replay, trials_before)
            self._waiting.add_set_to_waiting(replay, logs)
        self._snapshot_if_due()

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        if not only_waiting(states):
            return super().get_all_trials(study_id, deepcopy, states)
        with self._thread_lock:  # what every optimize() trial asks first: answer it in O(1)
            self._sync_with_backend()
            self._replay_result.get_study(study_id)  # KeyError for an unknown study, as Optuna
            trials = self._waiting.waiting(self._replay_result, study_id)
            return copy.deepcopy(trials) if deepcopy else trials

    def _snapshot_if_due(self) -> None:
        """Called under JournalStorage's lock, so the pickled state is consistent."""
        appended = self.grpc_backend.last_append
        if appended is None:
            return
        first, count = appended
        self.grpc_backend.last_append = None
        due = [t for t in snapshot_thresholds(first + count) if first < t <= first + count]
        position = self._replay_result.log_number_read
        if not due or position <= self.grpc_backend.snapshot_position:
            return
        try:
            self.grpc_backend.save_snapshot_at(pickle.dumps(self._replay_result), position)
        except Exception as e:  # the log is the truth; a missed snapshot only costs time
            log.warning("could not save a snapshot at position %d: %s", position, e)
