"""GrpcJournalStorage: Optuna's JournalStorage on a GrpcJournalBackend, with two changes.

* Snapshots follow snapshots.py: loaded with an allow-list unpickler, taken as the journal
  crosses geometrically spaced positions by the worker whose append crossed one.
* The WAITING trials every optimize() trial asks for come from an index (waiting.py) instead
  of a scan of the whole study, so a trial costs the same in a large study as in a small one.

It also implements Optuna's heartbeat (`BaseHeartbeat`), which until now only RDBStorage had:
a trial whose worker stops sending heartbeats for `grace_period` seconds is failed by the next
worker that starts a trial, and `heartbeat_stale_trial_callback` (for example Optuna's
RetryFailedTrialCallback) can retry it. Heartbeats live beside the journal, stamped and aged by
the Redis clock, so the clocks of the workers' machines never matter.
"""

from __future__ import annotations

import copy
import logging
import threading
import uuid
import warnings
from collections.abc import Callable, Container
from typing import TYPE_CHECKING, Any

from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import BaseJournalBackend, JournalStorage
from optuna.storages.journal._storage import JournalOperation, JournalStorageReplayResult
from optuna.trial import FrozenTrial, TrialState

from optuna_grpc_storage.storage import fork
from optuna_grpc_storage.storage.backend import GrpcJournalBackend
from optuna_grpc_storage.storage.errors import GrpcStorageError
from optuna_grpc_storage.storage.snapshots import dump_replay_state, load_replay_state, snapshot_due
from optuna_grpc_storage.storage.waiting import WaitingIndex, only_waiting

if TYPE_CHECKING:
    import optuna

StaleTrialCallback = Callable[["optuna.study.Study", FrozenTrial], None]
# Optuna 4.9 renamed failed_trial_callback to heartbeat_stale_trial_callback.
_RENAMED_CALLBACK = hasattr(BaseHeartbeat, "get_heartbeat_stale_trial_callback")

log = logging.getLogger(__name__)

# On a trial failed for lost heartbeats: its own number (a retry copies the attributes of the
# trial it retries, so the number tells whose mark it is).
HEARTBEAT_LOST_ATTR = "ogs:heartbeat_lost"
WAITING_TRIALS_PER_APPEND = 500  # well inside the server's 1,000 entries / 1 MiB a batch


class _LogOnly(BaseJournalBackend):
    """The backend seen by JournalStorage's own code: logs only, so Optuna does not pickle
    the whole state every 100 trials (snapshots are this module's job)."""

    def __init__(self, backend: GrpcJournalBackend) -> None:
        self.backend = backend

    def read_logs(self, log_number_from: int) -> Any:
        return self.backend.read_logs(log_number_from)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self.backend.append_logs(logs)


class GrpcJournalStorage(JournalStorage, BaseHeartbeat):
    """A ready JournalStorage on the storage proxy.

    Usable wherever Optuna takes a storage::

        storage = GrpcJournalStorage("proxy:13000", token="...")   # or from the environment
        study = optuna.load_study(study_name="cnn", storage=storage)

    `heartbeat_interval`, `grace_period` and `heartbeat_stale_trial_callback` (or its old name
    `failed_trial_callback`) mean what they mean on RDBStorage: with an interval set, each
    trial run by `study.optimize` records a heartbeat every `heartbeat_interval` seconds, and a
    RUNNING trial without one for `grace_period` seconds (default: twice the interval) is failed
    by the next worker that starts a trial; the callback then runs once for it. Seconds may be
    fractional. Extra keyword arguments go to GrpcJournalBackend (read_staleness, timeout, ...).
    """

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        journal: str = "default",
        *,
        heartbeat_interval: float | None = None,
        grace_period: float | None = None,
        heartbeat_stale_trial_callback: StaleTrialCallback | None = None,
        failed_trial_callback: StaleTrialCallback | None = None,
        **backend_kwargs: Any,
    ) -> None:
        if heartbeat_interval is not None and heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be None or a positive number of seconds")
        if grace_period is not None and grace_period <= 0:
            raise ValueError("grace_period must be None or a positive number of seconds")
        if heartbeat_stale_trial_callback is not None and failed_trial_callback is not None:
            raise ValueError(
                "Specify only one of `heartbeat_stale_trial_callback` and `failed_trial_callback`."
            )
        if failed_trial_callback is not None and _RENAMED_CALLBACK:
            warnings.warn("`failed_trial_callback` is deprecated since Optuna 4.9 (as on "
                          "RDBStorage); use `heartbeat_stale_trial_callback`.", FutureWarning,
                          stacklevel=2)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.heartbeat_stale_trial_callback = (
            heartbeat_stale_trial_callback or failed_trial_callback
        )
        self.grpc_backend = GrpcJournalBackend(endpoint, token, journal, **backend_kwargs)
        self._client = self.grpc_backend.client  # heartbeats go beside the journal
        self._waiting = WaitingIndex()
        super().__init__(self.grpc_backend)  # loads the snapshot through restore_replay_result
        self._backend = _LogOnly(self.grpc_backend)
        self._fork_locked = False
        fork.track(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # a fresh replay state: the index starts fresh too
        self._waiting = WaitingIndex()
        self._fork_locked = False
        fork.track(self)

    # -- fork (fork.py) ---------------------------------------------------------------------

    def _fork_prepare(self) -> None:
        """Let an operation in progress finish, so the child's copy of the state is whole."""
        self._fork_locked = self._thread_lock.acquire(timeout=fork.STATE_LOCK_TIMEOUT)

    def _fork_parent(self) -> None:
        if self._fork_locked:
            self._fork_locked = False
            self._thread_lock.release()

    def _fork_child(self) -> None:
        """The child is a new Optuna worker: its own lock, worker id and no trials of its own
        (Optuna's worker id is prefix + thread id, and a forked main thread keeps its id, so an
        inherited prefix would make the child take the parent's writes for its own)."""
        whole, self._fork_locked = self._fork_locked, False
        self._thread_lock = threading.Lock()
        self._worker_id_prefix = str(uuid.uuid4()) + "-"
        if whole:
            replay = self._replay_result
            replay._worker_id_prefix = self._worker_id_prefix
            replay._worker_id_to_owned_trial_id = {}
            replay._last_created_trial_id_by_this_process = -1
        else:  # forked mid-operation: the copy may be half-applied, start over
            log.warning("forked during a storage operation in another thread; the child "
                        "replays the journal afresh")
            self._replay_result = JournalStorageReplayResult(self._worker_id_prefix)
            self._waiting = WaitingIndex()
            # The backend's lock may be held by the parent's thread that kept this storage busy:
            # the child's own lock first (hooks run in no set order), then start over.
            self.grpc_backend._renew_identity_after_fork()
            self.grpc_backend.restart_reading()

    def create_waiting_trials(self, study_id: int, count: int,
                              system_attrs: dict[str, Any]) -> None:
        """Create `count` WAITING trials (as `enqueue_trial` does, without fixed parameters)
        in as few appends as the server's batch limit allows: one for up to 5,000, all or
        nothing. A worker's `study.ask()` pops them like any enqueued trial."""
        entry = {"op_code": int(JournalOperation.CREATE_TRIAL), "study_id": study_id,
                 "datetime_start": None, "state": int(TrialState.WAITING), "value": None,
                 "values": None, "distributions": {}, "params": {}, "user_attrs": {},
                 "system_attrs": system_attrs, "intermediate_values": {}}
        with self._thread_lock:
            entry["worker_id"] = self._replay_result.worker_id
            for start in range(0, count, WAITING_TRIALS_PER_APPEND):
                self._backend.append_logs([entry] * min(WAITING_TRIALS_PER_APPEND,
                                                        count - start))
            self._sync_with_backend()

    def restore_replay_result(self, snapshot: bytes) -> None:
        try:
            restored = load_replay_state(snapshot)
        except Exception as e:  # a bad snapshot costs a full replay, never a wrong state
            log.warning("ignoring the snapshot of this journal: %s", e)
            self.grpc_backend.forget_snapshot()
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
            return self.grpc_backend.save_snapshot_at(dump_replay_state(self._replay_result),
                                                   position)

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
        appended = self.grpc_backend.take_last_append()
        if appended is None or not snapshot_due(*appended):
            return
        position = self._replay_result.log_number_read
        if position <= self.grpc_backend.snapshot_position:
            return
        try:
            self.grpc_backend.save_snapshot_at(dump_replay_state(self._replay_result), position)
        except Exception as e:  # the log is the truth; a missed snapshot only costs time
            log.warning("could not save a snapshot at position %d: %s", position, e)

    # -- heartbeats (optuna.storages._heartbeat.BaseHeartbeat) ------------------------------

    def record_heartbeat(self, trial_id: int) -> None:
        """Called every heartbeat_interval by Optuna's heartbeat thread. A failed call is
        logged, not raised: raising would end the thread and stop the heartbeats for good,
        while the next beat may well get through (the proxy restarting, Redis failing over)."""
        try:
            self._client.record_heartbeats(self.grpc_backend.journal, [trial_id])
        except GrpcStorageError as e:
            log.warning("missed a heartbeat of trial %d: %s", trial_id, e)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """RUNNING trials of the study whose last heartbeat is older than the grace period.
        Trials that never recorded one (run without heartbeats, by ask/tell) are never stale."""
        assert self.heartbeat_interval is not None
        grace = self.grace_period if self.grace_period is not None else 2 * self.heartbeat_interval
        running = [t._trial_id for t in self.get_all_trials(
            study_id, deepcopy=False, states=(TrialState.RUNNING,))]
        if not running:
            return []
        ages = self.heartbeat_ages(running)
        stale = []
        for trial_id in (t for t in running if ages.get(t, -1.0) > grace):
            # Marked before Optuna fails it, so a reader can tell a lost heartbeat from a
            # failed objective, and knows a retry may follow the FAIL (it is a separate append:
            # the journal cannot make "fail, and retry if I won" one step).
            try:
                number = self.get_trial(trial_id).number
                self.set_trial_system_attr(trial_id, HEARTBEAT_LOST_ATTR, number)
            except UpdateFinishedTrialError:  # finished meanwhile: not stale after all
                continue
            stale.append(trial_id)
        return stale

    def heartbeat_ages(self, trial_ids: list[int]) -> dict[int, float]:
        """Seconds since each trial's last heartbeat, by the Redis clock; trials that never
        recorded one are left out."""
        return self._client.heartbeat_ages(self.grpc_backend.journal, trial_ids)

    def get_heartbeat_interval(self) -> float | None:  # type: ignore[override]
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> StaleTrialCallback | None:
        return self.heartbeat_stale_trial_callback

    if not _RENAMED_CALLBACK:  # Optuna < 4.9 asks for the callback by its old name

        def get_failed_trial_callback(self) -> StaleTrialCallback | None:
            return self.heartbeat_stale_trial_callback
