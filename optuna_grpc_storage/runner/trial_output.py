"""A trial's own output, kept with the trial so that it outlives the Pod: what the worker's
stdout and stderr receive while the trial runs (file descriptors 1 and 2, so C extensions
and child processes are caught too), the last MAX_LOG_BYTES of it.

The worker's descriptors 1 and 2 go through pipes; a thread copies everything on to where
they went before (the Pod's log, `kubectl logs`, stays as it was) and keeps the running
trial's tail. Every UPLOAD_SECONDS while the trial runs, and once when it ends, the tail is
uploaded as an artifact of the trial with an id derived from the journal and the trial id
(`log_artifact_id`), so `optuna-grpc-storage logs` finds it, the dashboard lists it, and a
retried upload replaces it.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import select
import sys
import termios
import threading
import time
import uuid
from typing import Any

import optuna

from optuna_grpc_storage.storage.artifacts import GrpcArtifactStore
from optuna_grpc_storage.storage.errors import RequestRejectedError

MAX_LOG_BYTES = 4 << 20
UPLOAD_SECONDS = 5.0
UPLOAD_SECONDS_ENV = "OPTUNA_GRPC_STORAGE_LOG_UPLOAD_SECONDS"  # the workers' environment
_LOGS = uuid.UUID("5d1b7a34-41a3-4b0e-9a51-6f0c1c2e7a10")  # fixed: ids are reproducible


def log_artifact_id(journal: str, trial_id: int) -> str:
    """The id of a trial's output artifact (a UUID, as the dashboard's routes want)."""
    return str(uuid.uuid5(_LOGS, f"{journal}/{trial_id}"))


class Tee:
    """Descriptors 1 and 2 through pipes: copied on, and recorded while `recording`."""

    def __init__(self, max_bytes: int = MAX_LOG_BYTES) -> None:
        self.max_bytes = max_bytes
        self.lock = threading.Lock()
        self.buffer = bytearray()
        self.total = 0  # bytes recorded since begin()
        self.recording = False
        self.busy = False
        self.saved: dict[int, int] = {}  # read end of each pipe -> the original descriptor
        self.thread: threading.Thread | None = None

    def install(self) -> None:
        _flush()
        for fd in (1, 2):
            read, write = os.pipe()
            self.saved[read] = os.dup(fd)
            os.dup2(write, fd)
            os.close(write)
        self.thread = threading.Thread(target=self._pump, name="ogs-output", daemon=True)
        self.thread.start()

    def uninstall(self) -> None:
        """Put 1 and 2 back once everything written so far has been copied on."""
        if self.thread is None:
            return
        self.sync()
        originals = list(self.saved.values())
        for fd, original in zip((1, 2), originals, strict=True):
            os.dup2(original, fd)  # the pipes' write ends close: the thread sees the end
        self.thread.join(5)
        for original in originals:
            os.close(original)
        self.thread = None

    def _pump(self) -> None:
        poller = select.poll()
        for read in self.saved:
            poller.register(read, select.POLLIN)
        open_ends = set(self.saved)
        while open_ends:
            for read, _ in poller.poll():
                self.busy = True
                data = os.read(read, 65536)
                if not data:
                    poller.unregister(read)
                    open_ends.discard(read)
                    os.close(read)
                else:
                    _write_all(self.saved[read], data)
                    self._record(data)
                self.busy = False

    def _record(self, data: bytes) -> None:
        with self.lock:
            if self.recording:
                self.buffer += data
                self.total += len(data)
                if len(self.buffer) > 2 * self.max_bytes:
                    del self.buffer[: len(self.buffer) - self.max_bytes]

    def sync(self, timeout: float = 2.0) -> None:
        """Return once what was written before the call has been recorded."""
        _flush()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.busy and all(_pending(read) == 0 for read in self.saved):
                return
            time.sleep(0.001)

    def begin(self) -> None:
        self.sync()
        with self.lock:
            self.buffer.clear()
            self.total, self.recording = 0, True

    def tail(self) -> tuple[int, bytes]:
        """(bytes recorded since begin, the last max_bytes of them)."""
        self.sync()
        with self.lock:
            kept = bytes(self.buffer[-self.max_bytes:])
            total = self.total
        if total > len(kept):
            kept = f"[... {total - len(kept)} earlier bytes dropped ...]\n".encode() + kept
        return total, kept

    def end(self) -> tuple[int, bytes]:
        out = self.tail()
        with self.lock:
            self.recording = False
            self.buffer.clear()
        return out


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _pending(fd: int) -> int:
    try:
        return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), sys.byteorder)
    except OSError:
        return 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    with contextlib.suppress(OSError):  # nobody reads the original any more: keep recording
        while view:
            view = view[os.write(fd, view):]


class TrialOutput:
    """The worker's side: begin(trial) ... end(trial), uploading the trial's output."""

    def __init__(self, store: GrpcArtifactStore, journal: str, tee: Tee | None = None,
                 interval: float | None = None) -> None:
        self.store, self.journal = store, journal
        self.interval = interval or float(os.environ.get(UPLOAD_SECONDS_ENV, UPLOAD_SECONDS))
        self.tee = tee or Tee()
        self.trial: optuna.Trial | None = None
        self.uploaded = 0  # bytes recorded at the last upload
        self.registered = False
        self.disabled = False  # the proxy keeps no artifacts: do not ask again each trial
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> TrialOutput:
        self.tee.install()
        self.thread = threading.Thread(target=self._every, name="ogs-output-upload", daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(30)
        self.tee.uninstall()

    def begin(self, trial: optuna.Trial) -> None:
        self.tee.begin()
        with self.lock:
            self.trial, self.uploaded, self.registered = trial, 0, False

    def end(self) -> None:
        """Upload what the trial printed (nothing if it printed nothing)."""
        total, data = self.tee.end()
        with self.lock:
            trial, self.trial = self.trial, None
            if trial is not None and total:
                self._upload(trial, total, data)

    def _every(self) -> None:
        while not self.stop.wait(self.interval):
            with self.lock:
                if self.trial is None:
                    continue
                total, data = self.tee.tail()
                if total != self.uploaded:
                    self._upload(self.trial, total, data)

    def _upload(self, trial: optuna.Trial, total: int, data: bytes) -> None:
        """Replace the trial's output artifact; the first time, record it on the trial as
        optuna.artifacts.upload_artifact would (so the dashboard lists it). Never raises: the
        trial must not fail because its log could not be kept."""
        log_id = log_artifact_id(self.journal, trial._trial_id)
        if self.disabled:
            return
        try:
            if not self.registered:
                meta = {"artifact_id": log_id, "filename": f"trial-{trial.number}-output.log",
                        "mimetype": "text/plain", "encoding": None}
                trial.storage.set_trial_system_attr(trial._trial_id, "artifacts:" + log_id,
                                                    json.dumps(meta))
                self.registered = True
            self.store.labelled(study=trial.study.study_name, trial_number=trial.number,
                                journal=self.journal).write(log_id, io.BytesIO(data))
            self.uploaded = total
        except RequestRejectedError as e:  # refused for good (no artifact store, quota)
            self.disabled = True
            _log_failure(f"trial outputs are not kept: {e}")
        except Exception as e:
            _log_failure(f"the output of trial {trial.number} could not be kept: "
                         f"{type(e).__name__}: {e}")


def _log_failure(text: str) -> None:
    with contextlib.suppress(Exception):
        sys.stderr.write(f"optuna-grpc-storage: {text}\n")


def capture_supported() -> bool:
    return hasattr(select, "poll") and hasattr(os, "dup2")


def log_of(store: GrpcArtifactStore, journal: str, trial: Any) -> bytes | None:
    """A trial's recorded output, or None when it has none (yet)."""
    from optuna.artifacts.exceptions import ArtifactNotFound

    try:
        with store.open_reader(log_artifact_id(journal, trial._trial_id)) as reader:
            return reader.read()
    except ArtifactNotFound:
        return None
