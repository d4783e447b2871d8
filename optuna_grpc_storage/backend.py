"""GrpcJournalBackend: Optuna's journal backend interface over the storage proxy.

Optuna's JournalStorage reads the log after every write and before every query, so reads are
the hot path. Two things keep them cheap:

* every append returns the entries the caller has not seen yet, up to its own, so the read
  Optuna makes right after a write is answered from memory, in the exact global order;
* a read within `read_staleness` seconds of the last time this client caught up with the
  journal is answered from memory too. Other workers' entries may then be up to that old;
  this client's own entries are always visible (read-your-writes), whatever the setting.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
from optuna.storages.journal._base import BaseJournalBackend, BaseJournalSnapshot

from optuna_grpc_storage.connection import Connection
from optuna_grpc_storage.session import Session
from optuna_grpc_storage.v1 import journal_pb2 as pb

SNAPSHOT_CHUNK_BYTES = 1 << 20
HEARTBEAT_IDS_PER_CALL = 10_000  # the server's limit per call


def parse_entries(raw: list[bytes]) -> list[dict[str, Any]]:
    """Decode many JSON entries in one C-level call."""
    if not raw:
        return []
    return json.loads(b"[" + b",".join(raw) + b"]")


class GrpcJournalBackend(BaseJournalBackend, BaseJournalSnapshot):
    """A journal on the storage proxy. Endpoint and token default to the environment
    (OPTUNA_GRPC_STORAGE_ENDPOINT, OPTUNA_GRPC_STORAGE_TOKEN); 'grpcs://' means TLS.

    One backend serves one JournalStorage (it remembers how far its reader has got).
    """

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        journal: str = "default",
        *,
        read_staleness: float = 0.1,
        use_session: bool = True,
        timeout: float = 30.0,
        retry_deadline: float = 60.0,
        root_certificates: bytes | None = None,
    ) -> None:
        if read_staleness < 0:
            raise ValueError("read_staleness must be >= 0")
        self.journal = journal
        self.read_staleness = read_staleness
        self.use_session = use_session
        self.timeout = timeout
        self.connection = Connection(
            endpoint, token, timeout=timeout, retry_deadline=retry_deadline,
            root_certificates=root_certificates,
        )
        self._init_local_state()

    def _init_local_state(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self._client_id = uuid.uuid4().hex  # with _sequence: the idempotency key of appends
        self._sequence = 0
        self._next = 0  # position the reader asks for next
        self._pending: list[dict[str, Any]] = []  # entries [_next, _next + len) already fetched
        self._synced_at = float("-inf")  # when this client last saw the end of the journal
        self.snapshot_position = -1  # newest snapshot position known to this client
        self.last_append: tuple[int, int] | None = None  # (first position, count) of the last
        self.calls = {"append": 0, "read": 0}
        # Appends and reads travel on one stream per process, unless the proxy lacks it.
        self.session = Session(self.connection) if self.use_session else None

    def __getstate__(self) -> dict[str, Any]:
        keep = ("journal", "read_staleness", "use_session", "timeout", "connection")
        return {k: v for k, v in self.__dict__.items() if k in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_local_state()

    def _renew_identity_after_fork(self) -> None:
        """A forked child inherits the parent's client id and sequence: it takes its own so its
        appends are never mistaken for the parent's retries. The read position stays, since
        the child's JournalStorage state was forked along with it."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._lock = threading.RLock()
            self._client_id = uuid.uuid4().hex
            self._sequence = 0

    # -- reads -----------------------------------------------------------------------------

    def read_logs(self, log_number_from: int) -> list[dict[str, Any]]:
        self._renew_identity_after_fork()
        with self._lock:
            if log_number_from != self._next:
                # The reader is somewhere else (e.g. it restored a snapshot): follow it.
                self._next, self._pending = log_number_from, []
                self._synced_at = float("-inf")
            if time.monotonic() - self._synced_at > self.read_staleness:
                started = time.monotonic()
                for chunk in self._read_from(self._next + len(self._pending)):
                    self._pending.extend(parse_entries(list(chunk.entries)))
                self._synced_at = started
            out, self._pending = self._pending, []
            self._next += len(out)
            return out

    def _read_from(self, position: int) -> Iterator[pb.LogChunk]:
        """All chunks from position to the end; a broken stream resumes where it stopped."""
        chunks: list[pb.LogChunk] = []
        progress = [position]

        def take(chunk: pb.LogChunk) -> None:
            chunks.append(chunk)
            progress[0] = chunk.start + len(chunk.entries)

        def attempt(stub: Any) -> None:
            request = pb.ReadLogsRequest(journal=self.journal, position=progress[0])
            if self._on_session(pb.SessionRequest(read=request), lambda m: take(m.chunk)):
                return
            for chunk in stub.ReadLogs(request, timeout=self.timeout,
                                       metadata=self.connection.metadata):
                take(chunk)

        self.calls["read"] += 1
        self.connection.call(f"reading journal {self.journal!r}", attempt)
        return iter(chunks)

    # -- appends ---------------------------------------------------------------------------

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self._append([json.dumps(log, separators=(",", ":")).encode() for log in logs])

    def append_json(self, entries: list[bytes]) -> int:
        """Append entries that are already JSON (e.g. lines of a journal file); returns the
        position of the first. Same guarantees as append_logs."""
        return self._append(list(entries))

    def _append(self, payload: list[bytes]) -> int:
        self._renew_identity_after_fork()
        with self._lock:
            known = self._next + len(self._pending)
            self._sequence += 1
            request = pb.AppendLogsRequest(
                journal=self.journal, entries=payload, client_id=self._client_id,
                sequence=self._sequence, known_position=known,
            )
            started = time.monotonic()
            self.calls["append"] += 1
            response = self.connection.call(f"appending to journal {self.journal!r}",
                                            lambda stub: self._append_once(stub, request))
            landed = response.first_position >= 0  # a duplicate may not know where
            self.last_append = (response.first_position, len(payload)) if landed else None
            if response.unseen_complete and landed:
                self._pending.extend(parse_entries([*response.unseen, *payload]))
                self._synced_at = started
            else:  # too far behind for an inline answer, or a retry whose first landing is
                self._synced_at = float("-inf")  # no longer recorded: read from `known`
            return int(response.first_position)

    def _append_once(self, stub: Any, request: pb.AppendLogsRequest) -> pb.AppendLogsResponse:
        answer = self._on_session(pb.SessionRequest(append=request))
        if answer:
            return answer[0].append
        return stub.AppendLogs(request, timeout=self.timeout, metadata=self.connection.metadata)

    def _on_session(self, request: pb.SessionRequest,
                    on_message: Any = None) -> list[pb.SessionResponse] | None:
        """The answer over the session stream, or None when unary calls must be used."""
        if self.session is None or self.session.unsupported:
            return None
        try:
            return self.session.request(request, self.timeout, on_message)
        except grpc.RpcError:
            if self.session.unsupported:
                return None
            raise

    # -- snapshots -------------------------------------------------------------------------

    def load_snapshot(self) -> bytes | None:
        parts: list[bytes] = []
        position = [-1]

        def attempt(stub: Any) -> None:
            parts.clear()
            request = pb.LoadSnapshotRequest(journal=self.journal)
            for chunk in stub.LoadSnapshot(request, timeout=self.timeout,
                                           metadata=self.connection.metadata):
                if chunk.journal:
                    position[0] = chunk.position
                parts.append(chunk.data)

        self.connection.call(f"loading the snapshot of {self.journal!r}", attempt)
        if position[0] < 0:
            return None
        self.snapshot_position = max(self.snapshot_position, position[0])
        return b"".join(parts)

    def save_snapshot(self, snapshot: bytes) -> None:
        """Store a snapshot of the state after the entries read so far."""
        self.save_snapshot_at(snapshot, self._next)

    def save_snapshot_at(self, snapshot: bytes, position: int) -> bool:
        """Store a snapshot covering entries [0, position); False if the server has a newer."""

        def chunks() -> Iterator[pb.SnapshotChunk]:
            yield pb.SnapshotChunk(journal=self.journal, position=position,
                                   data=snapshot[:SNAPSHOT_CHUNK_BYTES])
            for offset in range(SNAPSHOT_CHUNK_BYTES, len(snapshot), SNAPSHOT_CHUNK_BYTES):
                yield pb.SnapshotChunk(data=snapshot[offset : offset + SNAPSHOT_CHUNK_BYTES])

        response = self.connection.call(
            f"saving a snapshot of {self.journal!r}",
            lambda stub: stub.SaveSnapshot(chunks(), timeout=self.timeout,
                                           metadata=self.connection.metadata),
        )
        self.snapshot_position = max(self.snapshot_position, response.position)
        return bool(response.stored)

    # -- the rest of the service -----------------------------------------------------------

    def who_am_i(self) -> pb.WhoAmIResponse:
        return self.connection.call(
            "checking the token",
            lambda stub: stub.WhoAmI(pb.WhoAmIRequest(), timeout=self.timeout,
                                     metadata=self.connection.metadata),
        )

    def list_journals(self) -> list[pb.JournalInfo]:
        """Every journal of this token's namespace: name, length, snapshot position/bytes."""
        response = self.connection.call(
            "listing journals",
            lambda stub: stub.ListJournals(pb.ListJournalsRequest(), timeout=self.timeout,
                                           metadata=self.connection.metadata),
        )
        return sorted(response.journals, key=lambda j: j.name)

    def delete_journal(self) -> bool:
        """Delete this journal: its entries, snapshot and heartbeats. False if it was empty."""
        response = self.connection.call(
            f"deleting journal {self.journal!r}",
            lambda stub: stub.DeleteJournal(pb.DeleteJournalRequest(journal=self.journal),
                                            timeout=self.timeout,
                                            metadata=self.connection.metadata),
        )
        with self._lock:  # whatever this client had read is gone
            self._next, self._pending, self._synced_at = 0, [], float("-inf")
            self.snapshot_position = -1
        return bool(response.deleted)

    # -- heartbeats (kept beside the journal, stamped with the server's clock) ---------------

    def record_heartbeats(self, trial_ids: Sequence[int]) -> None:
        """Stamp trials as alive now, by the Redis clock that every proxy replica shares."""
        for chunk in _chunks(trial_ids):
            request = pb.RecordHeartbeatRequest(journal=self.journal, trial_ids=chunk)
            self.connection.call(
                f"recording a heartbeat in journal {self.journal!r}",
                lambda stub, r=request: stub.RecordHeartbeat(
                    r, timeout=self.timeout, metadata=self.connection.metadata),
            )

    def heartbeat_ages(self, trial_ids: Sequence[int]) -> dict[int, float]:
        """Seconds since each trial's last heartbeat, by the server's clock (so the clocks of
        the machines involved never matter). Trials that never had one are left out."""
        ages: dict[int, float] = {}
        for chunk in _chunks(trial_ids):
            request = pb.GetHeartbeatsRequest(journal=self.journal, trial_ids=chunk)
            response = self.connection.call(
                f"reading heartbeats in journal {self.journal!r}",
                lambda stub, r=request: stub.GetHeartbeats(
                    r, timeout=self.timeout, metadata=self.connection.metadata),
            )
            ages.update({h.trial_id: h.age_ms / 1000 for h in response.heartbeats})
        return ages


def _chunks(ids: Sequence[int], size: int = HEARTBEAT_IDS_PER_CALL) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])
