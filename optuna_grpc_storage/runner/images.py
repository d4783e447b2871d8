"""The container images the workers run in.

cloudpickle sends the objective's code by value, which needs the same Python minor version on
both sides, hence one image pair per Python version. They hold Python, optuna and
optuna-grpc-storage; `requirements_*` adds the rest at container start. Operators who build
their own set OPTUNA_GRPC_STORAGE_CPU_IMAGE / ..._GPU_IMAGE (read when asked, not at import).

`RUNTIME_IMAGES` is AIAuto's form: an ordered list of image names, the default CPU image first
(so `runtime_image=RUNTIME_IMAGES[0]` is the CPU default), then the GPU one. Images for other
Python versions are not listed: an objective pickled here could not be unpickled there.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from optuna_grpc_storage.protocol.version import __version__

CPU_IMAGE_ENV = "OPTUNA_GRPC_STORAGE_CPU_IMAGE"
GPU_IMAGE_ENV = "OPTUNA_GRPC_STORAGE_GPU_IMAGE"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"  # what the objective needs


def cpu_image() -> str:
    return os.environ.get(CPU_IMAGE_ENV,
                          f"optuna-grpc-storage/runtime:{__version__}-py{PYTHON}-cpu")


def gpu_image() -> str:
    return os.environ.get(GPU_IMAGE_ENV,
                          f"optuna-grpc-storage/runtime:{__version__}-py{PYTHON}-cuda12")


def runtime_images() -> list[str]:
    """[default CPU image, default GPU image] for this Python."""
    return [cpu_image(), gpu_image()]


def default_image(use_gpu: bool) -> str:
    """What `runtime_image=None` means: the GPU entry of RUNTIME_IMAGES with use_gpu, else the
    first (CPU) one."""
    return runtime_images()[1 if use_gpu else 0]


def __getattr__(name: str) -> Any:
    if name == "RUNTIME_IMAGES":
        return runtime_images()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
