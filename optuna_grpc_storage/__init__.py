"""Optuna storage on the optuna-grpc-storage proxy: many workers, one study, per-user tokens."""

__version__ = "0.1.0"

from optuna_grpc_storage.backend import GrpcJournalBackend
from optuna_grpc_storage.batch import RUNTIME_IMAGES
from optuna_grpc_storage.controller import Controller, StudyWrapper
from optuna_grpc_storage.errors import (
    AuthenticationError,
    GrpcStorageError,
    ProxyUnavailableError,
    RequestRejectedError,
)
from optuna_grpc_storage.launchers import KubernetesLauncher, LocalLauncher
from optuna_grpc_storage.storage import GrpcJournalStorage

__all__ = [
    "RUNTIME_IMAGES",
    "AuthenticationError",
    "Controller",
    "GrpcJournalBackend",
    "GrpcJournalStorage",
    "GrpcStorageError",
    "KubernetesLauncher",
    "LocalLauncher",
    "ProxyUnavailableError",
    "RequestRejectedError",
    "StudyWrapper",
]
