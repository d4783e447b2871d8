"""StudyWrapper: one study as the controller sees it. Launch batches of trials (`optimize`),
count them per batch (`get_status`), wait for them, and hand out the real optuna.Study.

A batch is one `optimize` call; its name (returned by `optimize`) is its id, which marks its
trials (system attribute `ogs:batch`) and its record on the study. This wrapper also holds the
Launch of each batch it started: when every worker of one has exited with trials left (seen
twice, `DEAD_CONFIRM` seconds apart, so their last writes have landed), the batch is recorded
Failed with the reason and its unfinished trials end FAIL; any process then sees it Failed.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from optuna_grpc_storage.runner import specs
from optuna_grpc_storage.runner import wait as waiting
from optuna_grpc_storage.runner.attrs import (
    BATCH_ATTR,
    BATCH_RECORD_PREFIX,
    PRUNER_ATTR,
    SAMPLER_ATTR,
)
from optuna_grpc_storage.runner.batch import Batch
from optuna_grpc_storage.runner.counting import (
    FAILED,
    batch_of,
    batch_statuses,
    is_finished,
    study_status,
)
from optuna_grpc_storage.runner.images import default_image
from optuna_grpc_storage.runner.launchers.base import Launch
from optuna_grpc_storage.runner.local_study import LocalStudy
from optuna_grpc_storage.runner.objective import pack_objective
from optuna_grpc_storage.runner.options import check_run, read_requirements, resolve_resources
from optuna_grpc_storage.runner.pod_options import (
    DEFAULT_DEV_SHM_SIZE,
    DEFAULT_TMP_CACHE_DIR,
    DEFAULT_TMP_CACHE_SIZE,
    PodOptions,
    pod_options,
)
from optuna_grpc_storage.runner.top_n import DEFAULT_TOP_N, check_top_n
from optuna_grpc_storage.runner.trials import fail_batch
from optuna_grpc_storage.runner.wait import WaitOption

if TYPE_CHECKING:
    from optuna_grpc_storage.runner.controller import Controller

DEAD_CONFIRM = 1.0  # seconds between the two sightings of a batch's workers all gone


class StudyWrapper:
    """A study as the controller sees it: launch batches of trials, count them, wait."""

    def __init__(self, controller: Controller, study_name: str) -> None:
        self.controller = controller
        self.study_name = study_name
        self.storage, self.journal = controller.storage, controller.journal  # as created
        self.study_id = self.storage.get_study_id_from_name(study_name)
        self.launches: list[Launch] = []  # those this wrapper started, in launch order
        self.last_trialbatch_name: str | None = None

    def __repr__(self) -> str:
        return f"StudyWrapper({self.study_name!r})"

    def launch_of(self, trialbatch_name: str) -> Launch | None:
        """The Launch (its workers) of a batch this controller started, else None."""
        return self.controller.launches.get(trialbatch_name)

    def optimize(self, objective: Callable[[optuna.Trial], Any], n_trials: int = 10,
                 parallelism: int = 2, requirements_file: str | os.PathLike[str] | None = None,
                 requirements_list: list[str] | None = None,
                 resources_requests: dict[str, str] | None = None,
                 resources_limits: dict[str, str] | None = None,
                 runtime_image: str | None = None, use_gpu: bool = False, *,
                 gpu_model: str | Mapping[str, int] | None = None,
                 wait_option: WaitOption | str = WaitOption.WAIT_ATLEAST_ONE_TRIAL,
                 wait_timeout: float | None = 600,
                 dev_shm_size: str = DEFAULT_DEV_SHM_SIZE,
                 tmp_cache_dir: str = DEFAULT_TMP_CACHE_DIR, use_tmp_cache_mem: bool = False,
                 tmp_cache_size: str = DEFAULT_TMP_CACHE_SIZE,
                 image_pull_registry: str | None = None, image_pull_username: str | None = None,
                 image_pull_password: str | None = None,
                 image_pull_docker_config_json: Mapping[str, Any] | None = None,
                 top_n_artifacts: int | None = DEFAULT_TOP_N,
                 timeout: float | None = None) -> str:
        """Run exactly `n_trials` trials of `objective`, at most `parallelism` at once, on the
        controller's launcher, and return the batch's name once `wait_option` is met (by
        default one finished trial; WaitOption.WAIT_NO returns at once). Every argument is
        checked (ValueError) before anything is created or launched. `timeout`: seconds after
        which no new trial starts (those left end FAIL); `wait_timeout`: how long this call
        waits (WaitTimeoutError; the batch goes on). BatchFailedError if the batch can no
        longer finish. The Pod options (pod_options.py) shape Kubernetes Pods.
        `top_n_artifacts`: when trials end, only the best N of the batch keep their artifacts
        (AIAuto's rule and default, top_n.py); None keeps every one."""
        option = waiting.wait_option(wait_option)
        top_n = check_top_n(top_n_artifacts)
        wait_limit = waiting.check_timeout("wait_timeout", wait_timeout)
        pod = pod_options(
            n_trials=n_trials, use_gpu=use_gpu, dev_shm_size=dev_shm_size,
            tmp_cache_dir=tmp_cache_dir, use_tmp_cache_mem=use_tmp_cache_mem,
            tmp_cache_size=tmp_cache_size, gpu_model=gpu_model,
            image_pull_registry=image_pull_registry, image_pull_username=image_pull_username,
            image_pull_password=image_pull_password,
            image_pull_docker_config_json=image_pull_docker_config_json)
        batch = dataclasses.replace(self._batch(
            objective, n_trials, parallelism, requirements_file, requirements_list,
            resources_requests, resources_limits, runtime_image, use_gpu, timeout, pod),
            top_n_artifacts=top_n)
        launcher = self.controller.launcher
        launcher.check(batch)
        self._create_trials(batch)
        name = batch.batch_id
        try:
            launch = launcher.launch(batch)
        except BaseException as e:
            fail_batch(self._study(), name, "LaunchFailed",
                       f"not started: the launch failed ({type(e).__name__}: {e})")
            raise
        self.launches.append(launch)
        self.controller.launches[name] = launch
        self.last_trialbatch_name = name
        if option is not WaitOption.WAIT_NO:
            waiting.wait_for_batch(self, name, option, wait_limit)
        return name

    def _batch(self, objective: Callable[[optuna.Trial], Any], n_trials: int,
               parallelism: int, requirements_file: str | os.PathLike[str] | None,
               requirements_list: list[str] | None, resources_requests: dict[str, str] | None,
               resources_limits: dict[str, str] | None, runtime_image: str | None,
               use_gpu: bool, timeout: float | None, pod: PodOptions) -> Batch:
        check_run(n_trials=n_trials, parallelism=parallelism, timeout=timeout, use_gpu=use_gpu,
                  runtime_image=runtime_image)
        requests, limits = resolve_resources(resources_requests, resources_limits)
        c = self.controller
        return Batch(
            study_name=self.study_name, journal=self.journal, batch_id=uuid.uuid4().hex[:12],
            n_trials=n_trials, parallelism=parallelism, objective=pack_objective(objective),
            endpoint=c.endpoint, token=c._token,
            requirements=read_requirements(requirements_file, requirements_list),
            resources_requests=requests, resources_limits=limits,
            runtime_image=runtime_image or default_image(use_gpu),
            use_gpu=use_gpu, deadline=None if timeout is None else time.time() + timeout,
            heartbeat_interval=c.heartbeat_interval, grace_period=c.grace_period,
            max_retries=c.max_retries, pod=pod,
        )

    def _create_trials(self, batch: Batch) -> None:
        """The batch's trials, WAITING: those enqueued on the study by hand first (as
        `study.optimize` runs enqueued trials first), then new ones, in one append."""
        storage = self.storage
        storage.set_study_system_attr(self.study_id, BATCH_RECORD_PREFIX + batch.batch_id, {
            "n_trials": batch.n_trials, "parallelism": batch.parallelism,
            "max_retries": batch.max_retries, "grace_period": batch.grace_period,
            "launcher": type(self.controller.launcher).__name__, "deadline": batch.deadline,
            "top_n_artifacts": batch.top_n_artifacts,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        })
        enqueued = [t for t in storage.get_all_trials(self.study_id, deepcopy=False,
                                                      states=(TrialState.WAITING,))
                    if BATCH_ATTR not in t.system_attrs][: batch.n_trials]
        for trial in enqueued:
            storage.set_trial_system_attr(trial._trial_id, BATCH_ATTR, batch.batch_id)
        storage.create_waiting_trials(self.study_id, batch.n_trials - len(enqueued),
                                      {BATCH_ATTR: batch.batch_id})

    # -- status -------------------------------------------------------------------------

    def get_status(self, trialbatch_name: str | None = None,
                   include_trials: bool = False) -> dict[str, Any]:
        """The study's counts by state (see runner/counting.py for the rule), last_error,
        dashboard_url, updated_at, and `trialbatches`: per batch (only `trialbatch_name` if
        given; {} if there is none by that name) its phase and the same counts, plus its
        finished trials with `include_trials`. Trials no optimize call made count in the
        pseudo-batch `ask_tell_local`."""
        trials, attrs, batches = self._read(include_trials)
        dead = self._dead_batches(batches)
        for name in dead:
            self._fail_dead(name, batches[name])
        if dead:
            trials, attrs, batches = self._read(include_trials)
        status = study_status(self.study_name, trials, attrs, self.controller.dashboard_url)
        status["trialbatches"] = {n: e for n, e in batches.items()
                                  if trialbatch_name is None or n == trialbatch_name}
        return status

    def _read(self, include_trials: bool) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
        trials = self.storage.get_all_trials(self.study_id, deepcopy=False)
        attrs = self.storage.get_study_system_attrs(self.study_id)
        return trials, attrs, batch_statuses(trials, attrs, include_trials)

    def _dead_batches(self, batches: dict[str, dict[str, Any]]) -> list[str]:
        """Batches this controller launched, unfinished, whose workers were all gone at two
        looks DEAD_CONFIRM seconds apart (by any wrapper of the study)."""
        dead, now, seen = [], time.monotonic(), self.controller.dead_since
        for name, entry in batches.items():
            launch = self.controller.launches.get(name)
            if launch is None:
                continue
            unfinished = entry["phase"] != FAILED \
                and entry["count_completed"] < entry["count_total"]
            if not unfinished or launch.alive() is not False:
                seen.pop(name, None)
            elif now - seen.setdefault(name, now) >= DEAD_CONFIRM:
                dead.append(name)
        return dead

    def _fail_dead(self, name: str, entry: dict[str, Any]) -> None:
        launch = self.controller.launches[name]
        left = entry["count_total"] - entry["count_completed"]
        fail_batch(self._study(), name, "WorkersExited",
                   f"every worker exited with {left} of {entry['count_total']} trials "
                   f"unfinished; last error: {entry['last_error'] or '(none)'}\n"
                   f"{launch.explain()}".rstrip())
        self.controller.dead_since.pop(name, None)

    def is_trial_finished(self, trial_identifier: int | str,
                          trialbatch_name: str | None = None) -> bool:
        """Whether the trial with this number has finished (COMPLETE, PRUNED or FAIL; a trial
        retried after its worker died is represented by its retry). With `trialbatch_name`,
        a trial of another batch is False; so is a number no trial has yet."""
        number = _trial_number(trial_identifier)
        trials = self.storage.get_all_trials(self.study_id, deepcopy=False)
        trial = next((t for t in trials if t.number == number), None)
        if trial is None:
            return False
        if trialbatch_name is not None and batch_of(trial) != trialbatch_name:
            return False
        attrs = self.storage.get_study_system_attrs(self.study_id)
        return is_finished(trial, trials, attrs)

    def wait(self, trial_identifier: int | str | None = None,
             trialbatch_name: str | None = None, timeout: float | None = None,
             poll_interval: float = 1.0, progress_bar: bool = True) -> Any:
        """With `trial_identifier` (a trial number): True once that trial has finished, False
        if `timeout` passes first (AIAuto's form). Without: block with a progress bar until
        every trial of the study (or of `trialbatch_name`) has finished and return the
        status; BatchFailedError if a batch can no longer finish, WaitTimeoutError (a
        TimeoutError) after `timeout` seconds."""
        waiting.check_timeout("timeout", timeout)
        if trial_identifier is not None:
            return waiting.wait_for_trial(self, _trial_number(trial_identifier),
                                          trialbatch_name, timeout, poll_interval)
        return waiting.wait_with_bar(self, trialbatch_name, timeout, poll_interval,
                                     progress_bar)

    def get_study(self) -> optuna.Study:
        """The real optuna.Study, with its recorded sampler and pruner (ask/tell work; an
        ask never takes a trial an optimize call made for its workers)."""
        attrs = self.storage.get_study_system_attrs(self.study_id)
        return LocalStudy(study_name=self.study_name, storage=self.storage,
                          sampler=specs.build(attrs.get(SAMPLER_ATTR)),
                          pruner=specs.build(attrs.get(PRUNER_ATTR)))

    def _study(self) -> optuna.Study:
        """A plain study on the storage, for the controller's own trial operations."""
        return optuna.Study(study_name=self.study_name, storage=self.storage)


def _trial_number(identifier: Any) -> int:
    if isinstance(identifier, str) and identifier.strip().isdigit():
        return int(identifier)
    if isinstance(identifier, int) and not isinstance(identifier, bool) and identifier >= 0:
        return identifier
    raise ValueError(f"a trial is identified here by its number (an int, as trial.number), "
                     f"got {identifier!r}")
