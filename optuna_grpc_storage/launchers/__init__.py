"""Launchers start the workers of a batch: here (LocalLauncher) or on Kubernetes."""

from optuna_grpc_storage.launchers.base import Launch, Launcher
from optuna_grpc_storage.launchers.kubernetes import KubernetesLauncher
from optuna_grpc_storage.launchers.local import LocalLauncher

__all__ = ["KubernetesLauncher", "Launch", "Launcher", "LocalLauncher"]
