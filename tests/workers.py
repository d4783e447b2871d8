"""Functions run in child processes by the tests (importable, so 'spawn' can find them)."""

from __future__ import annotations

import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)


def quadratic(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -10, 10)
    y = trial.suggest_int("y", 0, 5)
    return (x - 2) ** 2 + y


def optimize(storage: optuna.storages.BaseStorage, study_name: str, n_trials: int) -> int:
    """Run n_trials of `quadratic`; return how many trials this worker ran."""
    study = optuna.load_study(study_name=study_name, storage=storage)
    ran = []
    study.optimize(quadratic, n_trials=n_trials, callbacks=[lambda s, t: ran.append(t.number)])
    return len(ran)


def run_enqueued(storage: optuna.storages.BaseStorage, study_name: str, n_trials: int) -> list:
    """Pop trials (enqueued ones first) and return the (number, x) pairs this worker ran."""
    study = optuna.load_study(study_name=study_name, storage=storage)
    seen = []

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_int("x", 0, 10_000)
        seen.append((trial.number, x))
        return x

    study.optimize(objective, n_trials=n_trials)
    return seen


def optimize_counting(storage, study_name: str, n_trials: int) -> tuple[int, int, int]:
    """Run n_trials of `quadratic`; return (trials, appends, reads) this worker made."""
    study = optuna.load_study(study_name=study_name, storage=storage)
    study.optimize(quadratic, n_trials=n_trials)
    calls = storage.grpc_backend.calls
    return n_trials, calls["append"], calls["read"]


def optimize_hanging(storage: optuna.storages.BaseStorage, study_name: str, marker: str) -> None:
    """Run one trial that announces itself in `marker` and then hangs until killed."""
    import os
    import time

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(600)
        return 0.0

    optuna.load_study(study_name=study_name, storage=storage).optimize(objective, n_trials=1)


def optimize_slowly(storage: optuna.storages.BaseStorage, study_name: str, n_trials: int,
                    seconds: float) -> int:
    """Like optimize, with an objective that takes `seconds`, so faults land mid-study."""
    import time

    def objective(trial: optuna.Trial) -> float:
        value = quadratic(trial)
        time.sleep(seconds)
        return value

    study = optuna.load_study(study_name=study_name, storage=storage)
    ran = []
    study.optimize(objective, n_trials=n_trials, callbacks=[lambda s, t: ran.append(t.number)])
    return len(ran)


def upload_artifacts(endpoint: str, token: str, prefix: str, sizes: list[int]) -> list[str]:
    """Upload one artifact of each size (random bytes); return 'id sha256' of each."""
    import hashlib
    import io
    import os

    from optuna_grpc_storage import GrpcArtifactStore

    store, out = GrpcArtifactStore(endpoint, token), []
    for i, size in enumerate(sizes):
        data = os.urandom(size)
        store.write(f"{prefix}-{i}", io.BytesIO(data))
        out.append(f"{prefix}-{i} {hashlib.sha256(data).hexdigest()}")
    return out


def upload_forever(endpoint: str, token: str, artifact_id: str, started: str) -> None:
    """Start an upload, send a few chunks, say so in the file `started`, then hang (the test
    kills this process mid-upload)."""
    import pathlib
    import time

    import grpc

    from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
    from optuna_grpc_storage.protocol.v1 import journal_pb2_grpc

    def chunks():
        yield pb.ArtifactChunk(info=pb.ArtifactInfo(artifact_id=artifact_id),
                               data=b"x" * (1 << 20))
        for _ in range(2):
            yield pb.ArtifactChunk(data=b"y" * (1 << 20))
        time.sleep(1.0)  # the chunks are on their way
        pathlib.Path(started).write_text("sent")
        time.sleep(3600)

    channel = grpc.insecure_channel(endpoint)
    stub = journal_pb2_grpc.ArtifactServiceStub(channel)
    stub.UploadArtifact(chunks(), metadata=(("authorization", f"Bearer {token}"),))
