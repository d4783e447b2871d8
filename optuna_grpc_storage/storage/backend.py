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
from typing import Any

from optuna.storages.journal._base import BaseJournalBackend, BaseJournalSnapshot

from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from optuna_grpc_storage.storage import fork
from optuna_grpc_storage.storage.client import JournalClient
from optuna_grpc_storage.storage.connection import Connection
from optuna_grpc_storage.storage.tls import PEM


def parse_entries(raw: list[bytes]) -> list[dict[str, Any]]:
    """Decode many JSON entries in one C-level call."""
    if not raw:
        return []
    return json.loads(b"[" + b",".join(raw) + b"]")


class GrpcJournalBackend(BaseJournalBackend, BaseJournalSnapshot):
    """A journal on the storage proxy. Endpoint and token default to the environment
    (OPTUNA_GRPC_STORAGE_ENDPOINT, OPTUNA_GRPC_STORAGE_TOKEN); 'grpcs://' or 'https://'
    means TLS, with `tls_ca` (CA bundle) and `tls_cert`/`tls_key` (client certificate, mTLS),
    each a path or PEM bytes, default $OPTUNA_GRPC_STORAGE_TLS_CA/_TLS_CERT/_TLS_KEY.

    One backend serves one JournalStorage (it remembers how far its reader has got).
    `client` is the JournalClient it calls, for the rest of the service.
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
        tls_ca: PEM | None = None,
        tls_cert: PEM | None = None,
        tls_key: PEM | None = None,
    ) -> None:
        if read_staleness < 0:
            raise ValueError("read_staleness must be >= 0")
        self.journal = journal
        self.read_staleness = read_staleness
        connection = Connection(endpoint, token, timeout=timeout, retry_deadline=retry_deadline,
                                root_certificates=root_certificates, tls_ca=tls_ca,
                                tls_cert=tls_cert, tls_key=tls_key)
        # Appends and reads travel on one stream per process, unless the proxy lacks it.
        self.client = JournalClient(connection, use_stream=use_session)
        self._init_local_state()
        fork.track(self)

    def _init_local_state(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self._client_id = uuid.uuid4().hex  # with _sequence: the idempotency key of appends
        self._sequence = 0
        self._next = 0  # position the reader asks for next
        self._pending: list[dict[str, Any]] = []  # entries [_next, _next + len) already fetched
        self._synced_at = float("-inf")  # when this client last saw the end of the journal
        self._snapshot_position = -1  # newest snapshot position known to this client
        self._last_append: tuple[int, int] | None = None  # (first position, count)
        self.calls = {"append": 0, "read": 0}

    def __getstate__(self) -> dict[str, Any]:
        return {"journal": self.journal, "read_staleness": self.read_staleness,
                "client": self.client}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_local_state()
        fork.track(self)

    def _fork_child(self) -> None:
        self._renew_identity_after_fork()

    def restart_reading(self) -> None:
        """Read the journal from the start again (a child forked mid-operation starts over:
        its copy of the replay state may be half-applied)."""
        with self._lock:
            self._next, self._pending, self._synced_at = 0, [], float("-inf")
            self._snapshot_position = -1

    @property
    def connection(self) -> Connection:
        return self.client.connection

    @property
    def snapshot_position(self) -> int:
        """The newest snapshot position this client knows of (-1: none)."""
        return self._snapshot_position

    def forget_snapshot(self) -> None:
        """The snapshot loaded was unusable: the next one due may be saved whatever its
        position."""
        self._snapshot_position = -1

    def take_last_append(self) -> tuple[int, int] | None:
        """(first position, count) of this client's last append, once: the storage asks after
        each sync whether that append crossed a snapshot threshold."""
        appended, self._last_append = self._last_append, None
        return appended

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
                raw: list[bytes] = []
                self.calls["read"] += 1
                self.client.read(self.journal, self._next + len(self._pending),
                                 lambda chunk: raw.extend(chunk.entries))
                self._pending.extend(parse_entries(raw))
                self._synced_at = started
            out, self._pending = self._pending, []
            self._next += len(out)
            return out

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
            response = self.client.append(request)
            landed = response.first_position >= 0  # a duplicate may not know where
            self._last_append = (response.first_position, len(payload)) if landed else None
            if response.unseen_complete and landed:
                self._pending.extend(parse_entries([*response.unseen, *payload]))
                self._synced_at = started
            else:  # too far behind for an inline answer, or a retry whose first landing is
                self._synced_at = float("-inf")  # no longer recorded: read from `known`
            return int(response.first_position)

    # -- snapshots -------------------------------------------------------------------------

    def load_snapshot(self) -> bytes | None:
        found = self.client.load_snapshot(self.journal)
        if found is None:
            return None
        position, data = found
        self._snapshot_position = max(self._snapshot_position, position)
        return data

    def save_snapshot(self, snapshot: bytes) -> None:
        """Store a snapshot of the state after the entries read so far."""
        self.save_snapshot_at(snapshot, self._next)

    def save_snapshot_at(self, snapshot: bytes, position: int) -> bool:
        """Store a snapshot covering entries [0, position); False if the server has a newer."""
        response = self.client.save_snapshot(self.journal, position, snapshot)
        self._snapshot_position = max(self._snapshot_position, response.position)
        return bool(response.stored)

    def delete_journal(self) -> bool:
        """Delete this journal: its entries, snapshot and heartbeats. False if it was empty."""
        deleted = self.client.delete_journal(self.journal)
        self.restart_reading()  # whatever this client had read is gone
        return deleted
