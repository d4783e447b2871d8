"""Optuna storage on the optuna-grpc-storage proxy: many workers, one study, per-user tokens.

The public names are imported on first use, so `import optuna_grpc_storage.<part>` loads only
that part: a trial worker does not load the user's tools, the proxy loads only `protocol`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from optuna_grpc_storage.lazy import lazy_attributes
from optuna_grpc_storage.protocol.version import __version__

_WHERE = {
    "GrpcJournalBackend": "optuna_grpc_storage.storage",
    "GrpcJournalStorage": "optuna_grpc_storage.storage",
    "GrpcArtifactStore": "optuna_grpc_storage.storage",
    "AuthenticationError": "optuna_grpc_storage.storage",
    "GrpcStorageError": "optuna_grpc_storage.storage",
    "ProxyUnavailableError": "optuna_grpc_storage.storage",
    "RequestRejectedError": "optuna_grpc_storage.storage",
    "Controller": "optuna_grpc_storage.runner",
    "TrialController": "optuna_grpc_storage.runner",
    "AIAutoController": "optuna_grpc_storage.runner",
    "StudyWrapper": "optuna_grpc_storage.runner",
    "WaitOption": "optuna_grpc_storage.runner",
    "BatchFailedError": "optuna_grpc_storage.runner",
    "WaitTimeoutError": "optuna_grpc_storage.runner",
    "RUNTIME_IMAGES": "optuna_grpc_storage.runner",
    "KubernetesLauncher": "optuna_grpc_storage.runner",
    "LocalLauncher": "optuna_grpc_storage.runner",
}

__all__ = [  # noqa: RUF022  (the order of _WHERE)
    "__version__",
    "GrpcJournalBackend", "GrpcJournalStorage", "GrpcArtifactStore", "AuthenticationError",
    "GrpcStorageError", "ProxyUnavailableError", "RequestRejectedError",
    "Controller", "TrialController", "AIAutoController", "StudyWrapper", "WaitOption",
    "BatchFailedError", "WaitTimeoutError", "RUNTIME_IMAGES", "KubernetesLauncher", "LocalLauncher",
]


__getattr__, __dir__ = lazy_attributes(__name__, _WHERE)

if TYPE_CHECKING:
    from optuna_grpc_storage.runner import (
        RUNTIME_IMAGES,
        AIAutoController,
        BatchFailedError,
        Controller,
        KubernetesLauncher,
        LocalLauncher,
        StudyWrapper,
        TrialController,
        WaitOption,
        WaitTimeoutError,
    )
    from optuna_grpc_storage.storage import (
        AuthenticationError,
        GrpcArtifactStore,
        GrpcJournalBackend,
        GrpcJournalStorage,
        GrpcStorageError,
        ProxyUnavailableError,
        RequestRejectedError,
    )
