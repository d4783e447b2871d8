"""`optimize(top_n_artifacts=N)`: keep the artifacts of the batch's best N finished trials, by
the study's direction, and remove the others' (AIAuto's rule), safely with many workers
finishing at once.

Every worker applies the rule after each trial it ends, from what it sees then. The rule only
ever removes: a trial outside the best N of the trials finished so far stays outside it when
more finish (N of them are better already, and they remain), so no worker removes what a
later view keeps; and the worker whose result lands last in the journal sees every trial
finished, so the end state is exactly the best N. Removing twice is harmless.

Trials that failed or were pruned have no value: theirs go too. A trial's output
(trial_output.py) is never removed, nor an artifact a running or kept trial also refers to
(a retried trial carries its original's records). Which trials lost theirs is recorded on the
study, as `ogs:artifacts-removed:<trial number>` = the ids removed (a finished trial itself
can no longer be changed). Multi-objective studies rank by their first objective.
"""

from __future__ import annotations

import contextlib
import logging

import optuna
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optuna_grpc_storage.runner.attrs import ARTIFACTS_REMOVED_PREFIX, BATCH_ATTR
from optuna_grpc_storage.runner.trial_output import log_artifact_id
from optuna_grpc_storage.storage.artifacts import GrpcArtifactStore

DEFAULT_TOP_N = 5  # AIAuto's
ARTIFACT_PREFIX = "artifacts:"  # optuna.artifacts' trial system attributes
log = logging.getLogger("optuna_grpc_storage.runner.worker")


def check_top_n(value: object) -> int | None:
    """AIAuto's rule (an int >= 1), or None to keep every artifact."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"top_n_artifacts must be an int >= 1 (or None to keep every "
                         f"artifact), got {value!r}")
    return value


def artifact_ids(trial: FrozenTrial) -> set[str]:
    return {k[len(ARTIFACT_PREFIX):] for k in trial.system_attrs if k.startswith(ARTIFACT_PREFIX)}


def best(trials: list[FrozenTrial], direction: StudyDirection, n: int) -> list[FrozenTrial]:
    """The best n COMPLETE trials (ties: the earlier trial first)."""
    sign = -1.0 if direction == StudyDirection.MAXIMIZE else 1.0
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
    return sorted(done, key=lambda t: (sign * t.values[0], t.number))[:n]


def keep_top_n(study: optuna.Study, batch_id: str, n: int, store: GrpcArtifactStore,
               journal: str) -> int:
    """Apply the rule to the batch as this process sees it now; artifacts removed."""
    trials = study.get_trials(deepcopy=False)
    mine = [t for t in trials if t.system_attrs.get(BATCH_ATTR) == batch_id]
    kept = best(mine, study.directions[0], n)
    keep_ids = {log_artifact_id(journal, t._trial_id) for t in trials}
    for t in [*kept, *(t for t in trials if not t.state.is_finished())]:
        keep_ids |= artifact_ids(t)
    done = study._storage.get_study_system_attrs(study._study_id)
    kept_numbers = {t.number for t in kept}
    removed = 0
    for trial in mine:
        key = f"{ARTIFACTS_REMOVED_PREFIX}{trial.number}"
        if not trial.state.is_finished() or trial.number in kept_numbers or key in done:
            continue
        gone = sorted(artifact_ids(trial) - keep_ids)
        if not gone:
            continue
        for artifact_id in gone:
            with contextlib.suppress(ArtifactNotFound):  # another worker was first
                store.remove(artifact_id)
        study._storage.set_study_system_attr(study._study_id, key, gone)
        removed += len(gone)
    if removed:
        log.info("top_n_artifacts=%d: removed %d artifacts of batch %s", n, removed, batch_id)
    return removed
