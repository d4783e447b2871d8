"""One `optimize` call, as the launchers and the workers see it.

`StudyWrapper.optimize` creates the batch's `n_trials` trials at once, WAITING and marked with
the batch id, then asks a launcher to start workers. A worker only ever runs WAITING trials of
its own batch (never creates one), so exactly `n_trials` trials run whatever the number of
workers, their timing or their deaths: popping a WAITING trial is decided by the journal's
single order, and a trial whose worker died is failed by heartbeat and retried as a new
WAITING trial of the same batch (Optuna's RetryFailedTrialCallback copies the marks).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from optuna_grpc_storage import __version__

# Trial and study system attributes the controller and the workers share.
BATCH_ATTR = "ogs:batch"  # on each trial of a batch (and on its retries)
ERROR_ATTR = "ogs:error"  # on a trial whose objective raised: the exception text
SAMPLER_ATTR = "ogs:sampler"  # on the study: specs.describe() of its sampler
PRUNER_ATTR = "ogs:pruner"
BATCH_RECORD_PREFIX = "ogs:batch:"  # on the study, one per optimize call: what was asked

DEFAULT_RESOURCES = {"cpu": "256m", "memory": "256Mi"}  # as the AIAuto client
# Heartbeats of the controller's workers: a beat every 10 s; a trial is failed after 60 s
# without one, longer than a proxy restart or a Redis failover that the client rides out by
# retrying, so a live worker is never declared dead for an outage everyone saw.
DEFAULT_HEARTBEAT_INTERVAL = 10.0
DEFAULT_GRACE_PERIOD = 60.0
DEFAULT_MAX_RETRIES = 3  # a trial that kills its worker every time is not retried forever

_PY = f"{sys.version_info.major}.{sys.version_info.minor}"
# Images the workers run in. cloudpickle sends the objective's code by value, which needs the
# same Python minor version on both sides, hence one image per Python version. They hold
# Python, optuna and optuna-grpc-storage; `requirements_*` adds the rest at container start.
# Operators who build their own set OPTUNA_GRPC_STORAGE_CPU_IMAGE / ..._GPU_IMAGE.
RUNTIME_IMAGES = {
    "cpu": os.environ.get("OPTUNA_GRPC_STORAGE_CPU_IMAGE",
                          f"optuna-grpc-storage/runtime:{__version__}-py{_PY}-cpu"),
    "gpu": os.environ.get("OPTUNA_GRPC_STORAGE_GPU_IMAGE",
                          f"optuna-grpc-storage/runtime:{__version__}-py{_PY}-cuda12"),
}

_COMMENT = re.compile(r"(^|\s+)#.*$")
# Kubernetes resource quantities: 256m, 0.5, 1Gi, 512Mi, 1e3...
_QUANTITY = re.compile(r"^[+]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[mkMGTPE]i?|Ki|n|u)?$")


@dataclass(frozen=True)
class Batch:
    """Everything a launcher needs to start the workers of one optimize call."""

    study_name: str
    journal: str
    batch_id: str
    n_trials: int
    parallelism: int
    objective: bytes  # cloudpickle of the objective
    endpoint: str
    token: str | None = field(repr=False)
    requirements: tuple[str, ...] = ()
    resources_requests: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_RESOURCES))
    resources_limits: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_RESOURCES))
    runtime_image: str = RUNTIME_IMAGES["cpu"]
    use_gpu: bool = False
    deadline: float | None = None  # epoch seconds after which no trial starts
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    grace_period: float = DEFAULT_GRACE_PERIOD
    max_retries: int = DEFAULT_MAX_RETRIES

    @property
    def workers(self) -> int:
        return min(self.parallelism, self.n_trials)

    def worker_args(self, objective_path: str, max_trials: int | None = None) -> list[str]:
        """Arguments of `python -m optuna_grpc_storage.worker`. The endpoint and the token go
        in the environment, never on a command line that `ps` shows to everyone."""
        args = ["--study", self.study_name, "--journal", self.journal, "--batch", self.batch_id,
                "--objective", objective_path,
                "--heartbeat-interval", repr(self.heartbeat_interval),
                "--grace-period", repr(self.grace_period),
                "--max-retries", str(self.max_retries)]
        if max_trials is not None:
            args += ["--max-trials", str(max_trials)]
        if self.deadline is not None:
            args += ["--deadline", repr(self.deadline)]
        return args


def check_resources(name: str, resources: dict[str, str] | None) -> dict[str, str]:
    """A copy of the resources with every quantity checked; ValueError naming a bad one."""
    if resources is None:
        return dict(DEFAULT_RESOURCES)
    if not isinstance(resources, dict):
        raise ValueError(f"{name} must be a dict like {DEFAULT_RESOURCES}, got {resources!r}")
    out = {}
    for key, value in resources.items():
        text = str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
            else value
        if not isinstance(key, str) or not isinstance(text, str) or not _QUANTITY.match(text):
            raise ValueError(
                f"{name}[{key!r}] = {value!r} is not a Kubernetes quantity "
                "(for example '500m' or '2' for cpu, '512Mi' or '4Gi' for memory)"
            )
        out[key] = text
    return out


def read_requirements(requirements_file: str | os.PathLike[str] | None,
                      requirements_list: list[str] | None) -> tuple[str, ...]:
    if requirements_file is not None and requirements_list is not None:
        raise ValueError("pass requirements_file or requirements_list, not both")
    if requirements_list is not None:
        if isinstance(requirements_list, str) or not all(
                isinstance(r, str) and r.strip() for r in requirements_list):
            raise ValueError("requirements_list must be a list of requirement strings, "
                             "like ['torch>=2.0', 'scikit-learn']")
        return tuple(r.strip() for r in requirements_list)
    if requirements_file is not None:
        with open(requirements_file, encoding="utf-8") as f:  # pip's comment rule
            lines = [_COMMENT.sub("", line).strip() for line in f]
        return tuple(line for line in lines if line)
    return ()


def batch_trials(study: optuna.Study, batch_id: str, state: TrialState) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(state,))
            if t.system_attrs.get(BATCH_ATTR) == batch_id]


def cancel_waiting(study: optuna.Study, batch_id: str, reason: str) -> int:
    """Fail the batch's trials that never started. Each is popped first (set RUNNING, which
    the journal grants to one process only), so a trial another worker just took is left
    alone."""
    storage, cancelled = study._storage, 0
    for trial in batch_trials(study, batch_id, TrialState.WAITING):
        try:
            if not storage.set_trial_state_values(trial._trial_id, TrialState.RUNNING):
                continue
            storage.set_trial_system_attr(trial._trial_id, ERROR_ATTR, reason)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            cancelled += 1
        except UpdateFinishedTrialError:
            continue
    return cancelled
