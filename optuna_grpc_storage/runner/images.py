"""The container images the workers run in.

cloudpickle sends the objective's code by value, which needs the same Python minor version on
both sides, hence one image per Python version. They hold Python, optuna and
optuna-grpc-storage; `requirements_*` adds the rest at container start. Operators who build
their own set OPTUNA_GRPC_STORAGE_CPU_IMAGE / ..._GPU_IMAGE (read when asked, not at import).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from optuna_grpc_storage.protocol.version import __version__

CPU_IMAGE_ENV = "OPTUNA_GRPC_STORAGE_CPU_IMAGE"
GPU_IMAGE_ENV = "OPTUNA_GRPC_STORAGE_GPU_IMAGE"
_PY = f"{sys.version_info.major}.{sys.version_info.minor}"


def runtime_images() -> dict[str, str]:
    """{"cpu": image, "gpu": image} for this Python."""
    return {
        "cpu": os.environ.get(CPU_IMAGE_ENV,
                              f"optuna-grpc-storage/runtime:{__version__}-py{_PY}-cpu"),
        "gpu": os.environ.get(GPU_IMAGE_ENV,
                              f"optuna-grpc-storage/runtime:{__version__}-py{_PY}-cuda12"),
    }


def default_image(use_gpu: bool) -> str:
    return runtime_images()["gpu" if use_gpu else "cpu"]


def __getattr__(name: str) -> Any:
    if name == "RUNTIME_IMAGES":
        return runtime_images()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
