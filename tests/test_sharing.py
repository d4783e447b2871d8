"""Self-service sharing: a user with a write token mints a narrower token of their namespace
(ShareToken), from Python (Controller.share_token) or the command line (`optuna-grpc-storage
token share`); it never grants more than the caller's token. And why a token belongs in
the environment, not on a command line."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import grpc
import optuna
import pytest

from optuna_grpc_storage import AuthenticationError, Controller, GrpcJournalStorage
from optuna_grpc_storage.protocol.scopes import Scope
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from storage_proxy import tokens
from storage_proxy.redis.client import connect
from storage_proxy.testing import proxy_command
from storage_proxy.tokens import TokenRegistry, TooManyTokens
from tests.conftest import RawClient, issue_token

ENTRY = json.dumps({"op_code": 0, "worker_id": "w", "study_name": "s",
                    "directions": [1]}).encode()
DAY = 86400


def cli(proxy, token: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPTUNA_GRPC_STORAGE_ENDPOINT": proxy.endpoint}
    env.pop("OPTUNA_GRPC_STORAGE_TOKEN", None)
    if token is not None:
        env["OPTUNA_GRPC_STORAGE_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "optuna_grpc_storage.tools.cli", *args],
                          env=env, capture_output=True, text=True, timeout=120)


def share(client: RawClient, **fields: object) -> pb.ShareTokenResponse:
    return client.ShareToken(pb.ShareTokenRequest(**fields))


def refusal(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value


def test_share_a_study_read_only_from_python(proxy, new_user) -> None:
    user, token = new_user()
    storage = GrpcJournalStorage(proxy.endpoint, token=token, journal="cnn")
    optuna.create_study(study_name="s", storage=storage).optimize(
        lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    shared = Controller(token, endpoint=proxy.endpoint).share_token(
        journal="cnn", read_only=True, expires=timedelta(days=7), note="for bob")
    who = RawClient(proxy.endpoint, shared).WhoAmI(pb.WhoAmIRequest())
    assert (who.namespace, who.user) == (user, user)
    assert who.scope.read_only and who.scope.journal_pattern == "cnn"
    assert abs(who.scope.expires_ms / 1000 - (time.time() + 7 * DAY)) < 60
    bobs = GrpcJournalStorage(proxy.endpoint, token=shared, journal="cnn")
    assert len(optuna.load_study(study_name="s", storage=bobs).trials) == 2
    with pytest.raises(AuthenticationError, match="read-only"):
        optuna.create_study(study_name="other", storage=bobs)
    with pytest.raises(AuthenticationError, match="journals matching 'cnn'"):
        optuna.get_all_study_summaries(GrpcJournalStorage(proxy.endpoint, token=shared,
                                                          journal="default"))


def test_token_share_command_prints_the_token_once(proxy, token) -> None:
    out = cli(proxy, token, "token", "share", "--journal", "cnn", "--read-only",
              "--expires", "7d", "--note", "CI")
    assert out.returncode == 0, out.stderr
    shared = out.stdout.strip()
    assert shared.startswith("ogs_") and len(out.stdout.splitlines()) == 1
    assert "read-only, journals cnn, until" in out.stderr and "shown only once" in out.stderr
    assert shared not in out.stderr
    show = cli(proxy, shared, "token", "show", "--json")
    assert json.loads(show.stdout)["read_only"] and json.loads(show.stdout)["journal"] == "cnn"
    text = cli(proxy, shared, "token", "show").stdout
    assert "read-only, journals cnn, until" in text
    refused = cli(proxy, shared, "token", "share", "--expires", "1d")
    assert refused.returncode == 1 and "this token is read-only" in refused.stderr
    missing = cli(proxy, token, "token", "share", "--journal", "cnn")
    assert missing.returncode == 2 and "--expires" in missing.stderr


def test_a_shared_token_never_grants_more_than_its_parent(proxy, redis_server) -> None:
    user = "u" + uuid.uuid4().hex[:12]
    parent = RawClient(proxy.endpoint, issue_token(
        redis_server.url, user, scope=Scope(journal="cnn-*", expires=time.time() + 2 * DAY)))
    cases = [
        ({"expires_seconds": 0}, grpc.StatusCode.INVALID_ARGUMENT, "needs an expiry"),
        ({"expires_seconds": 91 * DAY}, grpc.StatusCode.INVALID_ARGUMENT, "90 days"),
        ({"expires_seconds": DAY, "journal_pattern": "rnn"},
         grpc.StatusCode.PERMISSION_DENIED, "only journals matching 'cnn-*'"),
        ({"expires_seconds": DAY, "journal_pattern": "*"},
         grpc.StatusCode.PERMISSION_DENIED, "not '*'"),
        ({"expires_seconds": DAY, "journal_pattern": "a/b"},
         grpc.StatusCode.INVALID_ARGUMENT, "invalid journal pattern"),
        ({"expires_seconds": DAY, "note": "x" * 201},
         grpc.StatusCode.INVALID_ARGUMENT, "note"),
    ]
    for fields, code, message in cases:
        error = refusal(lambda fields=fields: share(parent, **fields))
        assert error.code() == code and message in error.details(), (fields, error.details())
    # A longer expiry ends with the parent's.
    longer = share(parent, expires_seconds=3 * DAY)
    assert longer.scope.expires_ms == parent.WhoAmI(pb.WhoAmIRequest()).scope.expires_ms
    # Within the parent: its own pattern (the default) or one journal it matches.
    same = share(parent, expires_seconds=DAY)
    one = share(parent, expires_seconds=DAY, journal_pattern="cnn-1", note="one")
    assert Scope.from_proto(same.scope).journal == "cnn-*"
    assert Scope.from_proto(one.scope).journal == "cnn-1"
    child = RawClient(proxy.endpoint, one.token)
    child.AppendLogs(pb.AppendLogsRequest(journal="cnn-1", entries=[ENTRY]))  # may write
    grandchild = share(child, expires_seconds=3600, read_only=True)
    assert Scope.from_proto(grandchild.scope) == Scope(
        read_only=True, journal="cnn-1", expires=grandchild.scope.expires_ms / 1000)


def test_revoking_a_token_revokes_what_was_shared_from_it(proxy, redis_server) -> None:
    user = "u" + uuid.uuid4().hex[:12]
    token = issue_token(redis_server.url, user)
    child = share(RawClient(proxy.endpoint, token), expires_seconds=DAY)
    grandchild = share(RawClient(proxy.endpoint, child.token), expires_seconds=DAY)
    listed = json.loads(subprocess.run(
        proxy_command("token", "list", "--json", "--redis-url", redis_server.url),
        capture_output=True, text=True, timeout=60, check=True).stdout)
    parents = {r["id"]: r["parent"] for r in listed if r["user"] == user}
    assert parents == {token.split("_")[1]: None, child.token_id: token.split("_")[1],
                       grandchild.token_id: child.token_id}
    out = subprocess.run(proxy_command("token", "revoke", token.split("_")[1], "--redis-url",
                                       redis_server.url), capture_output=True, text=True,
                         timeout=60)
    assert "revoked 3" in out.stdout
    time.sleep(1.0)  # the session proxy trusts a verified token for 0.5 s
    for gone in (token, child.token, grandchild.token):
        error = refusal(lambda gone=gone: RawClient(proxy.endpoint, gone).WhoAmI(
            pb.WhoAmIRequest()))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_namespace_holds_a_bounded_number_of_shared_tokens(redis_server, monkeypatch) -> None:
    """Sharing is open to every user: its bookkeeping in Redis is bounded per namespace."""
    monkeypatch.setattr(tokens, "MAX_SHARED", 3)
    user = "u" + uuid.uuid4().hex[:12]
    soon = Scope(expires=time.time() + 60)

    async def go() -> None:
        client = connect(redis_server.url)
        registry = TokenRegistry(client)
        try:
            ids = [(await registry.issue(user, scope=soon, parent="p"))[0] for _ in range(3)]
            with pytest.raises(TooManyTokens):
                await registry.issue(user, scope=soon, parent="p")
            await registry.issue(user)  # the operator's tokens do not count
            assert await registry.revoke([ids[0]]) == 1
            await registry.issue(user, scope=soon, parent="p")  # room again
            with pytest.raises(TooManyTokens):
                await registry.issue(user, scope=soon, parent="p")
        finally:
            await registry.revoke(user=user)
            await client.aclose()

    asyncio.run(go())


def test_token_flag_warns_and_points_to_the_environment(proxy, token) -> None:
    out = cli(proxy, None, "token", "show", "--token", token)
    assert out.returncode == 0
    assert "warning: --token" in out.stderr and "OPTUNA_GRPC_STORAGE_TOKEN" in out.stderr
    assert "shell history" in out.stderr and "ps" in out.stderr
    quiet = cli(proxy, token, "token", "show")
    assert "warning" not in quiet.stderr
