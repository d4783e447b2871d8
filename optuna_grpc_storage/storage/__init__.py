"""The Optuna plugin: a JournalStorage (and its bare backend) on the storage proxy.

    connection.py       channel, retries, errors a person can act on
    stream.py           the process's Session stream
    client.py           every RPC once
    backend.py          Optuna's BaseJournalBackend + BaseJournalSnapshot on the client
    journal_storage.py  GrpcJournalStorage: JournalStorage + heartbeats
    snapshots.py        when a snapshot is due, and reading one back safely
    waiting.py          the WAITING-trial index
    artifacts.py        GrpcArtifactStore: Optuna's ArtifactStore on the same proxy and token
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from optuna_grpc_storage.lazy import lazy_attributes

# Imported on first use: a trial worker that never touches artifacts does not pay for
# optuna.artifacts (which imports boto3 when it is installed: a quarter of a second of CPU
# per process start).
_WHERE = {
    "GrpcArtifactStore": ".artifacts",
    "GrpcJournalBackend": ".backend",
    "GrpcJournalStorage": ".journal_storage",
    "AuthenticationError": ".errors",
    "GrpcStorageError": ".errors",
    "ProxyUnavailableError": ".errors",
    "RequestRejectedError": ".errors",
}

__all__ = [
    "AuthenticationError",
    "GrpcArtifactStore",
    "GrpcJournalBackend",
    "GrpcJournalStorage",
    "GrpcStorageError",
    "ProxyUnavailableError",
    "RequestRejectedError",
]

__getattr__, __dir__ = lazy_attributes(__name__, _WHERE)

if TYPE_CHECKING:
    from optuna_grpc_storage.storage.artifacts import GrpcArtifactStore
    from optuna_grpc_storage.storage.backend import GrpcJournalBackend
    from optuna_grpc_storage.storage.errors import (
        AuthenticationError,
        GrpcStorageError,
        ProxyUnavailableError,
        RequestRejectedError,
    )
    from optuna_grpc_storage.storage.journal_storage import GrpcJournalStorage
