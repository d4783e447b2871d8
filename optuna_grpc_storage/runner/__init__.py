"""What runs trials: the controller a notebook drives, the batches it launches, the workers.

    controller.py  Controller and StudyWrapper (create_study, optimize, get_status, wait)
    batch.py       one optimize call, as launchers and workers see it
    worker.py      `python -m optuna_grpc_storage.runner.worker`, what every launcher runs
    launchers/     where the workers run: local processes, a Kubernetes Job
    objective.py   the objective, pickled by value
    specs.py       samplers and pruners recorded as JSON
    counting.py    the trial-count rules of get_status()
    trials.py      operations on a batch's trials
    options.py     resources and requirements, checked
    images.py      the runtime images
    attrs.py       the system attribute names everything shares
"""

from optuna_grpc_storage.runner.controller import Controller, StudyWrapper
from optuna_grpc_storage.runner.images import runtime_images
from optuna_grpc_storage.runner.launchers import KubernetesLauncher, LocalLauncher

__all__ = ["RUNTIME_IMAGES", "Controller", "KubernetesLauncher", "LocalLauncher",
           "StudyWrapper"]


def __getattr__(name: str) -> object:
    if name == "RUNTIME_IMAGES":  # read from the environment when asked
        return runtime_images()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
