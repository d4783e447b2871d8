"""`optuna-grpc-storage logs STUDY [TRIAL_NUMBER] [--follow]`: what trials printed.

Each trial's stdout and stderr (its prints, its traceback, its TrialController lines) are kept
with the trial by the worker that ran it (runner/trial_output.py): uploaded every few seconds
while it runs and once when it ends, so they outlive the Pod. One trial's, or every trial's in
number order under a header; --follow keeps printing as they arrive: one trial's output until
it ends, or each trial's when it ends, until every trial of the study has ended. A trial run
without a worker (ask/tell in a notebook) shows its TrialController note instead.
"""

from __future__ import annotations

import sys
import time
from typing import IO

import optuna
from optuna.trial import FrozenTrial

from optuna_grpc_storage.runner.trial_output import log_of
from optuna_grpc_storage.storage import GrpcArtifactStore, GrpcJournalStorage

OVERLAP = 4096  # bytes of what was shown that locate it again in a log whose head was trimmed


class Logs:
    """One study's trials and their logs, for one token."""

    def __init__(self, endpoint: str | None, token: str | None, journal: str,
                 study_name: str) -> None:
        self.storage = GrpcJournalStorage(endpoint, token, journal, read_staleness=0.0)
        self.store = GrpcArtifactStore(endpoint, token)
        self.journal = journal
        try:
            self.study_id = self.storage.get_study_id_from_name(study_name)
        except KeyError:
            names = ", ".join(s.study_name for s in self.storage.get_all_studies()) or "none"
            raise ValueError(f"there is no study {study_name!r} in journal {journal!r} "
                             f"(studies: {names})") from None

    def trials(self) -> list[FrozenTrial]:
        return self.storage.get_all_trials(self.study_id, deepcopy=False)

    def trial(self, number: int) -> FrozenTrial:
        for t in self.trials():
            if t.number == number:
                return t
        raise ValueError(f"the study has no trial {number} (it has {len(self.trials())})")

    def text(self, trial: FrozenTrial) -> bytes | None:
        """The trial's recorded output, else its TrialController note, else None."""
        data = log_of(self.store, self.journal, trial)
        if data is not None:
            return data
        attrs = self.storage.get_study_system_attrs(self.study_id)
        prefix = f"dashboard:{trial._trial_id}:note_str:"
        pieces = sorted((int(k[len(prefix):]), v) for k, v in attrs.items()
                        if k.startswith(prefix))
        note = "".join(v for _, v in pieces)
        return (note + "\n").encode() if note else None


def show(logs: Logs, number: int | None, follow: bool, out: IO[bytes] = sys.stdout.buffer,
         interval: float = 1.0) -> int:
    if number is not None:
        trial = logs.trial(number)
        if follow:
            _follow_one(logs, trial, out, interval)
        else:
            _print(out, logs.text(trial) or _nothing(trial))
        return 0
    shown: set[int] = set()
    while True:
        trials = sorted(logs.trials(), key=lambda t: t.number)
        for trial in trials:
            if trial.number in shown or (follow and not trial.state.is_finished()):
                continue
            _print(out, f"==> trial {trial.number} ({trial.state.name}) <==\n".encode())
            _print(out, logs.text(trial) or _nothing(trial))
            shown.add(trial.number)
        if not follow or (trials and all(t.state.is_finished() for t in trials)):
            return 0
        time.sleep(interval)


def _follow_one(logs: Logs, trial: FrozenTrial, out: IO[bytes], interval: float) -> None:
    """Print the trial's output as it is uploaded, until the trial has ended."""
    shown = b""
    while True:
        finished = logs.storage.get_trial(trial._trial_id).state.is_finished()
        data = logs.text(trial)
        if data is not None:
            _print(out, new_part(shown, data))
            shown = data
        if finished:
            if data is None:
                _print(out, _nothing(trial))
            return
        time.sleep(interval)


def new_part(shown: bytes, data: bytes) -> bytes:
    """What `data` (the latest upload of a log) adds to `shown` (the previous one). The log
    keeps its last few MiB, so its head may have been trimmed: then what was shown is found
    again by its last bytes."""
    if data.startswith(shown):
        return data[len(shown):]
    tail = shown[-OVERLAP:]
    at = data.rfind(tail) if tail else -1
    if at >= 0:
        return data[at + len(tail):]
    return b"\n[... output skipped ...]\n" + data


def _nothing(trial: FrozenTrial) -> bytes:
    return f"(trial {trial.number} recorded no output)\n".encode()


def _print(out: IO[bytes], data: bytes) -> None:
    if data:
        out.write(data)
        out.flush()


def main_logs(endpoint: str | None, token: str | None, journal: str, study: str,
              number: int | None, follow: bool) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return show(Logs(endpoint, token, journal, study), number, follow)
