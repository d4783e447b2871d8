"""The thin controller: create a study from a notebook, launch its trials elsewhere, watch.

    ac = Controller(token, endpoint="proxy:13000")            # or AIAutoController(token)
    study = ac.create_study("cnn", direction="minimize", sampler=TPESampler(seed=1))
    name = study.optimize(objective, n_trials=100, parallelism=4)  # once one trial finished
    study.wait()                                              # progress bar
    best = study.get_study().best_trial

The controller holds no state of its own: the study, its sampler and pruner (as specs), every
optimize call and every trial live in the journal, so any process with the token sees the
same thing, and a notebook that restarts picks up where it was.
"""

from __future__ import annotations

import os
import tempfile
import threading
import warnings
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, ClassVar

import optuna

from optuna_grpc_storage.protocol.scopes import parse_duration
from optuna_grpc_storage.runner.attrs import PRUNER_ATTR, SAMPLER_ATTR
from optuna_grpc_storage.runner.batch import (
    DEFAULT_GRACE_PERIOD,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_MAX_RETRIES,
)
from optuna_grpc_storage.runner.launchers.base import Launch, Launcher
from optuna_grpc_storage.runner.launchers.local import LocalLauncher
from optuna_grpc_storage.runner.local_study import ControllerStorage
from optuna_grpc_storage.runner.spec_forms import spec_of
from optuna_grpc_storage.runner.study import StudyWrapper
from optuna_grpc_storage.storage.artifacts import GrpcArtifactStore, labels_of
from optuna_grpc_storage.storage.client import JournalClient
from optuna_grpc_storage.storage.connection import Connection, resolve, shipping
from optuna_grpc_storage.storage.tls import PEM

DASHBOARD_ENV = "OPTUNA_GRPC_STORAGE_DASHBOARD_URL"
# AIAuto's workspace settings: its server sizes a per-user workspace; here the operator does.
AIAUTO_WORKSPACE_OPTIONS = ("storage_size", "artifact_store_size", "shared_cache_dir",
                            "shared_cache_size")


class Controller:
    """One per (endpoint, token): `Controller(token)` twice gives the same object.

    The token and endpoint default to OPTUNA_GRPC_STORAGE_TOKEN / _ENDPOINT; the token is
    checked against the proxy at once. `launcher` starts the workers (default LocalLauncher:
    processes on this machine; KubernetesLauncher: an indexed Job). `dashboard_url` (default
    $OPTUNA_GRPC_STORAGE_DASHBOARD_URL) may contain {study_name}. The workers send a heartbeat
    every `heartbeat_interval` seconds; a trial without one for `grace_period` seconds is
    failed and retried, at most `max_retries` times. `tls_ca`, `tls_cert`, `tls_key`: as for
    GrpcJournalStorage (the workers take theirs from OPTUNA_GRPC_STORAGE_TLS_* variables).
    """

    CONNECT_DEADLINE = 10.0  # seconds to reach the proxy at construction
    _instances: ClassVar[dict[tuple[str, str | None], Controller]] = {}
    _instances_lock = threading.Lock()

    def __new__(cls, token: str | None = None, endpoint: str | None = None,
                launcher: Launcher | None = None, *, tls_ca: PEM | None = None,
                tls_cert: PEM | None = None, tls_key: PEM | None = None,
                **config: Any) -> Controller:
        endpoint, token = resolve(endpoint, token)
        tls = {"tls_ca": tls_ca, "tls_cert": tls_cert, "tls_key": tls_key}
        with cls._instances_lock:
            existing = cls._instances.get((endpoint, token))
            if existing is not None:
                existing._configure(launcher, **config)
                return existing
            controller = super().__new__(cls)
            controller._connect(token, endpoint, tls)
            controller._configure(launcher or LocalLauncher(), **config)
            cls._instances[(endpoint, token)] = controller
            return controller

    def __init__(self, token: str | None = None, endpoint: str | None = None,
                 launcher: Launcher | None = None, *, tls_ca: PEM | None = None,
                 tls_cert: PEM | None = None, tls_key: PEM | None = None,
                 **config: Any) -> None:
        """Everything happens in __new__, which may return an existing controller."""

    def _connect(self, token: str | None, endpoint: str, tls: dict[str, Any]) -> None:
        # A short deadline: a notebook user wants "wrong address" in seconds, not a minute.
        self._tls = tls
        check = JournalClient(Connection(endpoint, token, timeout=self.CONNECT_DEADLINE,
                                         retry_deadline=self.CONNECT_DEADLINE, **tls),
                              use_stream=False)
        try:
            self.namespace = check.who_am_i().namespace  # AuthenticationError, Unavailable
        finally:
            check.close()
        self.endpoint, self._token = endpoint, token
        # Every batch this controller launched, by name: any wrapper of the study (a later
        # create_study() of the same name, say) watches its workers (study.py).
        self.launches: dict[str, Launch] = {}
        self.dead_since: dict[str, float] = {}

    def _configure(self, launcher: Launcher | None = None, *, journal: str | None = None,
                   dashboard_url: str | None = None,
                   heartbeat_interval: float | None = None, grace_period: float | None = None,
                   max_retries: int | None = None, **aiauto: Any) -> None:
        """Settings given (again) replace the current ones; the others stay."""
        unknown = sorted(set(aiauto) - set(AIAUTO_WORKSPACE_OPTIONS))
        if unknown:
            raise TypeError(f"Controller() got unexpected keyword arguments {unknown}")
        if aiauto:
            warnings.warn(f"{sorted(aiauto)}: AIAuto's workspace settings do not apply here "
                          "(the operator sizes the proxy's storage); ignored", stacklevel=4)
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
            self.storage = ControllerStorage(self.endpoint, self._token, self.journal,
                                             **self._tls)

    def __repr__(self) -> str:
        return f"Controller(endpoint={self.endpoint!r}, namespace={self.namespace!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        """A Controller travels as its endpoint and token (none when shipped to workers: the
        token then comes from their environment) and becomes that process's Controller."""
        return (Controller, (None if shipping() else self._token, self.endpoint))

    def create_study(self, study_name: str, direction: str | Sequence[str] | None = None,
                     directions: Sequence[str] | None = None, sampler: Any = None,
                     pruner: Any = None, load_if_exists: bool = True) -> StudyWrapper:
        """Create (or load) the study and record its sampler and pruner with it, so every
        worker and every later `get_study()` gets them back. `direction` given as a list means
        `directions` (AIAuto's multi-objective form). The sampler and pruner are Optuna's own
        objects or AIAuto's dicts ({"cls": "TPESampler", "kwargs": {...}}); anything else is
        a ValueError. Left out, the ones recorded before stay (Optuna's defaults for a new
        study). A study that exists with other directions than those given is a ValueError."""
        if direction is not None and directions is not None:
            raise ValueError("pass direction or directions, not both")
        if isinstance(direction, (list, tuple)):
            if not direction:
                raise ValueError("direction given as a list needs at least one direction")
            direction, directions = None, list(direction)
        if not isinstance(study_name, str) or not study_name:
            raise ValueError("study_name must be a non-empty string")
        sampler_spec = spec_of(sampler, "the sampler") if sampler is not None else None
        pruner_spec = spec_of(pruner, "the pruner") if pruner is not None else None
        study = optuna.create_study(
            storage=self.storage, study_name=study_name, load_if_exists=load_if_exists,
            direction=direction, directions=directions,
        )
        asked = [direction] if direction is not None else directions
        if asked is not None:
            _same_directions(study, [optuna.study.StudyDirection[d.upper()]
                                     if isinstance(d, str) else d for d in asked])
        for key, spec in ((SAMPLER_ATTR, sampler_spec), (PRUNER_ATTR, pruner_spec)):
            if spec is not None:
                self.storage.set_study_system_attr(study._study_id, key, spec)
        return StudyWrapper(self, study_name)

    def share_token(self, *, expires: str | float | timedelta, journal: str | None = None,
                    read_only: bool = False, note: str = "") -> str:
        """A new token for a colleague or a CI job: of this namespace, never granting more
        than this controller's token (`journal` a name or a pattern like ``cnn-*`` within
        its journals, read-only if asked, and `expires` -- "7d", seconds or a timedelta, at
        most 90 days -- no later than it). It is shown only here; revoking this controller's
        token revokes it too."""
        seconds = expires.total_seconds() if isinstance(expires, timedelta) else \
            parse_duration(expires) if isinstance(expires, str) else float(expires)
        client = JournalClient(Connection(self.endpoint, self._token), use_stream=False)
        try:
            return str(client.share_token(seconds, journal, read_only, note).token)
        finally:
            client.close()

    def study(self, study_name: str) -> StudyWrapper:
        """The wrapper of an existing study (KeyError if there is none)."""
        self.storage.get_study_id_from_name(study_name)
        return StudyWrapper(self, study_name)

    # -- artifacts (AIAuto's names) ----------------------------------------------------------

    def get_storage(self) -> ControllerStorage:
        return self.storage

    def get_artifact_store(self) -> GrpcArtifactStore:
        """Optuna's ArtifactStore on this proxy and token, from the notebook and from inside
        an objective alike (optuna.artifacts.upload_artifact / download_artifact)."""
        if getattr(self, "_artifact_store", None) is None:
            self._artifact_store = GrpcArtifactStore(self.endpoint, self._token, **self._tls)
        return self._artifact_store

    def get_artifact_tmp_dir(self) -> str:
        """A directory of this process for files to upload (AIAuto's)."""
        if getattr(self, "_tmp_dir", None) is None:
            self._tmp_dir = tempfile.mkdtemp(prefix="ai_auto_tmp_")
        return self._tmp_dir

    def upload_artifact(self, trial: optuna.Trial | optuna.trial.FrozenTrial,
                        file_path: str | os.PathLike[str]) -> str:
        """Upload the file as an artifact of the trial (optuna.artifacts.upload_artifact) and
        set the trial's user attribute `artifact_id` to its id, as AIAuto does; the id."""
        store = self.get_artifact_store().labelled(**vars(labels_of(trial)))
        storage = getattr(trial, "storage", None) or self.storage
        artifact_id = optuna.artifacts.upload_artifact(
            artifact_store=store, storage=storage, study_or_trial=trial,
            file_path=os.fspath(file_path))
        storage.set_trial_user_attr(trial._trial_id, "artifact_id", artifact_id)
        return artifact_id


AIAutoController = Controller  # AIAuto's name: the same class, the same one-per-token rule


def _same_directions(study: optuna.Study, asked: list[optuna.study.StudyDirection]) -> None:
    """A loaded study must have the directions asked for: optimizing a maximize study with
    a minimize objective would go the wrong way without a word."""
    if list(study.directions) != asked:
        have = [d.name.lower() for d in study.directions]
        raise ValueError(f"study {study.study_name!r} exists with direction(s) {have}, not "
                         f"{[d.name.lower() for d in asked]}: use another study_name, or "
                         "delete it first (optuna.delete_study(study_name=..., "
                         "storage=controller.storage))")
