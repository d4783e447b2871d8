"""The container images the workers run in.

cloudpickle sends the objective's code by value, which needs the same Python minor version on
both sides, hence one image pair per Python version. They hold Python, optuna and
optuna-grpc-storage; `requirements_*` adds the rest at container start.

The names are those deploy/ builds (deploy/docker/trial-runtime.Dockerfile, deploy/README.md
section 2): `<repository>:<version>-py<X.Y>-cpu` and `...-cuda12`, where the repository is
OPTUNA_GRPC_STORAGE_IMAGE_REPOSITORY (an operator sets it once, say
`ghcr.io/your-org/optuna-grpc-storage-runtime`, and each notebook picks the tag of its own
Python) or `optuna-grpc-storage-runtime`. OPTUNA_GRPC_STORAGE_CPU_IMAGE / ..._GPU_IMAGE name
one image outright. All are read when asked, not at import.

`RUNTIME_IMAGES` is AIAuto's form: an ordered list of image names, the default CPU image first
(so `runtime_image=RUNTIME_IMAGES[0]` is the CPU default), then the GPU one. Images for other
Python versions are not listed: an objective pickled here could not be unpickled there.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from optuna_grpc_storage.protocol.version import __version__

REPOSITORY_ENV = "OPTUNA_GRPC_STORAGE_IMAGE_REPOSITORY"
CPU_IMAGE_ENV = "OPTUNA_GRPC_STORAGE_CPU_IMAGE"
GPU_IMAGE_ENV = "OPTUNA_GRPC_STORAGE_GPU_IMAGE"
REPOSITORY = "optuna-grpc-storage-runtime"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"  # what the objective needs


def image_name(flavour: str, python: str = PYTHON) -> str:
    """The runtime image deploy/ builds for `python`: flavour "cpu" or "cuda12"."""
    repository = os.environ.get(REPOSITORY_ENV) or REPOSITORY
    return f"{repository}:{__version__}-py{python}-{flavour}"


def cpu_image() -> str:
    return os.environ.get(CPU_IMAGE_ENV) or image_name("cpu")


def gpu_image() -> str:
    return os.environ.get(GPU_IMAGE_ENV) or image_name("cuda12")


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
