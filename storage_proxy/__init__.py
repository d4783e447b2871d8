"""storage_proxy: a stateless gRPC server for Optuna journals, backed by Redis."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("optuna-grpc-storage")
except metadata.PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+source"
