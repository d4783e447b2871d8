"""`optuna-grpc-storage status`: every study of a user, as a table or JSON, optionally live.

The counts are those of `StudyWrapper.get_status()` (runner/counting.py), so the shell and
the notebook never disagree, plus the trials still waiting for a worker, the best value
(or the size of the Pareto front) and the last trial start or finish.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

import optuna
from optuna.trial import TrialState

from optuna_grpc_storage.runner.controller import DASHBOARD_ENV
from optuna_grpc_storage.runner.counting import study_status
from optuna_grpc_storage.storage import GrpcJournalStorage
from optuna_grpc_storage.storage.client import JournalClient
from optuna_grpc_storage.storage.connection import Connection

COLUMNS = (("JOURNAL", "journal"), ("STUDY", "study_name"), ("DIRECTION", "direction"),
           ("RUNNING", "count_active"), ("WAITING", "count_waiting"),
           ("COMPLETE", "count_succeeded"), ("PRUNED", "count_pruned"),
           ("FAIL", "count_failed"), ("TOTAL", "count_total"), ("BEST", "best"),
           ("LAST UPDATE", "last_update"))
NUMERIC = {"count_active", "count_waiting", "count_succeeded", "count_pruned", "count_failed",
           "count_total"}


class Overview:
    """The studies of some or all journals of a namespace. Keeps one storage per journal, so
    each refresh only reads what was appended since the last one."""

    def __init__(self, endpoint: str | None, token: str | None,
                 journals: Sequence[str] | None = None, dashboard_url: str | None = None) -> None:
        self.endpoint, self.token = endpoint, token
        self.journals = list(journals) if journals else None
        self.dashboard_url = dashboard_url if dashboard_url is not None \
            else os.environ.get(DASHBOARD_ENV, "")
        self._storages: dict[str, GrpcJournalStorage] = {}
        self._lister = JournalClient(Connection(endpoint, token), use_stream=False)

    def _journal_names(self) -> list[str]:
        listed = [j.name for j in self._lister.list_journals()]
        return listed if self.journals is None else [j for j in self.journals if j in listed]

    def _storage(self, journal: str) -> GrpcJournalStorage:
        if journal not in self._storages:
            self._storages[journal] = GrpcJournalStorage(self.endpoint, self.token, journal,
                                                         read_staleness=0)
        return self._storages[journal]

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for journal in self._journal_names():
            storage = self._storage(journal)
            for frozen in sorted(storage.get_all_studies(), key=lambda s: s._study_id):
                out.append(study_row(journal, storage, frozen, self.dashboard_url))
        return out


def study_row(journal: str, storage: GrpcJournalStorage, frozen: Any,
              dashboard_url: str = "") -> dict[str, Any]:
    """get_status()'s dict for one study, with journal, directions, waiting and best."""
    trials = storage.get_all_trials(frozen._study_id, deepcopy=False)
    row = {"journal": journal,
           **study_status(frozen.study_name, trials, frozen.system_attrs, dashboard_url)}
    row["directions"] = [d.name.lower() for d in frozen.directions]
    row["count_waiting"] = row["count_total"] - row["count_completed"] - row["count_active"]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    row["best_value"] = row["best_trial"] = None
    row["pareto_front_size"] = None
    if len(frozen.directions) == 1 and complete:
        pick = max if frozen.directions[0] == optuna.study.StudyDirection.MAXIMIZE else min
        best = pick(complete, key=lambda t: t.value)
        row["best_value"], row["best_trial"] = best.value, best.number
    elif complete:
        study = optuna.load_study(study_name=frozen.study_name, storage=storage)
        row["pareto_front_size"] = len(study.best_trials)
    return row


def _cell(row: dict[str, Any], key: str) -> str:
    if key == "direction":
        return ",".join(row["directions"])
    if key == "best":
        if row["best_value"] is not None:
            return f"{row['best_value']:.6g} (#{row['best_trial']})"
        if row["pareto_front_size"] is not None:
            return f"{row['pareto_front_size']} on the Pareto front"
        return "-"
    if key == "last_update":
        at = row["updated_at"]
        return datetime.datetime.fromisoformat(at).strftime("%Y-%m-%d %H:%M:%S") if at else "-"
    return str(row[key])


def render_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no studies yet"
    cells = [[_cell(r, key) for _, key in COLUMNS] for r in rows]
    widths = [max(len(title), *(len(c[i]) for c in cells)) for i, (title, _) in enumerate(COLUMNS)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if COLUMNS[i][1] in NUMERIC else v.ljust(w)
                         for i, (v, w) in enumerate(zip(values, widths, strict=True))).rstrip()

    return "\n".join([line([title for title, _ in COLUMNS]), *(line(c) for c in cells)])


def show(overview: Overview, *, as_json: bool = False, follow: bool = False,
         interval: float = 2.0, out: IO[str] = sys.stdout,
         sleep: Callable[[float], None] = time.sleep) -> int:
    """Print the studies once, or (follow) again whenever they change until interrupted. On
    a terminal the table is redrawn in place; otherwise, and with JSON (one document per
    line), a new one is printed only when something changed."""
    redraw = follow and not as_json and out.isatty()
    last = None
    try:
        while True:
            rows = overview.rows()
            text = json.dumps(rows) if as_json else render_table(rows)
            if redraw:
                stamp = time.strftime("%H:%M:%S")
                out.write(f"\x1b[H\x1b[2J{text}\n\n{stamp}, every {interval:g}s; Ctrl-C stops\n")
            elif text != last:
                if follow and not as_json and last is not None:
                    out.write(f"\n-- {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
                out.write(text + "\n")
            out.flush()
            last = text
            if not follow:
                return 0
            sleep(interval)
    except KeyboardInterrupt:
        return 0
