"""Optuna storage on the optuna-grpc-storage proxy: many workers, one study, per-user tokens."""

from optuna_grpc_storage.backend import GrpcJournalBackend
from optuna_grpc_storage.errors import (
    AuthenticationError,
    GrpcStorageError,
    ProxyUnavailableError,
    RequestRejectedError,
)
from optuna_grpc_storage.storage import GrpcJournalStorage

__all__ = [
    "AuthenticationError",
    "GrpcJournalBackend",
    "GrpcJournalStorage",
    "GrpcStorageError",
    "ProxyUnavailableError",
    "RequestRejectedError",
]
