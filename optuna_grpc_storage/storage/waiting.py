"""Which trials of a study are WAITING, without looking at every trial.

Every `study.optimize` trial starts by asking the storage for the study's WAITING trials
(enqueued ones run first). Optuna's journal replay answers by scanning all trials of the study,
so each trial costs more as the study grows: a 20,000-trial study spends more time in that scan
than in the rest of a cheap trial. A trial is WAITING when it is created so (enqueue_trial,
retries, add_trial) or, in principle, set so later; both are visible in the replayed entries.
This index keeps the candidates and drops them once they are seen in another state.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from optuna.storages.journal._storage import JournalOperation, JournalStorageReplayResult
from optuna.trial import FrozenTrial, TrialState

WAITING = int(TrialState.WAITING)


class WaitingIndex:
    def __init__(self) -> None:
        self._candidates: dict[int, set[int]] = {}  # study id -> trial ids that may be WAITING

    def rebuild(self, replay: JournalStorageReplayResult) -> None:
        """Index a whole replayed state (after a snapshot was restored)."""
        self._candidates = {}
        self.add_new_trials(replay, 0)

    def add_new_trials(self, replay: JournalStorageReplayResult, first_new: int) -> None:
        """Index trials [first_new, ...) that the replay has just created."""
        for trial_id in range(first_new, len(replay._trials)):
            if replay._trials[trial_id].state == TrialState.WAITING:
                self._add(replay, trial_id)

    def add_set_to_waiting(self, replay: JournalStorageReplayResult,
                           logs: Iterable[dict[str, Any]]) -> None:
        """Index trials that applied entries set back to WAITING."""
        for log in logs:
            if (log.get("op_code") == JournalOperation.SET_TRIAL_STATE_VALUES
                    and log.get("state") == WAITING and log.get("trial_id") in replay._trials):
                self._add(replay, log["trial_id"])

    def waiting(self, replay: JournalStorageReplayResult, study_id: int) -> list[FrozenTrial]:
        """The study's WAITING trials in trial order, as get_all_trials would return them."""
        trials = replay._trials
        still = sorted(t for t in self._candidates.get(study_id, ())
                       if trials[t].state == TrialState.WAITING)
        self._candidates[study_id] = set(still)
        return [trials[t] for t in still]

    def _add(self, replay: JournalStorageReplayResult, trial_id: int) -> None:
        study_id = replay._trial_id_to_study_id[trial_id]
        self._candidates.setdefault(study_id, set()).add(trial_id)


def only_waiting(states: Any) -> bool:
    """True if a get_all_trials `states` argument asks for exactly the WAITING trials."""
    return isinstance(states, (tuple, list, set, frozenset)) and set(states) == {
        TrialState.WAITING}
