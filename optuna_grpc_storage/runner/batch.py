"""One `optimize` call, as the launchers and the workers see it.

`StudyWrapper.optimize` creates the batch's `n_trials` trials at once, WAITING and marked with
the batch id, then asks a launcher to start workers. A worker only ever runs WAITING trials of
its own batch (never creates one), so exactly `n_trials` trials run whatever the number of
workers, their timing or their deaths: popping a WAITING trial is decided by the journal's
single order, and a trial whose worker died is failed by heartbeat and retried as a new
WAITING trial of the same batch (Optuna's RetryFailedTrialCallback copies the marks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from optuna_grpc_storage.runner.images import PYTHON, default_image
from optuna_grpc_storage.runner.options import DEFAULT_RESOURCES
from optuna_grpc_storage.runner.pod_options import PodOptions

# Heartbeats of the controller's workers: a beat every 10 s; a trial is failed after 60 s
# without one, longer than a proxy restart or a Redis failover that the client rides out by
# retrying, so a live worker is never declared dead for an outage everyone saw.
DEFAULT_HEARTBEAT_INTERVAL = 10.0
DEFAULT_GRACE_PERIOD = 60.0
DEFAULT_MAX_RETRIES = 3  # a trial that kills its worker every time is not retried forever


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
    runtime_image: str = field(default_factory=lambda: default_image(False))
    use_gpu: bool = False
    deadline: float | None = None  # epoch seconds after which no trial starts
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    grace_period: float = DEFAULT_GRACE_PERIOD
    max_retries: int = DEFAULT_MAX_RETRIES
    pod: PodOptions = field(default_factory=PodOptions)  # the Kubernetes launcher's Pod options
    python: str = PYTHON  # the Python X.Y that pickled the objective: the workers need the same
    top_n_artifacts: int | None = None  # keep the artifacts of the best N trials only

    @property
    def workers(self) -> int:
        return min(self.parallelism, self.n_trials)

    def worker_args(self, objective_path: str, max_trials: int | None = None) -> list[str]:
        """Arguments of `python -m optuna_grpc_storage.runner.worker`. The endpoint and the token go
        in the environment, never on a command line that `ps` shows to everyone."""
        args = ["--study", self.study_name, "--journal", self.journal, "--batch", self.batch_id,
                "--objective", objective_path,
                "--heartbeat-interval", repr(self.heartbeat_interval),
                "--grace-period", repr(self.grace_period),
                "--max-retries", str(self.max_retries), "--python", self.python]
        if max_trials is not None:
            args += ["--max-trials", str(max_trials)]
        if self.deadline is not None:
            args += ["--deadline", repr(self.deadline)]
        if self.top_n_artifacts is not None:
            args += ["--top-n-artifacts", str(self.top_n_artifacts)]
        return args
