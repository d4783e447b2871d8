"""Secrets stay secret (issue 18): the objective a launcher ships carries no token (the worker's
storage takes it from its environment), plain pickling keeps it, and neither the Redis password
nor a token is on the command line of any process the proxy starts or in its logs."""

from __future__ import annotations

import base64
import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest

from optuna_grpc_storage import GrpcArtifactStore, GrpcJournalStorage
from optuna_grpc_storage.runner.launchers import KubernetesLauncher
from optuna_grpc_storage.runner.objective import pack_objective, unpack_objective
from optuna_grpc_storage.storage.connection import TOKEN_ENV
from storage_proxy.process.embedded_redis import RedisProcess
from storage_proxy.testing import ProxyProcess, descendants
from tests.test_kubernetes import make_batch

optuna.logging.set_verbosity(optuna.logging.WARNING)
ROOT = Path(__file__).resolve().parent.parent


def an_objective(storage: GrpcJournalStorage,
                 store: GrpcArtifactStore) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        study = optuna.load_study(study_name="shipped", storage=storage)
        assert store.connection.token
        return trial.suggest_float("x", 0, 1) + len(study.trials)
    return objective


def test_the_shipped_objective_carries_no_token(proxy: ProxyProcess, token: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    storage = GrpcJournalStorage(proxy.endpoint, token, "shipping")
    store = GrpcArtifactStore(proxy.endpoint, token)
    optuna.create_study(study_name="shipped", storage=storage)
    packed = pack_objective(an_objective(storage, store))
    assert token.encode() not in packed
    for manifest in KubernetesLauncher().manifests(make_batch(objective=packed, token=token)):
        if manifest["kind"] == "ConfigMap":
            text = json.dumps(manifest)
            assert token not in text
            assert token.encode() not in base64.b64decode(manifest["binaryData"]["objective.pkl"])
        else:
            assert manifest["kind"] in ("Secret", "Job")
    # The worker's copy takes the token from its environment (the launcher puts it there).
    monkeypatch.setenv(TOKEN_ENV, token)
    objective = unpack_objective(packed)
    study = optuna.load_study(study_name="shipped", storage=storage)
    study.optimize(objective, n_trials=2)
    assert len(study.trials) == 2


def test_plain_pickling_keeps_the_token(proxy: ProxyProcess, token: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    storage = GrpcJournalStorage(proxy.endpoint, token, "plain-pickle")
    copy = pickle.loads(pickle.dumps(storage))  # multiprocessing, n_jobs, Pool arguments
    assert copy.grpc_backend.client.connection.token == token
    assert copy.grpc_backend.client.who_am_i().namespace


def test_no_password_or_token_on_a_command_line_or_in_the_logs(tmp_path: Path) -> None:
    password = "p4ss-" + os.urandom(8).hex()
    redis = RedisProcess(tmp_path / "redis", appendonly=False, password=password)
    redis.start()
    secret = tmp_path / "redis-password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    proxy = ProxyProcess(redis.url, data_dir=tmp_path / "proxy", redis_password_file=str(secret),
                         extra_args=("--workers", "2"))
    try:
        proxy.start()
        token = proxy.issue_token("secretive")
        storage = GrpcJournalStorage(proxy.endpoint, token, "secrets")
        optuna.create_study(study_name="s", storage=storage).optimize(
            lambda t: t.suggest_float("x", 0, 1), n_trials=3)
        with pytest.raises(Exception):  # noqa: B017 (a refused token is logged, not shown)
            GrpcJournalStorage(proxy.endpoint, token[:-4] + "AAAA", "x", retry_deadline=1)
        assert proxy.proc is not None
        processes = [proxy.proc.pid, *descendants(proxy.proc.pid), redis.proc.pid]
        assert len(processes) >= 4  # the supervisor, two server processes, Redis
        for pid in processes:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            assert password.encode() not in cmdline, cmdline
            assert token.encode() not in cmdline, cmdline
        logs = proxy.log_path.read_text() + redis.log_tail(1000)
        assert password not in logs and token not in logs
    finally:
        proxy.stop()
        redis.stop()


def test_the_password_file_is_needed_and_a_wrong_one_is_refused(tmp_path: Path) -> None:
    redis = RedisProcess(tmp_path / "redis", appendonly=False, password="right")
    redis.start()
    try:
        wrong = tmp_path / "pwfile"
        wrong.write_text("zz-wrong-pw")
        out = subprocess.run([sys.executable, "-m", "storage_proxy", "token", "issue", "--user",
                              "u", "--redis-url", redis.url, "--redis-password-file",
                              str(wrong)], capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and "zz-wrong-pw" not in out.stderr + out.stdout
        missing = subprocess.run([sys.executable, "-m", "storage_proxy", "token", "issue",
                                  "--user", "u", "--redis-url", redis.url,
                                  "--redis-password-file", str(tmp_path / "nope")],
                                 capture_output=True, text=True, timeout=60)
        assert missing.returncode != 0 and "--redis-password-file" in missing.stderr
    finally:
        redis.stop()
