"""The study and trial system attributes the controller, the workers, the storage and the
user's tools share: every name in one place."""

from __future__ import annotations

from optuna_grpc_storage.storage.journal_storage import HEARTBEAT_LOST_ATTR

BATCH_ATTR = "ogs:batch"  # on each trial of a batch (and on its retries): the batch id
ERROR_ATTR = "ogs:error"  # on a trial whose objective raised: the exception text
SAMPLER_ATTR = "ogs:sampler"  # on the study: specs.describe() of its sampler
PRUNER_ATTR = "ogs:pruner"
BATCH_RECORD_PREFIX = "ogs:batch:"  # on the study, one per optimize call: what was asked
BATCH_FAILED_PREFIX = "ogs:batch-failed:"  # on the study, per batch found unable to finish: why
ARTIFACTS_REMOVED_PREFIX = "ogs:artifacts-removed:"  # on the study, per trial number: the ids
# top_n_artifacts removed (the trial itself is finished, so it cannot be marked)
RETRY_HISTORY_ATTR = "retry_history"  # Optuna's RetryFailedTrialCallback: numbers retried

__all__ = ["ARTIFACTS_REMOVED_PREFIX", "BATCH_ATTR", "BATCH_FAILED_PREFIX",
           "BATCH_RECORD_PREFIX", "ERROR_ATTR", "HEARTBEAT_LOST_ATTR", "PRUNER_ATTR",
           "RETRY_HISTORY_ATTR", "SAMPLER_ATTR"]
