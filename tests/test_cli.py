"""The operator's commands: serve (embedded Redis, --help), token issue/list/revoke."""

from __future__ import annotations

import re
import subprocess

import optuna
import pytest

from optuna_grpc_storage import AuthenticationError, GrpcJournalStorage
from storage_proxy.config import env_name
from storage_proxy.testing import ProxyProcess, proxy_command


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(proxy_command(*args), capture_output=True, text=True, timeout=60)


def test_serve_help_documents_every_flag_with_env_and_default() -> None:
    out = run("serve", "--help").stdout
    for flag in ("--host", "--port", "--redis-url", "--data-dir", "--auth", "--grace-seconds",
                 "--max-entry-bytes", "--max-batch-bytes"):
        assert flag in out
    assert "13000" in out
    flat = " ".join(out.split())
    flags = re.findall(r"^  (--[a-z-]+)", out, flags=re.M)
    assert len(flags) >= 16
    for flag in flags:
        assert env_name(flag) in flat.replace("- ", "-").replace("_ ", "_"), flag


def test_embedded_redis_tokens_and_a_study(tmp_path) -> None:
    data = tmp_path / "data"
    with ProxyProcess(data_dir=data) as proxy:
        head = proxy.log_path.read_text().splitlines()[0]
        assert "embedded Redis" in head and str(data.resolve()) in head
        issued = run("token", "issue", "--user", "alice", "--data-dir", str(data))
        assert issued.returncode == 0, issued.stderr
        token = issued.stdout.strip().splitlines()[-1]
        assert token.startswith("ogs_") and "shown only once" in issued.stderr
        listed = run("token", "list", "--data-dir", str(data)).stdout
        assert "alice" in listed and token not in listed
        storage = GrpcJournalStorage(proxy.endpoint, token=token)
        optuna.create_study(study_name="s", storage=storage).optimize(
            lambda t: t.suggest_float("x", 0, 1), n_trials=3)
        token_id = token.split("_")[1]
        assert run("token", "revoke", token_id, "--data-dir", str(data)).returncode == 0
        assert run("token", "revoke", token_id, "--data-dir", str(data)).returncode == 1
    assert proxy.proc is None
    assert not (data / "redis.sock").exists()  # the embedded Redis stopped with the proxy
    assert (data / "appendonly.aof").exists() or (data / "appendonlydir").exists()
    # Data and tokens survive a restart on the same data dir; the revoked token stays revoked.
    with ProxyProcess(data_dir=data) as proxy:
        with pytest.raises(AuthenticationError):
            GrpcJournalStorage(proxy.endpoint, token=token)
        token2 = proxy.issue_token("alice")
        study = optuna.load_study(study_name="s", storage=GrpcJournalStorage(proxy.endpoint,
                                                                             token=token2))
        assert len(study.trials) == 3


def test_token_issue_refuses_bad_user_names(tmp_path) -> None:
    out = run("token", "issue", "--user", "Bad/Name", "--data-dir", str(tmp_path / "d"))
    assert out.returncode == 2 and "invalid user name" in out.stderr


def test_auth_none_serves_one_namespace_and_warns(tmp_path) -> None:
    with ProxyProcess(data_dir=tmp_path, auth="none") as proxy:
        assert "--auth none" in proxy.log_tail()
        storage = GrpcJournalStorage(proxy.endpoint)
        assert storage.grpc_backend.client.who_am_i().namespace == "local"
        assert not storage.grpc_backend.client.who_am_i().auth_required


def test_sigterm_exits_zero(tmp_path) -> None:
    proxy = ProxyProcess(data_dir=tmp_path)
    proxy.start()
    assert proxy.stop() == 0
    assert "stopped" in proxy.log_tail()


def run_in(cwd, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(proxy_command(*args), capture_output=True, text=True, timeout=60,
                          cwd=cwd)


def error_line(out: subprocess.CompletedProcess[str]) -> str:
    (line,) = [x for x in out.stderr.splitlines() if x.startswith("error:")]
    assert "Traceback" not in out.stderr
    return line


def test_token_issue_refuses_a_redis_no_running_proxy_uses(tmp_path) -> None:
    """Issue 17, item 3: `token issue` from another directory made a new embedded Redis there
    and printed a token the running proxy refused."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with ProxyProcess(data_dir=tmp_path / "data") as proxy:
        out = run_in(elsewhere, "token", "issue", "--user", "me")
        assert out.returncode == 1 and out.stdout == ""
        line = error_line(out)
        assert "no storage-proxy is running" in line and "--data-dir" in line, line
        assert str(elsewhere / "storage-proxy-data") in line
        assert not (elsewhere / "storage-proxy-data").exists()  # nothing was created
        # The right Redis under another key prefix is as wrong: no proxy reads it.
        out = run_in(elsewhere, "token", "issue", "--user", "me", "--data-dir",
                     str(tmp_path / "data"), "--key-prefix", "other")
        assert out.returncode == 1 and "key prefix 'other'" in error_line(out)
        # The proxy's own directory works, from anywhere.
        out = run_in(elsewhere, "token", "issue", "--user", "me", "--data-dir",
                     str(tmp_path / "data"))
        assert out.returncode == 0, out.stderr
        storage = GrpcJournalStorage(proxy.endpoint, token=out.stdout.split()[-1])
        assert storage.grpc_backend.client.who_am_i().namespace == "me"


def test_token_commands_without_a_proxy_warn_and_no_proxy_check_prepares_one(
        redis_server, tmp_path) -> None:
    """No proxy uses key prefix "later" on this Redis: issue refuses, list warns, and
    --no-proxy-check issues a token that a proxy started afterwards accepts."""
    url = ("--redis-url", redis_server.url, "--key-prefix", "later")
    refused = run_in(tmp_path, "token", "issue", "--user", "early", *url)
    assert refused.returncode == 1 and "--no-proxy-check" in error_line(refused)
    listed = run_in(tmp_path, "token", "list", *url)
    assert listed.returncode == 0 and "warning: no running storage-proxy" in listed.stderr
    issued = run_in(tmp_path, "token", "issue", "--user", "early", "--no-proxy-check", *url)
    assert issued.returncode == 0, issued.stderr
    with ProxyProcess(redis_server.url, data_dir=tmp_path / "p", key_prefix="later") as proxy:
        storage = GrpcJournalStorage(proxy.endpoint, token=issued.stdout.split()[-1])
        assert storage.grpc_backend.client.who_am_i().namespace == "early"
        listed = run_in(tmp_path, "token", "list", *url)
        assert listed.returncode == 0 and "warning" not in listed.stderr
    # The proxy removed itself from the set when it stopped.
    assert run_in(tmp_path, "token", "issue", "--user", "late", *url).returncode == 1


def test_a_proxy_is_seen_again_as_soon_as_its_redis_is_back(tmp_path) -> None:
    """After an outage longer than presence.FRESH the proxy's record was stale until its next
    update, INTERVAL later: `token issue` refused a Redis a proxy served (seen in
    test_redis_cluster under load). A failed update is retried within a second."""
    import asyncio

    from storage_proxy import presence
    from storage_proxy.process.embedded_redis import RedisProcess
    from storage_proxy.redis.client import connect

    server = RedisProcess(tmp_path / "redis", appendonly=False)  # not running yet

    async def go() -> list[str]:
        client = connect(server.url)
        task = asyncio.create_task(presence.announce(client, "ogs", "me", interval=120))
        try:
            await asyncio.sleep(1.5)  # its first update failed: Redis is down
            await asyncio.to_thread(server.start)
            for _ in range(40):  # 20 s, far below the 120 s of a missed update
                if found := await presence.running(client, "ogs"):
                    return found
                await asyncio.sleep(0.5)
            return []
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.aclose()

    try:
        assert asyncio.run(go()) == ["me"]
    finally:
        server.stop()
