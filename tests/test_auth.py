"""Namespaces come from tokens only: no call reaches another user's journals."""

from __future__ import annotations

import json
import time

import grpc
import optuna
import pytest

from optuna_grpc_storage import AuthenticationError, GrpcJournalStorage
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from tests.conftest import RawClient

ENTRY = json.dumps({"op_code": 0, "worker_id": "w", "study_name": "secret", "directions": [1]})


def code_of(fn) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value.code()


def test_users_cannot_see_each_other(proxy, new_user) -> None:
    (alice, alice_token), (bob, bob_token) = new_user(), new_user()
    a = RawClient(proxy.endpoint, alice_token)
    b = RawClient(proxy.endpoint, bob_token)
    a.AppendLogs(pb.AppendLogsRequest(journal="default", entries=[ENTRY.encode()]))
    assert a.WhoAmI(pb.WhoAmIRequest()).namespace == alice
    assert b.WhoAmI(pb.WhoAmIRequest()).namespace == bob
    # Bob sees no journal, reads nothing, and his writes land in his own namespace.
    assert list(b.ListJournals(pb.ListJournalsRequest()).journals) == []
    assert [e for c in b.ReadLogs(pb.ReadLogsRequest(journal="default")) for e in c.entries] == []
    b.AppendLogs(pb.AppendLogsRequest(journal="default", entries=[ENTRY.encode()] * 3))
    mine = [e for c in a.ReadLogs(pb.ReadLogsRequest(journal="default")) for e in c.entries]
    assert len(mine) == 1
    # Deleting "default" as Bob deletes Bob's journal, not Alice's.
    b.DeleteJournal(pb.DeleteJournalRequest(journal="default"))
    assert [j.length for j in a.ListJournals(pb.ListJournalsRequest()).journals] == [1]
    # Forged metadata naming Alice's namespace changes nothing.
    forged = RawClient(proxy.endpoint, bob_token)
    forged.metadata += (("x-namespace", alice), ("namespace", alice), ("user", alice))
    assert forged.WhoAmI(pb.WhoAmIRequest()).namespace == bob


def test_studies_are_private(proxy, new_user) -> None:
    (_, alice_token), (_, bob_token) = new_user(), new_user()
    alice = GrpcJournalStorage(proxy.endpoint, token=alice_token)
    optuna.create_study(study_name="cnn", storage=alice).optimize(
        lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    bob = GrpcJournalStorage(proxy.endpoint, token=bob_token)
    assert optuna.get_all_study_summaries(storage=bob) == []
    with pytest.raises(KeyError):
        optuna.load_study(study_name="cnn", storage=bob)
    optuna.create_study(study_name="cnn", storage=bob)  # same name, separate namespace
    assert len(optuna.load_study(study_name="cnn", storage=alice).trials) == 3
    assert len(optuna.load_study(study_name="cnn", storage=bob).trials) == 0


@pytest.mark.parametrize("token", [None, "", "wrong", "ogs_00000000_forged", "Bearer x"])
def test_missing_or_wrong_token_is_unauthenticated(proxy, token) -> None:
    client = RawClient(proxy.endpoint, token)
    for call in (
        lambda: client.WhoAmI(pb.WhoAmIRequest()),
        lambda: client.AppendLogs(pb.AppendLogsRequest(journal="j", entries=[ENTRY.encode()])),
        lambda: list(client.ReadLogs(pb.ReadLogsRequest(journal="j"))),
        lambda: client.ListJournals(pb.ListJournalsRequest()),
    ):
        assert code_of(call) == grpc.StatusCode.UNAUTHENTICATED


def test_wrong_scheme_is_unauthenticated(proxy, token) -> None:
    client = RawClient(proxy.endpoint, None)
    client.metadata = (("authorization", f"Basic {token}"),)
    assert code_of(lambda: client.WhoAmI(pb.WhoAmIRequest())) == grpc.StatusCode.UNAUTHENTICATED


def test_client_error_says_what_to_do(proxy) -> None:
    with pytest.raises(AuthenticationError) as e:
        GrpcJournalStorage(proxy.endpoint, token="wrong")
    assert "token issue" in str(e.value) and proxy.endpoint in str(e.value)
    assert "wrong" not in str(e.value).replace("wrong'", "")  # the token is not echoed


def test_revoked_token_stops_working(proxy, new_user) -> None:
    import subprocess

    from storage_proxy.testing import proxy_command

    user, token = new_user()
    client = RawClient(proxy.endpoint, token)
    assert client.WhoAmI(pb.WhoAmIRequest()).namespace == user
    out = subprocess.run(
        proxy_command("token", "revoke", "--user", user, "--redis-url", proxy.redis_url),
        capture_output=True, text=True, check=True)
    assert "revoked 1" in out.stdout
    deadline = time.monotonic() + 5  # the proxy caches verified tokens for 0.5 s here
    while time.monotonic() < deadline:
        try:
            client.WhoAmI(pb.WhoAmIRequest())
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNAUTHENTICATED
            break
        time.sleep(0.1)
    else:
        pytest.fail("revoked token still accepted after 5 s")


def test_token_never_in_proxy_log(proxy, token) -> None:
    client = RawClient(proxy.endpoint, token + "x")
    code_of(lambda: client.WhoAmI(pb.WhoAmIRequest()))
    assert token not in proxy.log_path.read_text()
