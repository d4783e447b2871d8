"""What runs trials: the controller a notebook drives, the batches it launches, the workers.

    controller.py  Controller (alias AIAutoController): create_study
    study.py       StudyWrapper: optimize, get_status, wait, is_trial_finished, get_study
    wait.py        WaitOption and the waits of optimize() and wait()
    errors.py      what waiting raises: BatchFailedError, WaitTimeoutError
    local_study.py the optuna.Study get_study() returns (ask never takes a batch's trial)
    batch.py       one optimize call, as launchers and workers see it
    worker.py      `python -m optuna_grpc_storage.runner.worker`, what every launcher runs
    launchers/     where the workers run: local processes, a Kubernetes Job
    objective.py   the objective, pickled by value
    specs.py       samplers and pruners recorded as JSON
    spec_forms.py  samplers and pruners as objects or AIAuto's dicts
    counting.py    the trial-count rules of get_status(), per study and per batch
    trials.py      operations on a batch's trials
    options.py     resources and requirements, checked
    pod_options.py the Kubernetes Pod options of optimize (AIAuto's names), checked
    images.py      the runtime images
    attrs.py       the system attribute names everything shares
    trial_controller.py  TrialController: AIAuto's per-trial log, as the dashboard's note
    trial_output.py      each trial's stdout/stderr, kept with the trial as an artifact
    top_n.py       optimize(top_n_artifacts=N): only the best N trials keep their artifacts
"""

from optuna_grpc_storage.runner.controller import AIAutoController, Controller
from optuna_grpc_storage.runner.errors import BatchFailedError, WaitTimeoutError
from optuna_grpc_storage.runner.images import runtime_images
from optuna_grpc_storage.runner.launchers import KubernetesLauncher, LocalLauncher
from optuna_grpc_storage.runner.study import StudyWrapper
from optuna_grpc_storage.runner.trial_controller import TrialController
from optuna_grpc_storage.runner.wait import WaitOption

__all__ = ["RUNTIME_IMAGES", "AIAutoController", "BatchFailedError", "Controller",
           "KubernetesLauncher", "LocalLauncher", "StudyWrapper", "TrialController",
           "WaitOption", "WaitTimeoutError"]


def __getattr__(name: str) -> object:
    if name == "RUNTIME_IMAGES":  # read from the environment when asked
        return runtime_images()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
