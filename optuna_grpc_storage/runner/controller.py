"""The thin controller: create a study from a notebook, launch its trials elsewhere, watch.

    ac = Controller(token, endpoint="proxy:13000")
    study = ac.create_study("cnn", direction="minimize", sampler=TPESampler(seed=1))
    study.optimize(objective, n_trials=100, parallelism=4)   # returns at once
    study.wait()                                              # progress bar
    best = study.get_study().best_trial

The controller holds no state of its own: the study, its sampler and pruner (as specs), every
optimize call and every trial live in the journal, so any process with the token sees the
same thing, and a notebook that restarts picks up where it was.
"""

from __future__ import annotations

import datetime
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import optuna
from optuna.trial import TrialState

from optuna_grpc_storage.runner import specs
from optuna_grpc_storage.runner.attrs import (
    BATCH_ATTR,
    BATCH_RECORD_PREFIX,
    PRUNER_ATTR,
    SAMPLER_ATTR,
)
from optuna_grpc_storage.runner.batch import (
    DEFAULT_GRACE_PERIOD,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_MAX_RETRIES,
    Batch,
)
from optuna_grpc_storage.runner.counting import study_status
from optuna_grpc_storage.runner.images import default_image
from optuna_grpc_storage.runner.launchers.base import Launch, Launcher
from optuna_grpc_storage.runner.launchers.local import LocalLauncher
from optuna_grpc_storage.runner.objective import pack_objective
from optuna_grpc_storage.runner.options import check_resources, read_requirements
from optuna_grpc_storage.runner.trials import cancel_waiting
from optuna_grpc_storage.storage import GrpcJournalStorage
from optuna_grpc_storage.storage.client import JournalClient
from optuna_grpc_storage.storage.connection import Connection, resolve

DASHBOARD_ENV = "OPTUNA_GRPC_STORAGE_DASHBOARD_URL"


class Controller:
    """One per (endpoint, token): `Controller(token)` twice gives the same object.

    The token and endpoint default to OPTUNA_GRPC_STORAGE_TOKEN / _ENDPOINT; the token is
    checked against the proxy at once. `launcher` starts the workers (default LocalLauncher:
    processes on this machine; KubernetesLauncher: an indexed Job). `dashboard_url` (default
    $OPTUNA_GRPC_STORAGE_DASHBOARD_URL) may contain {study_name}. The workers send a heartbeat
    every `heartbeat_interval` seconds; a trial without one for `grace_period` seconds is
    failed and retried, at most `max_retries` times.
    """

    CONNECT_DEADLINE = 10.0  # seconds to reach the proxy at construction
    _instances: ClassVar[dict[tuple[str, str | None], Controller]] = {}
    _instances_lock = threading.Lock()

    def __new__(cls, token: str | None = None, endpoint: str | None = None,
                launcher: Launcher | None = None, **config: Any) -> Controller:
        endpoint, token = resolve(endpoint, token)
        with cls._instances_lock:
            existing = cls._instances.get((endpoint, token))
            if existing is not None:
                existing._configure(launcher, **config)
                return existing
            controller = super().__new__(cls)
            controller._connect(token, endpoint)
            controller._configure(launcher or LocalLauncher(), **config)
            cls._instances[(endpoint, token)] = controller
            return controller

    def __init__(self, token: str | None = None, endpoint: str | None = None,
                 launcher: Launcher | None = None, **config: Any) -> None:
        """Everything happens in __new__, which may return an existing controller."""

    def _connect(self, token: str | None, endpoint: str) -> None:
        # A short deadline: a notebook user wants "wrong address" in seconds, not a minute.
        check = JournalClient(Connection(endpoint, token, retry_deadline=self.CONNECT_DEADLINE),
                              use_stream=False)
        try:
            self.namespace = check.who_am_i().namespace  # AuthenticationError, Unavailable
        finally:
            check.close()
        self.endpoint, self._token = endpoint, token

    def _configure(self, launcher: Launcher | None = None, *, journal: str | None = None,
                   dashboard_url: str | None = None,
                   heartbeat_interval: float | None = None, grace_period: float | None = None,
                   max_retries: int | None = None) -> None:
        """Settings given (again) replace the current ones; the others stay."""
        given = {"heartbeat_interval": heartbeat_interval, "grace_period": grace_period,
                 "max_retries": max_retries}
        defaults = {"heartbeat_interval": DEFAULT_HEARTBEAT_INTERVAL,
                    "grace_period": DEFAULT_GRACE_PERIOD, "max_retries": DEFAULT_MAX_RETRIES}
        new = {k: v if v is not None else getattr(self, k, defaults[k]) for k, v in given.items()}
        if not 0 < new["heartbeat_interval"] < new["grace_period"] or new["max_retries"] < 0:
            raise ValueError("heartbeat_interval must be > 0, grace_period longer than it and "
                             "max_retries >= 0")
        self.__dict__.update(new)
        if launcher is not None:
            self.launcher = launcher
        if dashboard_url is not None or not hasattr(self, "dashboard_url"):
            self.dashboard_url = dashboard_url if dashboard_url is not None \
                else os.environ.get(DASHBOARD_ENV, "")
        if journal is not None or not hasattr(self, "journal"):
            self.journal = journal or "default"
            self.storage = GrpcJournalStorage(self.endpoint, self._token, self.journal)

    def __repr__(self) -> str:
        return f"Controller(endpoint={self.endpoint!r}, namespace={self.namespace!r})"

    def create_study(self, study_name: str, direction: str | None = None,
                     directions: Sequence[str] | None = None, sampler: Any = None,
                     pruner: Any = None, load_if_exists: bool = True) -> StudyWrapper:
        """Create (or load) the study and record its sampler and pruner with it, so every
        worker and every later `get_study()` gets them back. Only Optuna's own samplers and
        pruners can be recorded (ValueError otherwise); left out, the ones recorded before
        stay (Optuna's defaults for a new study)."""
        if direction is not None and directions is not None:
            raise ValueError("pass direction or directions, not both")
        if not isinstance(study_name, str) or not study_name:
            raise ValueError("study_name must be a non-empty string")
        sampler_spec = specs.describe(sampler, "the sampler") if sampler is not None else None
        pruner_spec = specs.describe(pruner, "the pruner") if pruner is not None else None
        study = optuna.create_study(
            storage=self.storage, study_name=study_name, load_if_exists=load_if_exists,
            direction=direction, directions=directions,
        )
        for key, spec in ((SAMPLER_ATTR, sampler_spec), (PRUNER_ATTR, pruner_spec)):
            if spec is not None:
                self.storage.set_study_system_attr(study._study_id, key, spec)
        return StudyWrapper(self, study_name)

    def study(self, study_name: str) -> StudyWrapper:
        """The wrapper of an existing study (KeyError if there is none)."""
        self.storage.get_study_id_from_name(study_name)
        return StudyWrapper(self, study_name)


class StudyWrapper:
    """A study as the controller sees it: launch batches of trials, count them, wait."""

    def __init__(self, controller: Controller, study_name: str) -> None:
        self.controller = controller
        self.study_name = study_name
        self.storage, self.journal = controller.storage, controller.journal  # as created
        self.study_id = self.storage.get_study_id_from_name(study_name)
        self.launches: list[Launch] = []

    def __repr__(self) -> str:
        return f"StudyWrapper({self.study_name!r})"

    def optimize(self, objective: Callable[[optuna.Trial], Any], n_trials: int = 10,
                 parallelism: int = 2, requirements_file: str | os.PathLike[str] | None = None,
                 requirements_list: list[str] | None = None,
                 resources_requests: dict[str, str] | None = None,
                 resources_limits: dict[str, str] | None = None,
                 runtime_image: str | None = None, use_gpu: bool = False,
                 timeout: float | None = None) -> Launch:
        """Run exactly `n_trials` trials of `objective`, at most `parallelism` at once, on the
        controller's launcher; returns at once. Every argument is checked (ValueError) before
        anything is created or launched. `timeout`: seconds after which no new trial starts;
        the trials not started by then end FAIL ("not started: the optimize timeout passed")."""
        for name, value in (("n_trials", n_trials), ("parallelism", parallelism)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if timeout is not None and (isinstance(timeout, bool) or not timeout > 0):
            raise ValueError(f"timeout must be None or a positive number of seconds, "
                             f"got {timeout!r}")
        if not isinstance(use_gpu, bool):
            raise ValueError(f"use_gpu must be True or False, got {use_gpu!r}")
        if runtime_image is not None and (not isinstance(runtime_image, str)
                                          or not runtime_image.strip()):
            raise ValueError(f"runtime_image must be an image name, got {runtime_image!r}")
        c = self.controller
        batch = Batch(
            study_name=self.study_name, journal=self.journal, batch_id=uuid.uuid4().hex[:12],
            n_trials=n_trials, parallelism=parallelism, objective=pack_objective(objective),
            endpoint=c.endpoint, token=c._token,
            requirements=read_requirements(requirements_file, requirements_list),
            resources_requests=check_resources("resources_requests", resources_requests),
            resources_limits=check_resources("resources_limits", resources_limits),
            runtime_image=runtime_image or default_image(use_gpu),
            use_gpu=use_gpu, deadline=None if timeout is None else time.time() + timeout,
            heartbeat_interval=c.heartbeat_interval, grace_period=c.grace_period,
            max_retries=c.max_retries,
        )
        c.launcher.check(batch)
        self._create_trials(batch)
        try:
            launch = c.launcher.launch(batch)
        except BaseException as e:
            cancel_waiting(self.get_study(), batch.batch_id, f"not started: the launch "
                           f"failed ({type(e).__name__}: {e})")
            raise
        self.launches.append(launch)
        return launch

    def _create_trials(self, batch: Batch) -> None:
        """The batch's trials, WAITING: those enqueued on the study by hand first (as
        `study.optimize` runs enqueued trials first), then new ones, in one append."""
        storage = self.storage
        storage.set_study_system_attr(self.study_id, BATCH_RECORD_PREFIX + batch.batch_id, {
            "n_trials": batch.n_trials, "parallelism": batch.parallelism,
            "max_retries": batch.max_retries, "grace_period": batch.grace_period,
            "launcher": type(self.controller.launcher).__name__, "deadline": batch.deadline,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        })
        enqueued = [t for t in storage.get_all_trials(self.study_id, deepcopy=False,
                                                      states=(TrialState.WAITING,))
                    if BATCH_ATTR not in t.system_attrs][: batch.n_trials]
        for trial in enqueued:
            storage.set_trial_system_attr(trial._trial_id, BATCH_ATTR, batch.batch_id)
        storage.create_waiting_trials(self.study_id, batch.n_trials - len(enqueued),
                                      {BATCH_ATTR: batch.batch_id})

    def get_status(self) -> dict[str, Any]:
        """Counts by state (see optuna_grpc_storage.runner.counting for the rule), last_error,
        dashboard_url and updated_at."""
        trials = self.storage.get_all_trials(self.study_id, deepcopy=False)
        attrs = self.storage.get_study_system_attrs(self.study_id)
        return study_status(self.study_name, trials, attrs, self.controller.dashboard_url)

    def wait(self, timeout: float | None = None, poll_interval: float = 1.0,
             progress_bar: bool = True) -> dict[str, Any]:
        """Block until count_completed == count_total, with a progress bar; return the final
        status. Raises TimeoutError after `timeout` seconds, and RuntimeError when every
        worker this wrapper launched has exited while trials are still unfinished."""
        from tqdm.auto import tqdm

        deadline = None if timeout is None else time.monotonic() + timeout
        status = self.get_status()
        bar = tqdm(desc=self.study_name, unit="trial", total=status["count_total"],
                   disable=not progress_bar)
        dead_polls = 0
        try:
            while True:
                bar.total = status["count_total"]
                bar.n = status["count_completed"]
                bar.set_postfix(active=status["count_active"], failed=status["count_failed"],
                                refresh=False)
                bar.refresh()
                if status["count_completed"] >= status["count_total"]:
                    return status
                gone = bool(self.launches) and all(la.alive() is False for la in self.launches)
                dead_polls = dead_polls + 1 if gone else 0
                if dead_polls >= 2:  # checked twice: the last worker's writes had landed
                    details = "\n".join(la.explain() for la in self.launches)
                    left = status["count_total"] - status["count_completed"]
                    raise RuntimeError(
                        f"study {self.study_name!r}: {left} trials are unfinished but every "
                        "worker has exited; last error: "
                        f"{status['last_error'] or '(none)'}\n{details}")
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"study {self.study_name!r}: {status['count_completed']}"
                                       f" of {status['count_total']} trials done after "
                                       f"{timeout}s")
                time.sleep(poll_interval)
                status = self.get_status()
        finally:
            bar.close()

    def get_study(self) -> optuna.Study:
        """The real optuna.Study, with its recorded sampler and pruner (ask/tell work)."""
        storage = self.storage
        attrs = storage.get_study_system_attrs(self.study_id)
        return optuna.load_study(study_name=self.study_name, storage=storage,
                                 sampler=specs.build(attrs.get(SAMPLER_ATTR)),
                                 pruner=specs.build(attrs.get(PRUNER_ATTR)))
