"""TrialController: AIAuto's per-trial log, as the trial's note in optuna-dashboard.

    tc = TrialController(trial)          # one per trial, however often it is made
    tc.log(f"epoch {epoch}: loss {loss:.4f}")

Lines are kept in order and numbered (`[00001] ...`, separated by a line of dashes, as AIAuto
writes them), saved as the trial's note every SAVE_EVERY lines (at most once a SAVE_SECONDS)
and when the trial ends (the worker calls `finish`), and also logged, so they reach the
trial's output (`optuna-grpc-storage logs`). The note keeps the newest NOTE_MAX_CHARS: each
save rewrites it in the journal, so its size is what bounds the journal's growth.

The note is written as optuna-dashboard's `save_note` writes it (study system attributes
`dashboard:<trial_id>:note_ver` and `...:note_str:<i>`, pieces of 2,045 characters), without
needing optuna-dashboard in the trial's image.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, ClassVar

import optuna

SAVE_EVERY = 5
SAVE_SECONDS = 1.0
NOTE_MAX_CHARS = 64_000
NOTE_PIECE = 2045  # optuna_dashboard._note.SYSTEM_ATTR_MAX_LENGTH
SEPARATOR = "\n" + "-" * 10 + "\n"
MAX_INSTANCES = 10_000
log = logging.getLogger("optuna_grpc_storage.trial")


class TrialController:
    """One per trial (by trial id): AIAuto's `log`, `flush`, `get_trial`, `set_user_attr`."""

    RESERVED_KEYS = frozenset({"pod_name", "trialbatch_name", "gpu_name", "artifact_id",
                               "artifact_removed"})
    _instances: ClassVar[dict[int, TrialController]] = {}
    _lock = threading.Lock()

    def __new__(cls, trial: optuna.Trial | optuna.trial.FrozenTrial) -> TrialController:
        key = getattr(trial, "_trial_id", id(trial))
        with cls._lock:
            existing = cls._instances.get(key)
            if existing is None:
                if len(cls._instances) >= MAX_INSTANCES:  # ask/tell loops never call finish
                    cls._instances.pop(next(iter(cls._instances)))
                existing = cls._instances[key] = super().__new__(cls)
                existing._setup(trial)
            return existing

    def __init__(self, trial: optuna.Trial | optuna.trial.FrozenTrial) -> None:
        """Everything happens in __new__, which may return the trial's existing controller."""

    def _setup(self, trial: Any) -> None:
        self.trial = trial
        self.logs: list[str] = []
        self.log_count = 0
        self.saved_count = 0
        self.saved_at = 0.0
        self.pieces = 0  # note pieces written last time
        self.warned = False

    def get_trial(self) -> Any:
        return self.trial

    def set_user_attr(self, key: str, value: Any) -> None:
        if key in self.RESERVED_KEYS:
            raise ValueError(f"Cannot set user_attr {key!r}: this key is reserved by the "
                             f"system. Reserved keys: {', '.join(sorted(self.RESERVED_KEYS))}")
        self.trial.set_user_attr(key, value)

    def log(self, value: Any) -> None:
        """Add a line to the trial's note (saved every SAVE_EVERY lines) and log it."""
        self.logs.append(str(value))
        self.log_count += 1
        if (self.log_count - self.saved_count >= SAVE_EVERY
                and time.monotonic() - self.saved_at >= SAVE_SECONDS):
            self._save_note()
        log.info("trial_number: %s, %s", self.trial.number, value)

    def flush(self) -> None:
        """Save what is not saved yet (the worker does it when the trial ends)."""
        if self.log_count != self.saved_count:
            self._save_note()

    @classmethod
    def finish(cls, trial: Any) -> None:
        """The trial ended: save its note and forget its controller."""
        with cls._lock:
            controller = cls._instances.pop(getattr(trial, "_trial_id", id(trial)), None)
        if controller is not None:
            controller.flush()

    def note(self) -> str:
        """The note's text: the numbered lines, the newest NOTE_MAX_CHARS of them."""
        lines, size, first = [], 0, len(self.logs)
        for i in range(len(self.logs) - 1, -1, -1):
            line = f"[{i + 1:05d}] {self.logs[i]}"
            if size + len(line) + len(SEPARATOR) > NOTE_MAX_CHARS and lines:
                break
            lines.append(line[:NOTE_MAX_CHARS])
            size, first = size + len(line) + len(SEPARATOR), i
        lines.reverse()
        if first:
            lines.insert(0, f"[... {first} earlier lines: optuna-grpc-storage logs]")
        return SEPARATOR.join(lines)

    def _save_note(self) -> None:
        storage = getattr(self.trial, "storage", None)
        study = getattr(self.trial, "study", None)
        self.saved_count, self.saved_at = self.log_count, time.monotonic()
        if storage is None or study is None:  # a FrozenTrial: only logged
            if not self.warned:
                log.warning("trial %s: a FrozenTrial has no storage, its lines are only "
                            "logged, not saved as its note", self.trial.number)
                self.warned = True
            return
        try:
            self.pieces = save_note(storage, study._study_id, self.trial._trial_id,
                                    self.note(), self.pieces)
        except Exception as e:  # as AIAuto: the trial goes on without its note
            log.warning("trial %s: the note could not be saved: %s", self.trial.number, e)


def save_note(storage: Any, study_id: int, trial_id: int, body: str, previous: int) -> int:
    """Write `body` as the trial's optuna-dashboard note (a new version); the number of
    pieces it took. Pieces of a longer earlier note beyond those are emptied."""
    prefix = f"dashboard:{trial_id}:note_str:"
    version_key = f"dashboard:{trial_id}:note_ver"
    attrs = storage.get_study_system_attrs(study_id)
    older = max(previous, sum(1 for k in attrs if k.startswith(prefix)))
    storage.set_study_system_attr(study_id, version_key, int(attrs.get(version_key, 0)) + 1)
    pieces = [body[i : i + NOTE_PIECE] for i in range(0, len(body), NOTE_PIECE)] or [""]
    for i, piece in enumerate(pieces):
        storage.set_study_system_attr(study_id, f"{prefix}{i}", piece)
    for i in range(len(pieces), older):
        storage.set_study_system_attr(study_id, f"{prefix}{i}", "")
    return len(pieces)
