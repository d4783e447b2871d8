"""Promise 6: nobody reaches another user's data. Bob holds a valid token and tries everything
else: crafted journal names and artifact ids on every RPC, Alice's token mangled, forged
metadata; Alice's journal, snapshot, heartbeats and artifacts stay out of his reach and
untouched (her artifact's id is NOT_FOUND for him, as a missing one is). Tokens never show up in
the proxy's log (at debug level) or in any error message. (tests/test_auth.py covers the
basics: separate namespaces, wrong and revoked tokens.)"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator

import grpc
import pytest

from optuna_grpc_storage import GrpcJournalStorage, GrpcStorageError
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from storage_proxy.cli import main
from storage_proxy.testing import ProxyProcess
from tests.conftest import RawClient, issue_token

ENTRY = json.dumps({"op_code": 0, "worker_id": "w", "study_name": "secret",
                    "directions": [1]}).encode()
CRAFTED = ["", ".", "..", "../default", "../alice/default", "alice/default", "/default",
           "default/..", "{alice/default}", "{default}", "default}", "default}:log",
           "default:log", "*", "default*", "?", "default\x00", "default\n", "default ",
           " default", "x" * 129, "x" * 10_000, "\u0434\u0435\u0444\u043e\u043b\u0442",
           "d\u0435fault", "\uff44\uff45\uff46\uff41\uff55\uff4c\uff54", "default\u200b",
           "\u202edefault", "-default", "_default", "%2e%2e%2fdefault", "default\\..\\x"]


@pytest.fixture(scope="module")
def stack(redis_server, tmp_path_factory) -> Iterator[tuple[ProxyProcess, dict[str, str]]]:
    """A proxy logging at debug level, and tokens for alice and bob (random user names)."""
    with ProxyProcess(redis_server.url, data_dir=tmp_path_factory.mktemp("iso"),
                      extra_args=("--log-level", "debug", "--auth-cache-seconds", "0.5")) as p:
        suffix = uuid.uuid4().hex[:8]
        users = {name: f"{name}-{suffix}" for name in ("alice", "bob")}
        tokens = {name: issue_token(redis_server.url, user) for name, user in users.items()}
        yield p, {**tokens, **{f"{n}_user": u for n, u in users.items()}}


@pytest.fixture(scope="module")
def alice_data(stack) -> Callable[[], tuple]:
    """Alice's journal, snapshot and heartbeat, and a function that reads them back."""
    proxy, tokens = stack
    alice = RawClient(proxy.endpoint, tokens["alice"])
    alice.AppendLogs(pb.AppendLogsRequest(journal="default", entries=[ENTRY] * 3))
    alice.SaveSnapshot(iter([pb.SnapshotChunk(journal="default", position=3, data=b"S")]))
    alice.RecordHeartbeat(pb.RecordHeartbeatRequest(journal="default", trial_ids=[7]))
    alice.UploadArtifact(iter(upload(ALICE_ART, ALICE_BYTES, journal="default", study="secret")))

    def read() -> tuple:
        entries = [e for c in alice.ReadLogs(pb.ReadLogsRequest(journal="default"))
                   for e in c.entries]
        snapshot = [(c.position, c.data) for c in alice.LoadSnapshot(
            pb.LoadSnapshotRequest(journal="default"))]
        beats = [h.trial_id for h in alice.GetHeartbeats(pb.GetHeartbeatsRequest(
            journal="default", trial_ids=[7])).heartbeats]
        listed = [(j.name, j.length) for j in alice.ListJournals(
            pb.ListJournalsRequest()).journals]
        artifact = b"".join(c.data for c in alice.DownloadArtifact(
            pb.DownloadArtifactRequest(artifact_id=ALICE_ART)))
        artifacts = [i.artifact_id for page in alice.ListArtifacts(pb.ListArtifactsRequest())
                     for i in page.artifacts]
        return entries, snapshot, beats, listed, artifact, artifacts

    before = read()
    assert before == ([ENTRY] * 3, [(3, b"S")], [7], [("default", 3)], ALICE_BYTES, [ALICE_ART])
    return read


ALICE_ART = "3f2a1c9e-7b4d-4e8a-9c1f-aa0000000001"  # an Optuna-style (UUID) id
ALICE_BYTES = b"alice's model weights"


def upload(artifact_id: str, data: bytes, **labels: object) -> list[pb.ArtifactChunk]:
    return [pb.ArtifactChunk(info=pb.ArtifactInfo(artifact_id=artifact_id, **labels), data=data),
            pb.ArtifactChunk(sha256=hashlib.sha256(data).digest())]


def artifact_calls(artifact_id: str) -> dict[str, Callable[[RawClient], object]]:
    """Every RPC that names an artifact, aimed at `artifact_id`."""
    return {
        "UploadArtifact": lambda c: c.UploadArtifact(iter(upload(artifact_id, b"evil"))),
        "DownloadArtifact": lambda c: list(c.DownloadArtifact(pb.DownloadArtifactRequest(
            artifact_id=artifact_id))),
        "DeleteArtifact": lambda c: c.DeleteArtifact(pb.DeleteArtifactRequest(
            artifact_id=artifact_id)),
    }


def journal_calls(name: str) -> dict[str, Callable[[RawClient], object]]:
    """Every RPC that names a journal, aimed at `name`."""
    return {
        "AppendLogs": lambda c: c.AppendLogs(pb.AppendLogsRequest(journal=name,
                                                                  entries=[ENTRY])),
        "ReadLogs": lambda c: list(c.ReadLogs(pb.ReadLogsRequest(journal=name))),
        "SaveSnapshot": lambda c: c.SaveSnapshot(iter([pb.SnapshotChunk(
            journal=name, position=0, data=b"evil")])),
        "LoadSnapshot": lambda c: list(c.LoadSnapshot(pb.LoadSnapshotRequest(journal=name))),
        "DeleteJournal": lambda c: c.DeleteJournal(pb.DeleteJournalRequest(journal=name)),
        "RecordHeartbeat": lambda c: c.RecordHeartbeat(pb.RecordHeartbeatRequest(
            journal=name, trial_ids=[7])),
        "GetHeartbeats": lambda c: c.GetHeartbeats(pb.GetHeartbeatsRequest(
            journal=name, trial_ids=[7])),
    }


def refusal(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value


def test_crafted_journal_names_are_refused_by_every_rpc(stack, alice_data) -> None:
    proxy, tokens = stack
    before = alice_data()
    bob = RawClient(proxy.endpoint, tokens["bob"])
    for name in CRAFTED:
        for method, call in journal_calls(name).items():
            error = refusal(lambda call=call: call(bob))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, name)
            assert "invalid journal name" in error.details()
            assert len(error.details()) < 400  # a 10,000-character name is not echoed whole
    assert list(bob.ListJournals(pb.ListJournalsRequest()).journals) == []
    assert alice_data() == before


def test_crafted_artifact_ids_are_refused_by_every_rpc(stack, alice_data) -> None:
    proxy, tokens = stack
    before = alice_data()
    bob = RawClient(proxy.endpoint, tokens["bob"])
    for name in [*CRAFTED, "../" + ALICE_ART, f"../{tokens['alice_user']}/{ALICE_ART}",
                 f"{tokens['alice_user']}/{ALICE_ART}", "/" + ALICE_ART, ALICE_ART + "\x00"]:
        for method, call in artifact_calls(name).items():
            error = refusal(lambda call=call: call(bob))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, name)
            assert "invalid artifact id" in error.details() and len(error.details()) < 400
    assert alice_data() == before


def test_bob_cannot_read_list_overwrite_or_delete_alices_artifacts(stack, alice_data) -> None:
    """By id: NOT_FOUND exactly as for an id nobody has; by name (her journal and study
    labels): an empty list; his upload of her id lands in his own namespace."""
    proxy, tokens = stack
    before = alice_data()
    bob = RawClient(proxy.endpoint, tokens["bob"])
    hers = refusal(lambda: artifact_calls(ALICE_ART)["DownloadArtifact"](bob))
    nobodys = refusal(lambda: artifact_calls("0" * 36)["DownloadArtifact"](bob))
    assert hers.code() == nobodys.code() == grpc.StatusCode.NOT_FOUND
    assert hers.details().replace(ALICE_ART, "X") == nobodys.details().replace("0" * 36, "X")
    assert bob.DeleteArtifact(pb.DeleteArtifactRequest(artifact_id=ALICE_ART)).deleted is False
    for labels in ({}, {"journal": "default"}, {"study": "secret"},
                   {"journal": "default", "study": "secret"}):
        assert list(bob.ListArtifacts(pb.ListArtifactsRequest(**labels))) == []
    bob.UploadArtifact(iter(upload(ALICE_ART, b"bob's", journal="default", study="secret")))
    assert b"".join(c.data for c in bob.DownloadArtifact(
        pb.DownloadArtifactRequest(artifact_id=ALICE_ART))) == b"bob's"
    assert alice_data() == before
    assert bob.DeleteArtifact(pb.DeleteArtifactRequest(artifact_id=ALICE_ART)).deleted
    assert alice_data() == before


def test_bob_sees_and_changes_nothing_of_alices(stack, alice_data) -> None:
    """The same names, Bob's token: every call lands in Bob's namespace."""
    proxy, tokens = stack
    before = alice_data()
    bob = RawClient(proxy.endpoint, tokens["bob"])
    assert [e for c in bob.ReadLogs(pb.ReadLogsRequest(journal="default")) for e in c.entries] \
        == []
    assert list(bob.LoadSnapshot(pb.LoadSnapshotRequest(journal="default"))) == []
    assert list(bob.GetHeartbeats(pb.GetHeartbeatsRequest(journal="default", trial_ids=[7]))
                .heartbeats) == []
    for method, call in journal_calls("default").items():
        try:
            call(bob)
        except grpc.RpcError as e:  # e.g. a snapshot beyond Bob's (empty) journal
            assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, (method, e.details())
    assert alice_data() == before


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1], lambda t: t + "x", lambda t: t.upper(), lambda t: t.lower(),
    lambda t: t[::-1], lambda t: t.rsplit("_", 1)[0], lambda t: t.rsplit("_", 1)[0] + "_",
    lambda t: t.replace("ogs_", ""), lambda t: "ogs_" + t.split("_")[1] + "_" + "A" * 43,
    lambda t: __import__("hashlib").sha256(t.encode()).hexdigest(),
    lambda t: t[:10], lambda t: t + " " + t, lambda t: f"Bearer {t}",
], ids=["truncated", "extended", "upper", "lower", "reversed", "id only", "id and underscore",
        "no prefix", "right id, wrong secret", "its stored hash", "prefix", "doubled",
        "bearer inside"])
def test_mangled_tokens_are_refused(stack, alice_data, mangle) -> None:
    proxy, tokens = stack
    client = RawClient(proxy.endpoint, mangle(tokens["alice"]))
    listing = {"ListArtifacts": lambda c: list(c.ListArtifacts(pb.ListArtifactsRequest()))}
    for call in [*journal_calls("default").values(), *artifact_calls(ALICE_ART).values(),
                 *listing.values()]:
        error = refusal(lambda call=call: call(client))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert alice_data()[0] == [ENTRY] * 3


def test_forged_metadata_changes_nothing(stack, alice_data) -> None:
    proxy, tokens = stack
    alice_user, bob_user = tokens["alice_user"], tokens["bob_user"]
    forged = (("x-namespace", alice_user), ("namespace", alice_user), ("user", alice_user),
              ("x-user", alice_user), ("x-forwarded-user", alice_user),
              ("x-remote-user", alice_user), ("authorization-bin", tokens["alice"].encode()))
    bob = RawClient(proxy.endpoint, tokens["bob"])
    bob.metadata = (*bob.metadata, *forged)
    assert bob.WhoAmI(pb.WhoAmIRequest()).namespace == bob_user
    assert [e for c in bob.ReadLogs(pb.ReadLogsRequest(journal="default")) for e in c.entries] \
        == []
    # Without a token of his own, Bob gets nowhere with the same headers...
    anonymous = RawClient(proxy.endpoint, None)
    anonymous.metadata = forged
    assert refusal(lambda: anonymous.WhoAmI(pb.WhoAmIRequest())).code() == \
        grpc.StatusCode.UNAUTHENTICATED
    # ...nor by naming Alice instead of a token, nor with a junk header before Alice's token.
    for value in (f"Bearer {alice_user}", "Bearer", "Bearer  ", f"Token {tokens['alice']}",
                  f"Basic {tokens['alice']}"):
        anonymous.metadata = (("authorization", value),)
        assert refusal(lambda: anonymous.WhoAmI(pb.WhoAmIRequest())).code() == \
            grpc.StatusCode.UNAUTHENTICATED
    anonymous.metadata = (("authorization", "Bearer junk"),
                          ("authorization", f"Bearer {tokens['alice']}"))
    assert refusal(lambda: anonymous.WhoAmI(pb.WhoAmIRequest())).code() == \
        grpc.StatusCode.UNAUTHENTICATED
    assert alice_data()[0] == [ENTRY] * 3


def test_tokens_never_in_logs_or_errors(stack, alice_data, redis_server) -> None:
    """Every error path, with real and wrong tokens; then grep the debug log and every error
    text, client-side ones included, for any token or its secret part."""
    proxy, tokens = stack
    wrong = "ogs_deadbeef_" + "W" * 43
    secrets = [tokens["alice"], tokens["bob"], wrong]
    secrets += [t.split("_", 2)[2] for t in secrets]  # all after the id (may hold "_")
    texts: list[str] = []
    for token in (tokens["alice"], tokens["bob"], wrong, wrong[:-5]):
        client = RawClient(proxy.endpoint, token)
        mine = token == tokens["alice"]  # Alice's own data stays as it is
        calls = [*journal_calls("../x").values(), *artifact_calls("../x").values(),
                 *(() if mine else artifact_calls(ALICE_ART).values()),
                 *(() if mine else journal_calls("default").values()),
                 lambda c: c.AppendLogs(pb.AppendLogsRequest(journal="j", entries=[b"{"])),
                 lambda c: c.AppendLogs(pb.AppendLogsRequest(journal="j", entries=[ENTRY],
                                                             known_position=10**9)),
                 lambda c: list(c.ReadLogs(pb.ReadLogsRequest(journal="j", position=-1))),
                 lambda c: c.WhoAmI(pb.WhoAmIRequest()),
                 lambda c: c.ListJournals(pb.ListJournalsRequest())]
        for call in calls:
            try:
                call(client)
            except grpc.RpcError as e:
                texts.append(f"{e.code()} {e.details()} {e.debug_error_string()}")
    for token in (wrong, tokens["bob"]):  # the client's own error messages
        try:
            storage = GrpcJournalStorage(proxy.endpoint, token=token, journal="../x",
                                         retry_deadline=1)
            storage.get_all_studies()
        except GrpcStorageError as e:
            texts.append(str(e))
    revoked = issue_token(redis_server.url, "gone")  # used, revoked, used again
    gone = RawClient(proxy.endpoint, revoked)
    gone.WhoAmI(pb.WhoAmIRequest())
    assert main(["token", "revoke", "--token", revoked, "--redis-url", redis_server.url]) == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            gone.WhoAmI(pb.WhoAmIRequest())
            time.sleep(0.1)
        except grpc.RpcError as e:
            texts.append(f"{e.code()} {e.details()}")
            break
    else:
        pytest.fail("revoked token still accepted")
    log = proxy.log_path.read_text(errors="replace")
    assert " DEBUG " in log  # the log really is at debug level
    assert alice_data()[0] == [ENTRY] * 3
    assert len(texts) > 50
    for secret in [*secrets, revoked, revoked.split("_", 2)[2]]:
        assert secret not in log
        for text in texts:
            assert secret not in text, text
