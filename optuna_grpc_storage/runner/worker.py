"""The trial worker: `python -m optuna_grpc_storage.runner.worker ...`, what every launcher runs.

It loads the study with the sampler and pruner recorded on it, unpickles the objective and
runs the WAITING trials of its batch until none is left (or `--max-trials` are done, one per
Kubernetes completion), with heartbeats on. When none is WAITING but some trial of the batch
still runs elsewhere, it waits: if that trial's worker dies, this worker fails it after the
grace period and runs its retry. The endpoint and the token come from the environment.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from optuna_grpc_storage.runner import specs
from optuna_grpc_storage.runner.attrs import BATCH_ATTR, ERROR_ATTR, PRUNER_ATTR, SAMPLER_ATTR
from optuna_grpc_storage.runner.counting import awaiting_retry, superseded
from optuna_grpc_storage.runner.objective import unpack_objective
from optuna_grpc_storage.runner.top_n import keep_top_n
from optuna_grpc_storage.runner.trial_controller import TrialController
from optuna_grpc_storage.runner.trial_output import TrialOutput, capture_supported
from optuna_grpc_storage.runner.trials import cancel_waiting
from optuna_grpc_storage.storage import GrpcArtifactStore, GrpcJournalStorage
from optuna_grpc_storage.storage.artifacts import Labels, current_labels
from optuna_grpc_storage.storage.errors import GrpcStorageError

log = logging.getLogger("optuna_grpc_storage.runner.worker")
MAX_ERROR_CHARS = 4000

try:  # Optuna >= 4.9
    from optuna.storages import RetryHeartbeatStaleTrialCallback as RetryCallback
except ImportError:  # pragma: no cover - older Optuna
    from optuna.storages import RetryFailedTrialCallback as RetryCallback


class NoWaitingTrial(Exception):
    """Raised instead of creating a trial: a worker only runs its batch's WAITING trials."""


class BatchStorage(GrpcJournalStorage):
    """The worker's storage: `study.ask()` pops WAITING trials of this batch only (another
    batch of the same study may have another objective) and never creates a new trial."""

    def __init__(self, *args: Any, batch_id: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_id = batch_id

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Sequence[TrialState] | None = None) -> list[FrozenTrial]:
        trials = super().get_all_trials(study_id, deepcopy, states)
        if states is not None and tuple(states) == (TrialState.WAITING,):  # Study's pop
            trials = [t for t in trials if t.system_attrs.get(BATCH_ATTR) == self.batch_id]
        return trials

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        if template_trial is None:
            raise NoWaitingTrial()
        return super().create_new_trial(study_id, template_trial)


class Objective:
    """The user's objective, recording its exception text on the trial before Optuna fails
    it (Optuna only logs it; get_status() reports it as last_error), with its traceback in
    the trial's output, which is kept with the trial (trial_output.py), as is its
    TrialController note; and remembering which trial it ran last."""

    def __init__(self, objective: Callable[[optuna.Trial], Any], journal: str,
                 output: TrialOutput | None = None) -> None:
        self.objective = objective
        self.journal = journal
        self.output = output
        self.trial_id: int | None = None

    def __call__(self, trial: optuna.Trial) -> Any:
        self.trial_id = trial._trial_id
        labels = current_labels.set(Labels(self.journal, trial.study.study_name, trial.number))
        if self.output is not None:
            self.output.begin(trial)
        try:
            return self.objective(trial)
        except optuna.TrialPruned:
            raise
        except Exception as e:
            traceback.print_exc()  # into the trial's output
            text = "".join(traceback.format_exception_only(type(e), e)).strip()
            with contextlib.suppress(Exception):
                trial.storage.set_trial_system_attr(trial._trial_id, ERROR_ATTR,
                                                    text[-MAX_ERROR_CHARS:])
            raise
        finally:
            TrialController.finish(trial)
            if self.output is not None:
                self.output.end()
            current_labels.reset(labels)


def still_running(study: optuna.Study, storage: BatchStorage, batch_id: str,
                  grace_period: float, max_retries: int) -> bool:
    """Whether a trial of this batch runs elsewhere and might come back as a retry: one with
    a heartbeat (alive, or stale and about to be failed), one started so recently that its
    worker may not have sent its first heartbeat yet, or one just failed for lost heartbeats
    whose retry is about to be queued."""
    trials = study.get_trials(deepcopy=False)
    mine = [t for t in trials if t.system_attrs.get(BATCH_ATTR) == batch_id]
    retried = superseded(trials)
    policy = {"max_retries": max_retries, "grace_period": grace_period}
    if any(awaiting_retry(t, retried, policy, time.time()) for t in mine):
        return True
    running = [t for t in mine if t.state == TrialState.RUNNING]
    if not running:
        return False
    ages = storage.heartbeat_ages([t._trial_id for t in running])
    now = time.time()
    return any(t._trial_id in ages or t.datetime_start is None
               or now - t.datetime_start.timestamp() < grace_period for t in running)


def run(args: argparse.Namespace) -> int:
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if args.python is not None and args.python != here:
        log.error("the objective was pickled by Python %s; this worker runs Python %s, which "
                  "cannot unpickle its code: use a runtime image with Python %s",
                  args.python, here, args.python)
        return 2
    store = GrpcArtifactStore()
    output = TrialOutput(store, args.journal) if args.capture and capture_supported() else None
    with open(args.objective, "rb") as f:
        objective = Objective(unpack_objective(f.read()), args.journal, output)
    with output or contextlib.nullcontext():
        return run_trials(args, objective, store)


def run_trials(args: argparse.Namespace, objective: Objective, store: GrpcArtifactStore) -> int:
    storage = BatchStorage(
        journal=args.journal, batch_id=args.batch,
        heartbeat_interval=args.heartbeat_interval, grace_period=args.grace_period,
        heartbeat_stale_trial_callback=RetryCallback(max_retry=args.max_retries),
    )
    attrs = storage.get_study_system_attrs(storage.get_study_id_from_name(args.study))
    index = args.worker_index or os.environ.get("JOB_COMPLETION_INDEX", "0")
    study = optuna.load_study(
        study_name=args.study, storage=storage,
        sampler=specs.build(attrs.get(SAMPLER_ATTR), salt=f"{args.batch}:{index}"),
        pruner=specs.build(attrs.get(PRUNER_ATTR)),
    )
    done = 0
    while args.max_trials is None or done < args.max_trials:
        remaining = None if args.deadline is None else args.deadline - time.time()
        if remaining is not None and remaining <= 0:
            cancelled = cancel_waiting(study, args.batch, "not started: the optimize timeout "
                                       "passed before a worker was free")
            log.warning("timeout: %d trials of batch %s not started", cancelled, args.batch)
            break
        before = done
        done += run_one(study, storage, objective, args, remaining)
        if done > before and args.top_n_artifacts:
            _keep_top_n(study, args, store)
        if done == before:
            if not still_running(study, storage, args.batch, args.grace_period,
                                 args.max_retries):
                break
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            time.sleep(min(args.heartbeat_interval, 1.0))
    log.info("worker %s of batch %s ran %d trials", index, args.batch, done)
    return 0


def run_one(study: optuna.Study, storage: BatchStorage, objective: Objective,
            args: argparse.Namespace, remaining: float | None) -> int:
    """Run the next WAITING trial of the batch, if any; 1 if one ended here."""
    objective.trial_id = None
    try:
        study.optimize(objective, n_trials=1, timeout=remaining, catch=(Exception,))
        return 1
    except NoWaitingTrial:
        return 0
    except (UpdateFinishedTrialError, AssertionError):
        # Another worker failed this trial while it ran (its heartbeats were late by more
        # than the grace period), so Optuna's tell refused the result; Optuna 5 reports
        # that as an AssertionError from _run_trial. The trial's retry runs elsewhere.
        trial_id = objective.trial_id
        if trial_id is None or not storage.get_trial(trial_id).state.is_finished():
            raise
        log.warning("trial %d was failed by another worker while it ran here (its "
                    "heartbeats were late by more than %ss); its result is dropped",
                    storage.get_trial(trial_id).number, args.grace_period)
        return 1


def _keep_top_n(study: optuna.Study, args: argparse.Namespace,
                store: GrpcArtifactStore) -> None:
    try:
        keep_top_n(study, args.batch, args.top_n_artifacts, store, args.journal)
    except GrpcStorageError as e:  # the next trial's end tries again
        log.warning("top_n_artifacts: could not remove artifacts now: %s", e)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m optuna_grpc_storage.runner.worker",
                                description=__doc__.splitlines()[0])
    p.add_argument("--study", required=True)
    p.add_argument("--journal", default="default")
    p.add_argument("--batch", required=True, help="run only WAITING trials of this batch")
    p.add_argument("--objective", required=True, help="file holding the pickled objective")
    p.add_argument("--max-trials", type=int, default=None)
    p.add_argument("--deadline", type=float, default=None, help="epoch seconds")
    p.add_argument("--heartbeat-interval", type=float, required=True)
    p.add_argument("--grace-period", type=float, required=True)
    p.add_argument("--max-retries", type=int, default=3)
    p.add_argument("--worker-index", default=None, help="default: $JOB_COMPLETION_INDEX")
    p.add_argument("--python", default=None, help="the X.Y that pickled the objective")
    p.add_argument("--top-n-artifacts", type=int, default=None,
                   help="keep the artifacts of the batch's best N trials only")
    p.add_argument("--no-capture", dest="capture", action="store_false",
                   help="do not keep each trial's stdout/stderr with the trial")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
