"""What a token's scope lets it do, RPC by RPC, through a real proxy and Redis: read-only
tokens read and never write, journal-scoped tokens see only their journals, expired tokens do
nothing (even while the proxy's cache still holds them)."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable

import grpc
import pytest

from optuna_grpc_storage.protocol.scopes import FULL, Scope
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from storage_proxy.access import READ, WRITE
from storage_proxy.testing import ProxyProcess
from tests.conftest import RawClient, issue_token

ENTRY = json.dumps({"op_code": 0, "worker_id": "w", "study_name": "s",
                    "directions": [1]}).encode()
SERVICES = pb.DESCRIPTOR.services_by_name.values()  # the journal and artifact services
Call = Callable[[RawClient, str], object]


class InBand(grpc.RpcError):
    """An error a Session stream answered in-band, raised like a unary call's."""

    def __init__(self, error: pb.Error) -> None:
        self._code = next(c for c in grpc.StatusCode if c.value[0] == error.code)
        self._details = error.message

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def upload(client: RawClient, journal: str, data: bytes = b"weights") -> pb.ArtifactInfo:
    """Artifact `a-<journal>`, labelled with that journal."""
    return client.UploadArtifact(iter([
        pb.ArtifactChunk(info=pb.ArtifactInfo(artifact_id=f"a-{journal}", journal=journal),
                         data=data),
        pb.ArtifactChunk(sha256=hashlib.sha256(data).digest())]))


def session(client: RawClient, request: pb.SessionRequest) -> list[pb.SessionResponse]:
    answers = []
    for answer in client.Session(iter([request])):
        if answer.HasField("error"):
            raise InBand(answer.error)
        answers.append(answer)
    return answers


READS: dict[str, Call] = {
    "ReadLogs": lambda c, j: list(c.ReadLogs(pb.ReadLogsRequest(journal=j))),
    "Session/read": lambda c, j: session(c, pb.SessionRequest(
        read=pb.ReadLogsRequest(journal=j))),
    "LoadSnapshot": lambda c, j: list(c.LoadSnapshot(pb.LoadSnapshotRequest(journal=j))),
    "GetHeartbeats": lambda c, j: c.GetHeartbeats(pb.GetHeartbeatsRequest(
        journal=j, trial_ids=[7])),
    "WhoAmI": lambda c, j: c.WhoAmI(pb.WhoAmIRequest()),
    "ListJournals": lambda c, j: c.ListJournals(pb.ListJournalsRequest()),
    "DownloadArtifact": lambda c, j: list(c.DownloadArtifact(pb.DownloadArtifactRequest(
        artifact_id=f"a-{j}"))),
    "ListArtifacts": lambda c, j: list(c.ListArtifacts(pb.ListArtifactsRequest())),
}
WRITES: dict[str, Call] = {
    "AppendLogs": lambda c, j: c.AppendLogs(pb.AppendLogsRequest(journal=j, entries=[ENTRY])),
    "Session/append": lambda c, j: session(c, pb.SessionRequest(
        append=pb.AppendLogsRequest(journal=j, entries=[ENTRY]))),
    "SaveSnapshot": lambda c, j: c.SaveSnapshot(iter([pb.SnapshotChunk(
        journal=j, position=1, data=b"snapshot")])),
    "RecordHeartbeat": lambda c, j: c.RecordHeartbeat(pb.RecordHeartbeatRequest(
        journal=j, trial_ids=[7])),
    "ShareToken": lambda c, j: c.ShareToken(pb.ShareTokenRequest(
        journal_pattern=j, read_only=True, expires_seconds=3600)),
    "UploadArtifact": lambda c, j: upload(c, j, b"replaced"),
    "DeleteArtifact": lambda c, j: c.DeleteArtifact(pb.DeleteArtifactRequest(
        artifact_id=f"a-{j}")),
}
WRITES["DeleteJournal"] = lambda c, j: c.DeleteJournal(pb.DeleteJournalRequest(journal=j))
NO_JOURNAL = {"WhoAmI", "ListJournals", "ListArtifacts"}


def refused(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value


@pytest.fixture(scope="module")
def slow_cache_proxy(redis_server, tmp_path_factory):
    """A proxy that trusts a verified token for a minute: expiry must not wait for it."""
    with ProxyProcess(redis_server.url, data_dir=tmp_path_factory.mktemp("scopes"),
                      extra_args=("--auth-cache-seconds", "60")) as p:
        yield p


@pytest.fixture
def team(redis_server, slow_cache_proxy) -> Callable[..., RawClient]:
    """Clients of one fresh namespace, each with its own token: team(scope) -> client."""
    namespace = "t" + uuid.uuid4().hex[:12]

    def client(scope: Scope = FULL, user: str = "ann") -> RawClient:
        token = issue_token(redis_server.url, user, namespace=namespace, scope=scope)
        return RawClient(slow_cache_proxy.endpoint, token)

    return client


def lengths(client: RawClient) -> dict[str, int]:
    return {j.name: j.length for j in client.ListJournals(pb.ListJournalsRequest()).journals}


def artifacts(client: RawClient) -> dict[str, bytes]:
    """Each artifact's id and checksum."""
    return {a.artifact_id: a.sha256 for page in client.ListArtifacts(pb.ListArtifactsRequest())
            for a in page.artifacts}


def test_every_rpc_is_classified_and_tested() -> None:
    """A new RPC must say whether it reads or writes (access.py; unlisted ones are refused to
    scoped tokens) and get its row here."""
    methods = {m.name for service in SERVICES for m in service.methods}
    assert methods == READ | WRITE
    tested = {name.split("/")[0] for name in (*READS, *WRITES)}
    assert tested == methods


def test_read_only_reads_everything_and_writes_nothing(team) -> None:
    owner = team()
    owner.AppendLogs(pb.AppendLogsRequest(journal="cnn", entries=[ENTRY] * 2))
    owner.SaveSnapshot(iter([pb.SnapshotChunk(journal="cnn", position=1, data=b"x")]))
    owner.RecordHeartbeat(pb.RecordHeartbeatRequest(journal="cnn", trial_ids=[7]))
    upload(owner, "cnn")
    reader = team(Scope(read_only=True), user="bob")
    for call in READS.values():
        call(reader, "cnn")  # no error
    assert [e for c in reader.ReadLogs(pb.ReadLogsRequest(journal="cnn")) for e in c.entries] \
        == [ENTRY] * 2
    assert b"".join(c.data for c in reader.LoadSnapshot(pb.LoadSnapshotRequest(
        journal="cnn"))) == b"x"
    who = reader.WhoAmI(pb.WhoAmIRequest())
    assert who.scope.read_only and who.user == "bob"
    assert b"".join(c.data for c in reader.DownloadArtifact(pb.DownloadArtifactRequest(
        artifact_id="a-cnn"))) == b"weights"
    before, stored = lengths(owner), artifacts(owner)
    for name, call in WRITES.items():
        error = refused(lambda call=call: call(reader, "cnn"))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, name
        assert "this token is read-only" in error.details(), name
        assert "of user 'bob', issued" in error.details() and "writes" in error.details()
    assert lengths(owner) == before == {"cnn": 2}
    assert artifacts(owner) == stored == {"a-cnn": hashlib.sha256(b"weights").digest()}


def test_journal_scope_covers_its_journals_only(team) -> None:
    owner = team()
    for journal in ("cnn-1", "cnn-2", "rnn"):
        owner.AppendLogs(pb.AppendLogsRequest(journal=journal, entries=[ENTRY]))
        upload(owner, journal)
    owner.UploadArtifact(iter([pb.ArtifactChunk(info=pb.ArtifactInfo(artifact_id="loose"),
                                                data=b"x"),
                               pb.ArtifactChunk(sha256=hashlib.sha256(b"x").digest())]))
    scoped = team(Scope(journal="cnn-*"), user="ci")
    assert set(lengths(scoped)) == {"cnn-1", "cnn-2"}  # ListJournals hides the others
    assert set(artifacts(scoped)) == {"a-cnn-1", "a-cnn-2"}  # and so does ListArtifacts
    for name, call in {**READS, **WRITES}.items():
        call(scoped, "cnn-1" if name != "DeleteJournal" else "cnn-2")  # all allowed
    before, stored = lengths(owner), artifacts(owner)
    for name, call in {**READS, **WRITES}.items():
        if name in NO_JOURNAL:
            continue
        target = "rnn" if name != "ShareToken" else "*"
        error = refused(lambda call=call, target=target: call(scoped, target))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, name
        assert "journals matching 'cnn-*'" in error.details(), (name, error.details())
    # An artifact of no journal, and replacing another journal's under a journal of its own.
    for call in (lambda: list(scoped.DownloadArtifact(pb.DownloadArtifactRequest(
                     artifact_id="loose"))),
                 lambda: scoped.DeleteArtifact(pb.DeleteArtifactRequest(artifact_id="loose")),
                 lambda: scoped.UploadArtifact(iter([pb.ArtifactChunk(info=pb.ArtifactInfo(
                     artifact_id="a-rnn", journal="cnn-1"), data=b"y"), pb.ArtifactChunk(
                     sha256=hashlib.sha256(b"y").digest())]))):
        assert refused(call).code() == grpc.StatusCode.PERMISSION_DENIED
    assert lengths(owner) == before and artifacts(owner) == stored
    assert before["rnn"] == 1 and "cnn-2" not in before
    assert stored["a-rnn"] == hashlib.sha256(b"weights").digest() and "loose" in stored


def test_an_expired_token_is_refused_by_every_rpc_while_cached(team) -> None:
    """The proxy caches a verified token for a minute here; expiry is checked on every call."""
    owner = team()
    owner.AppendLogs(pb.AppendLogsRequest(journal="cnn", entries=[ENTRY]))
    expires = time.time() + 1.5
    soon = team(Scope(expires=expires), user="eve")
    assert soon.WhoAmI(pb.WhoAmIRequest()).scope.expires_ms == int(expires * 1000)
    time.sleep(max(0.0, expires - time.time()) + 0.1)
    for name, call in {**READS, **WRITES}.items():
        error = refused(lambda call=call: call(soon, "cnn"))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, name
        assert "expired at" in error.details() and "'eve'" in error.details(), name
    assert lengths(owner) == {"cnn": 1}


def test_a_full_token_of_the_team_sees_what_its_members_wrote(team) -> None:
    """Several users' tokens share one namespace when the operator says so."""
    ann, ben = team(user="ann"), team(user="ben")
    ann.AppendLogs(pb.AppendLogsRequest(journal="shared", entries=[ENTRY]))
    ben.AppendLogs(pb.AppendLogsRequest(journal="shared", entries=[ENTRY]))
    assert lengths(ann) == lengths(ben) == {"shared": 2}
    assert ann.WhoAmI(pb.WhoAmIRequest()).namespace == ben.WhoAmI(pb.WhoAmIRequest()).namespace
