"""Every RPC of the journal service, once: what the backend, the storage's heartbeats and the
user's tools call. Each method is one logical call with the connection's deadline and retries;
appends and reads travel on the process's Session stream when the proxy has it, as separate
calls otherwise."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc

from optuna_grpc_storage.protocol.limits import Limits
from optuna_grpc_storage.protocol.requests import MAX_TRIAL_IDS
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from optuna_grpc_storage.storage.connection import Connection
from optuna_grpc_storage.storage.stream import SessionStream

SNAPSHOT_CHUNK_BYTES = 1 << 20


class JournalClient:
    """The RPCs of one token's namespace, over one Connection."""

    def __init__(self, connection: Connection, *, use_stream: bool = True) -> None:
        self.connection = connection
        self.stream = SessionStream(connection) if use_stream else None

    def __getstate__(self) -> dict[str, Any]:
        return {"connection": self.connection, "use_stream": self.stream is not None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["connection"], use_stream=state["use_stream"])  # type: ignore[misc]

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
        self.connection.close()

    def _unary(self, what: str, method: str, request: Any) -> Any:
        c = self.connection
        return c.call(what, lambda stub: getattr(stub, method)(
            request, timeout=c.timeout, metadata=c.metadata))

    def _on_stream(self, request: pb.SessionRequest,
                   on_message: Callable[[pb.SessionResponse], None] | None = None,
                   ) -> list[pb.SessionResponse] | None:
        """The answer over the Session stream, or None when unary calls must be used."""
        if self.stream is None or self.stream.unsupported or self.stream.resting:
            return None
        try:
            return self.stream.request(request, self.connection.timeout, on_message)
        except grpc.RpcError:
            if self.stream.unsupported or self.stream.resting:
                return None
            raise

    # -- the journal ---------------------------------------------------------------------

    def append(self, request: pb.AppendLogsRequest) -> pb.AppendLogsResponse:
        """One append, retried under its idempotency key until it is answered."""
        c = self.connection

        def attempt(stub: Any) -> pb.AppendLogsResponse:
            answer = self._on_stream(pb.SessionRequest(append=request))
            if answer:
                return answer[0].append
            return stub.AppendLogs(request, timeout=c.timeout, metadata=c.metadata)

        return c.call(f"appending to journal {request.journal!r}", attempt)

    def read(self, journal: str, position: int, on_chunk: Callable[[pb.LogChunk], None],
             max_entries: int = 0) -> None:
        """Chunks of entries from `position` (to the end, or `max_entries` of them); a stream
        that breaks resumes where it stopped, so on_chunk sees each entry once."""
        c = self.connection
        stop = position + max_entries if max_entries else None
        progress = [position]

        def take(chunk: pb.LogChunk) -> None:
            on_chunk(chunk)
            progress[0] = chunk.start + len(chunk.entries)

        def attempt(stub: Any) -> None:
            left = 0 if stop is None else stop - progress[0]
            if stop is not None and left <= 0:
                return
            request = pb.ReadLogsRequest(journal=journal, position=progress[0],
                                         max_entries=left)
            if self._on_stream(pb.SessionRequest(read=request), lambda m: take(m.chunk)):
                return
            for chunk in stub.ReadLogs(request, timeout=c.timeout, metadata=c.metadata):
                take(chunk)

        c.call(f"reading journal {journal!r}", attempt)

    def load_snapshot(self, journal: str) -> tuple[int, bytes] | None:
        """(position, data) of the journal's newest snapshot, or None."""
        c = self.connection
        parts: list[bytes] = []
        position = [-1]

        def attempt(stub: Any) -> None:
            parts.clear()
            request = pb.LoadSnapshotRequest(journal=journal)
            for chunk in stub.LoadSnapshot(request, timeout=c.timeout, metadata=c.metadata):
                if chunk.journal:
                    position[0] = chunk.position
                parts.append(chunk.data)

        c.call(f"loading the snapshot of {journal!r}", attempt)
        return None if position[0] < 0 else (position[0], b"".join(parts))

    def save_snapshot(self, journal: str, position: int,
                      data: bytes) -> pb.SaveSnapshotResponse:
        """Store a snapshot covering entries [0, position), uploaded in chunks."""
        c = self.connection

        def chunks() -> Iterator[pb.SnapshotChunk]:
            yield pb.SnapshotChunk(journal=journal, position=position,
                                   data=data[:SNAPSHOT_CHUNK_BYTES])
            for offset in range(SNAPSHOT_CHUNK_BYTES, len(data), SNAPSHOT_CHUNK_BYTES):
                yield pb.SnapshotChunk(data=data[offset : offset + SNAPSHOT_CHUNK_BYTES])

        return c.call(f"saving a snapshot of {journal!r}", lambda stub: stub.SaveSnapshot(
            chunks(), timeout=c.timeout, metadata=c.metadata))

    def delete_journal(self, journal: str) -> bool:
        """Delete the journal: its entries, snapshot and heartbeats. False if it was empty."""
        response = self._unary(f"deleting journal {journal!r}", "DeleteJournal",
                               pb.DeleteJournalRequest(journal=journal))
        return bool(response.deleted)

    # -- the namespace -------------------------------------------------------------------

    def who_am_i(self) -> pb.WhoAmIResponse:
        return self._unary("checking the token", "WhoAmI", pb.WhoAmIRequest())

    def limits(self) -> Limits:
        """What the proxy accepts (its flags, as WhoAmI announces them)."""
        return Limits.from_proto(self.who_am_i().limits)

    def share_token(self, expires_seconds: float, journal: str | None = None,
                    read_only: bool = False, note: str = "") -> pb.ShareTokenResponse:
        """A new token of this namespace that grants no more than this one (ShareToken)."""
        request = pb.ShareTokenRequest(journal_pattern=journal or "", read_only=read_only,
                                       expires_seconds=max(1, round(expires_seconds)),
                                       note=note)
        return self._unary("sharing a token", "ShareToken", request)

    def list_journals(self) -> list[pb.JournalInfo]:
        """Every journal of this token's namespace: name, length, snapshot position/bytes."""
        response = self._unary("listing journals", "ListJournals", pb.ListJournalsRequest())
        return sorted(response.journals, key=lambda j: j.name)

    # -- heartbeats (kept beside the journal, stamped with the server's clock) ---------------

    def record_heartbeats(self, journal: str, trial_ids: Sequence[int]) -> None:
        """Stamp trials as alive now, by the Redis clock that every proxy replica shares."""
        for chunk in _chunks(trial_ids):
            self._unary(f"recording a heartbeat in journal {journal!r}", "RecordHeartbeat",
                        pb.RecordHeartbeatRequest(journal=journal, trial_ids=chunk))

    def heartbeat_ages(self, journal: str, trial_ids: Sequence[int]) -> dict[int, float]:
        """Seconds since each trial's last heartbeat, by the server's clock (so the clocks of
        the machines involved never matter). Trials that never had one are left out."""
        ages: dict[int, float] = {}
        for chunk in _chunks(trial_ids):
            response = self._unary(f"reading heartbeats in journal {journal!r}",
                                   "GetHeartbeats",
                                   pb.GetHeartbeatsRequest(journal=journal, trial_ids=chunk))
            ages.update({h.trial_id: h.age_ms / 1000 for h in response.heartbeats})
        return ages


def _chunks(ids: Sequence[int], size: int = MAX_TRIAL_IDS) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])
