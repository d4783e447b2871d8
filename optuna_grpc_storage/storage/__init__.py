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

from optuna_grpc_storage.storage.artifacts import GrpcArtifactStore
from optuna_grpc_storage.storage.backend import GrpcJournalBackend
from optuna_grpc_storage.storage.errors import (
    AuthenticationError,
    GrpcStorageError,
    ProxyUnavailableError,
    RequestRejectedError,
)
from optuna_grpc_storage.storage.journal_storage import GrpcJournalStorage

__all__ = [
    "AuthenticationError",
    "GrpcArtifactStore",
    "GrpcJournalBackend",
    "GrpcJournalStorage",
    "GrpcStorageError",
    "ProxyUnavailableError",
    "RequestRejectedError",
]
