"""What runs inside each benchmark worker process: one storage, one trivial objective."""

from __future__ import annotations

import time
import warnings
from typing import Any

import optuna

optuna.logging.set_verbosity(optuna.logging.ERROR)
# JournalRedisBackend and GrpcStorageProxy say they are experimental once per process
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def objective(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", -10, 10) ** 2


def make_storage(spec: dict[str, Any]) -> optuna.storages.BaseStorage:
    """Build a storage from a picklable description (kind + arguments)."""
    kind = spec["kind"]
    if kind == "file":
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(spec["path"]))
    if kind == "redis":
        from optuna.storages.journal import JournalRedisBackend

        return optuna.storages.JournalStorage(JournalRedisBackend(spec["url"],
                                                                  prefix=spec["prefix"]))
    if kind == "optuna-grpc-proxy":
        return optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=spec["port"])
    if kind == "ours":
        from optuna_grpc_storage import GrpcJournalStorage

        return GrpcJournalStorage(spec["endpoint"], token=spec.get("token"),
                                  journal=spec.get("journal", "default"),
                                  **spec.get("options", {}))
    raise ValueError(kind)


def calls_of(storage: optuna.storages.BaseStorage) -> dict[str, int]:
    backend = getattr(storage, "grpc_backend", None)
    return dict(backend.calls) if backend is not None else {}


def timed_worker(spec: dict[str, Any], study_name: str, duration: float, start: Any,
                 results: Any) -> None:
    """Join the study, wait for the common start, run trials for `duration` seconds."""
    storage = make_storage(spec)
    study = optuna.load_study(study_name=study_name, storage=storage,
                              sampler=optuna.samplers.RandomSampler())
    study.optimize(objective, n_trials=1)  # warm up connections and the replayed state
    before = calls_of(storage)
    start.wait()
    began = time.perf_counter()
    done = [0]
    study.optimize(objective, timeout=duration, callbacks=[lambda s, t: done.__setitem__(
        0, done[0] + 1)])
    elapsed = time.perf_counter() - began
    after = calls_of(storage)
    results.put({"trials": done[0], "elapsed": elapsed,
                 "calls": {k: after[k] - before.get(k, 0) for k in after}})


def build_worker(spec: dict[str, Any], study_name: str, n_trials: int, results: Any) -> None:
    """One writer building a study; report the time at which each tenth was reached."""
    storage = make_storage(spec)
    study = optuna.load_study(study_name=study_name, storage=storage,
                              sampler=optuna.samplers.RandomSampler())
    marks: list[float] = []
    step = max(n_trials // 10, 1)

    def mark(s: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
        if (t.number + 1) % step == 0:
            marks.append(time.perf_counter())

    began = time.perf_counter()
    study.optimize(objective, n_trials=n_trials, callbacks=[mark])
    results.put({"began": began, "marks": marks, "step": step})


def join_worker(spec: dict[str, Any], study_name: str, results: Any) -> None:
    """A fresh process joining a study: load_study + get_trials, timed after imports."""
    import optuna_grpc_storage  # noqa: F401  (imports are not part of joining)

    began = time.perf_counter()
    study = optuna.load_study(study_name=study_name, storage=make_storage(spec))
    n = len(study.get_trials(deepcopy=False))
    results.put({"seconds": time.perf_counter() - began, "trials": n})


def _cpu_s() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of the process
    return usage.ru_utime + usage.ru_stime


def cpu_worker(spec: dict[str, Any], study_name: str, n_trials: int) -> dict[str, Any]:
    """n_trials in this fresh process: its own CPU up to here (interpreter and optuna), to the
    loaded study (our imports included), then for the trials."""
    loading = _cpu_s()
    storage = make_storage(spec)
    study = optuna.load_study(study_name=study_name, storage=storage,
                              sampler=optuna.samplers.RandomSampler())
    loaded = _cpu_s()
    study.optimize(objective, n_trials=n_trials)
    return {"trials": n_trials, "start_cpu": loading, "load_cpu": loaded - loading,
            "trials_cpu": _cpu_s() - loaded, "calls": calls_of(storage)}


if __name__ == "__main__":  # python -m bench.workers SPEC STUDY N: what the cpu scenario starts
    import json
    import sys

    print(json.dumps(cpu_worker(json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]))))
