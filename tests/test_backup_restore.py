"""The backup and restore procedure of deploy/README.md, step by step on real processes:
`redis-cli --rdb` takes a point-in-time copy of a running Redis; restoring loads it with AOF
off, turns AOF on (Redis rewrites the AOF from memory) and restarts with AOF as usual."""

from __future__ import annotations

import shutil
import subprocess

import optuna
import redis

from optuna_grpc_storage import GrpcJournalStorage
from storage_proxy.process.embedded_redis import RedisProcess, find_redis_binary
from storage_proxy.testing import ProxyProcess
from tests import workers
from tests.ops_helpers import wait_for


def test_backup_with_redis_cli_rdb_and_restore_into_aof(tmp_path) -> None:
    live = RedisProcess(tmp_path / "live", appendfsync="always")
    live.start()
    with ProxyProcess(live.url, data_dir=tmp_path / "proxy") as proxy:
        token = proxy.issue_token("alice")
        storage = GrpcJournalStorage(proxy.endpoint, token=token)
        study = optuna.create_study(study_name="s", storage=storage)
        study.optimize(workers.quadratic, n_trials=20)

        # Backup: a consistent snapshot of the running Redis, taken over the network.
        backup = tmp_path / "backup.rdb"
        subprocess.run([find_redis_binary("redis-cli"), "-p", str(live.port), "--rdb",
                        str(backup)], check=True, capture_output=True, timeout=60)
        assert backup.stat().st_size > 0
        study.optimize(workers.quadratic, n_trials=10)  # after the backup: not in it
    live.stop()

    # Restore, on an empty volume: load the RDB with AOF off...
    volume = tmp_path / "volume"
    volume.mkdir()
    shutil.copy(backup, volume / "dump.rdb")
    loader = RedisProcess(volume, appendonly=False)
    loader.start()
    with redis.Redis(port=loader.port) as r:
        assert r.dbsize() > 0
        # ... turn AOF on: Redis writes a fresh AOF from what it holds ...
        r.config_set("appendonly", "yes")
        wait_for(lambda: _aof_written(r), what="the AOF rewrite")
    loader.stop()
    (volume / "dump.rdb").unlink()  # from here on only the AOF holds the data

    # ... and start as in production (AOF on). The study is as it was at the backup.
    restored = RedisProcess(volume, port=loader.port, appendonly=True)
    restored.start()
    try:
        with ProxyProcess(restored.url, data_dir=tmp_path / "proxy2") as proxy:
            trials = optuna.load_study(study_name="s", storage=GrpcJournalStorage(
                proxy.endpoint, token=token)).trials  # the token was restored too
            assert [t.number for t in trials] == list(range(20))
            assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    finally:
        restored.stop()


def _aof_written(r: redis.Redis) -> bool:
    info = r.info("persistence")
    return (info["aof_enabled"] == 1 and info["aof_rewrite_in_progress"] == 0
            and info["aof_rewrite_scheduled"] == 0 and info.get("aof_last_bgrewrite_status")
            == "ok")


def test_the_backup_cronjobs_script_takes_a_backup_and_keeps_the_last_days(tmp_path) -> None:
    """deploy/kubernetes/base/redis-backup-cronjob.yaml's own script, run by sh against a
    Redis with a password, as the Job's container would (its env, another host and port)."""
    import os
    import time
    from pathlib import Path

    import yaml

    manifest = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes" / "base" / \
        "redis-backup-cronjob.yaml"
    (container,) = yaml.safe_load(manifest.read_text())["spec"]["jobTemplate"]["spec"][
        "template"]["spec"]["containers"]
    assert container["command"] == ["sh", "-c"]
    live = RedisProcess(tmp_path / "live", appendonly=False)
    live.start()
    try:
        with redis.Redis(port=live.port) as r:
            r.set("ogs:j:{alice/default}:log", "x" * 1000)
            r.config_set("requirepass", "s3cret")
        backups = tmp_path / "backups"
        backups.mkdir()
        old = backups / "redis-2000-01-01T000000Z.rdb"
        old.write_bytes(b"old")
        month_ago = time.time() - 30 * 86400
        os.utime(old, (month_ago, month_ago))
        (backups / "redis-2000-01-02T000000Z.rdb.partial").write_bytes(b"cut short")
        env = {**os.environ, "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(live.port),
               "REDISCLI_AUTH": "s3cret", "BACKUP_DIR": str(backups), "KEEP_DAYS": "7",
               "PATH": f"{Path(find_redis_binary('redis-cli')).parent}:{os.environ['PATH']}"}
        out = subprocess.run(["sh", "-c", container["args"][0]], env=env, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
    finally:
        live.stop()
    (backup,) = backups.iterdir()  # the old one and the partial one are gone
    assert backup.name.startswith("redis-") and backup.suffix == ".rdb"
    assert backup.read_bytes().startswith(b"REDIS")
    restored = tmp_path / "restored"
    restored.mkdir()
    shutil.copy(backup, restored / "dump.rdb")
    loader = RedisProcess(restored, appendonly=False)
    loader.start()
    try:
        with redis.Redis(port=loader.port) as r:  # the password is configuration, not data
            assert r.get("ogs:j:{alice/default}:log") == b"x" * 1000
    finally:
        loader.stop()
