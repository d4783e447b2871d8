"""The operator's token bookkeeping (`storage-proxy token issue|list|revoke`): names that are
exactly what they look like, ids that never collide, scopes, expiry and last use."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
import redis

from optuna_grpc_storage.protocol.errors import RequestError
from optuna_grpc_storage.protocol.names import check_user
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from storage_proxy.redis.client import connect
from storage_proxy.testing import proxy_command
from storage_proxy.tokens import TokenRegistry, digest
from tests.conftest import RawClient, issue_token

T = TypeVar("T")
ENTRY = json.dumps({"op_code": 0, "worker_id": "w", "study_name": "s",
                    "directions": [1]}).encode()


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(proxy_command(*args), capture_output=True, text=True, timeout=60,
                          input=stdin)


@pytest.mark.parametrize("name", ["alice\n", "alice\r\n", "\nalice", "ali\nce", "alice "])
def test_a_user_name_is_all_of_it(name: str) -> None:
    """`re.match` with `$` took "alice\\n" for "alice": it showed as the plain name in `token
    list` and survived `token revoke --user alice`."""
    with pytest.raises(RequestError, match="invalid user name"):
        check_user(name)


def test_token_issue_refuses_a_name_with_a_newline(redis_server) -> None:
    out = run("token", "issue", "--user", "alice\n", "--redis-url", redis_server.url)
    assert out.returncode == 2 and "invalid user name" in out.stderr
    assert "ogs_" not in out.stdout


def registry_call(redis_url: str, action: Callable[[TokenRegistry], Awaitable[T]]) -> T:
    async def go() -> T:
        client = connect(redis_url)
        try:
            return await action(TokenRegistry(client))
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_an_id_drawn_twice_is_drawn_again(redis_server, monkeypatch) -> None:
    """Two tokens that drew the same 4-byte id: the second overwrote the id's entry, so the
    first stayed valid but vanished from `token list` and survived `revoke --user`."""
    real = secrets.token_hex
    draws = iter(["c0111de5c0111de5"] * 2)
    monkeypatch.setattr(secrets, "token_hex", lambda n=32: next(draws, None) or real(n))
    user = "u" + uuid.uuid4().hex[:12]

    async def two(registry: TokenRegistry) -> tuple[list[str], list[str], int, list[object]]:
        first = (await registry.issue(user))[1]
        second = (await registry.issue(user))[1]
        listed = [t.token_id for t in await registry.list() if t.user == user]
        revoked = await registry.revoke(user=user)
        return [first, second], listed, revoked, [await registry.lookup(first),
                                                  await registry.lookup(second)]

    (first, second), listed, revoked, after = registry_call(redis_server.url, two)
    assert first.split("_")[1] == "c0111de5c0111de5" != second.split("_")[1]
    assert sorted(listed) == sorted([first.split("_")[1], second.split("_")[1]])
    assert revoked == 2 and after == [None, None]


def test_ids_are_long_enough_never_to_collide(redis_server) -> None:
    token = issue_token(redis_server.url, "u" + uuid.uuid4().hex[:12])
    assert len(token.split("_")[1]) == 16  # 64 random bits


def test_issue_list_show_scope_expiry_namespace_and_last_use(proxy, redis_server) -> None:
    user, team = "u" + uuid.uuid4().hex[:12], "t" + uuid.uuid4().hex[:12]
    out = run("token", "issue", "--user", user, "--namespace", team, "--read-only",
              "--journal", "cnn-*", "--expires", "30d", "--note", "for the CI",
              "--redis-url", redis_server.url)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert "read-only, journals cnn-*, until" in out.stderr and team in out.stderr
    listed = run("token", "list", "--json", "--redis-url", redis_server.url)
    assert token not in listed.stdout
    row, = [r for r in json.loads(listed.stdout) if r["user"] == user]
    assert row["namespace"] == team and row["read_only"] and row["journal"] == "cnn-*"
    assert 29.9 * 86400 < row["expires"] - row["created"] <= 30 * 86400
    assert row["note"] == "for the CI" and row["last_used"] is None and not row["expired"]
    who = RawClient(proxy.endpoint, token).WhoAmI(pb.WhoAmIRequest())
    assert (who.namespace, who.user, who.token_id) == (team, user, row["id"])
    assert who.scope.read_only and who.scope.journal_pattern == "cnn-*"
    listed = json.loads(run("token", "list", "--json", "--redis-url", redis_server.url).stdout)
    used = next(r["last_used"] for r in listed if r["user"] == user)
    assert used is not None and abs(used - time.time()) < 60
    text = run("token", "list", "--redis-url", redis_server.url).stdout
    line, = [ln for ln in text.splitlines() if user in ln]
    assert team in line and "read-only, journals cnn-*" in line and "for the CI" in line


def test_last_use_is_written_at_most_once_a_minute_per_process(redis_server) -> None:
    """A lookup (one per token per --auth-cache-seconds per process) is one GET; the last use
    is written only when this process has not written it within the minute."""
    token = issue_token(redis_server.url, "u" + uuid.uuid4().hex[:12])
    token_id = token.split("_")[1]
    r = redis.Redis.from_url(redis_server.url)

    def stamp() -> float:
        return float(r.hget("ogs:{auth}:used", token_id))

    async def twice(registry: TokenRegistry) -> tuple[float, float]:
        await registry.lookup(token)
        first = stamp()
        r.hset("ogs:{auth}:used", token_id, first - 30)
        await registry.lookup(token)  # the same process, within the minute: no write
        return first, stamp()

    first, second = registry_call(redis_server.url, twice)
    assert abs(first - time.time()) < 60 and second == first - 30
    registry_call(redis_server.url, lambda reg: reg.lookup(token))  # another process
    assert stamp() >= first


def test_a_token_stored_before_scopes_keeps_full_access(proxy, redis_server) -> None:
    """Records written by the previous version ({"user", "id", "created"}, no namespace or
    scope) keep working, with every right they had."""
    user, token_id = "u" + uuid.uuid4().hex[:12], secrets.token_hex(4)
    token = f"ogs_{token_id}_{secrets.token_urlsafe(32)}"
    r = redis.Redis.from_url(redis_server.url)
    r.set("ogs:{auth}:token:" + digest(token),
          json.dumps({"user": user, "id": token_id, "created": time.time()}))
    r.hset("ogs:{auth}:ids", token_id, digest(token))
    client = RawClient(proxy.endpoint, token)
    who = client.WhoAmI(pb.WhoAmIRequest())
    assert who.namespace == user and not who.scope.read_only and not who.scope.journal_pattern
    client.AppendLogs(pb.AppendLogsRequest(journal="old", entries=[ENTRY]))
    assert [j.name for j in client.ListJournals(pb.ListJournalsRequest()).journals] == ["old"]
    listed = json.loads(run("token", "list", "--json", "--redis-url", redis_server.url).stdout)
    row, = [t for t in listed if t["id"] == token_id]
    assert row["namespace"] == user and row["expires"] is None and not row["read_only"]
    assert run("token", "revoke", "--user", user, "--redis-url", redis_server.url).returncode == 0
    assert r.get("ogs:{auth}:token:" + digest(token)) is None


def test_token_issue_refuses_bad_scopes(redis_server) -> None:
    for flags, message in ((["--expires", "soon"], "invalid duration"),
                           (["--expires=-1d"], "invalid duration"),
                           (["--expires", "0s"], "invalid duration"),
                           (["--journal", "a/b"], "invalid journal pattern"),
                           (["--namespace", "Team!"], "invalid user name"),
                           (["--note", "a\nb"], "printable")):
        out = run("token", "issue", "--user", "alice", *flags, "--redis-url", redis_server.url)
        assert out.returncode == 2 and message in out.stderr, (flags, out.stderr)
        assert "ogs_" not in out.stdout


def test_revoke_by_namespace_takes_the_team(redis_server) -> None:
    team = "t" + uuid.uuid4().hex[:12]
    for user in ("ann", "ben"):
        issue_token(redis_server.url, user, namespace=team)
    out = run("token", "revoke", "--namespace", team, "--redis-url", redis_server.url)
    assert out.returncode == 0 and "revoked 2" in out.stdout
