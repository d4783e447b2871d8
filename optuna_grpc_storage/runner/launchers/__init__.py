"""Launchers start the workers of a batch: here (LocalLauncher) or on Kubernetes."""

from optuna_grpc_storage.runner.launchers.base import Launch, Launcher
from optuna_grpc_storage.runner.launchers.kubernetes import KubernetesLauncher
from optuna_grpc_storage.runner.launchers.local import LocalLauncher

__all__ = ["KubernetesLauncher", "Launch", "Launcher", "LocalLauncher"]
