"""Promise 5: a property-based fuzzer (hypothesis) sends malformed, oversized, truncated and
wrong-typed requests straight at every RPC of both services (journals and artifacts), as raw
bytes on the wire.

Every input must get a clear answer: INVALID_ARGUMENT for bytes that are not the method's
message, one of the refusal codes (with a message) for well-formed but wrong requests, and the
protected journal, its snapshot, the protected artifact and the proxy must come out exactly
as they went in. The proxy runs with tiny limits so that "too large" is cheap to reach.

The default run tries a few thousand inputs; `pytest -m slow tests/test_fuzz.py -s` tries ten
times more. The count is printed at the end of the module.
"""

from __future__ import annotations

import collections
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optuna_grpc_storage.protocol.entries import check_fields
from optuna_grpc_storage.protocol.errors import RequestError
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from storage_proxy.testing import ProxyProcess
from tests.conftest import RawClient, issue_token
from tests.faults import health
from tests.ops_helpers import SERVING

SERVICES = [pb.DESCRIPTOR.services_by_name[n] for n in ("JournalService", "ArtifactService")]
METHODS = {m.name: m for service in SERVICES for m in service.methods}
ARTIFACT_METHODS = {m.name for m in SERVICES[1].methods}
TARGET = "fuzz-target"
ART = "fuzz-art"  # the protected artifact
ART_DATA = b"protected artifact bytes"
SEED_LENGTH = 6  # entries in the protected journal; its snapshot sits at this position
CLIENT = "fuzz-client"  # wrote the last seed entry with sequence 100
MAX_ENTRY, MAX_BATCH_ENTRIES, MAX_BATCH_BYTES, MAX_SNAPSHOT = 512, 20, 4096, 2048
LIMITS = ("--max-entry-bytes", str(MAX_ENTRY), "--max-batch-entries", str(MAX_BATCH_ENTRIES),
          "--max-batch-bytes", str(MAX_BATCH_BYTES), "--max-chunk-bytes", "1024",
          "--max-snapshot-bytes", str(MAX_SNAPSHOT), "--max-unseen-entries", "5")
REFUSED = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED,
                     grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.FAILED_PRECONDITION})
# The documented journal name rule (README, "invalid journal name" message).
NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
EXAMPLES = 250  # per property in the default run
TRIED: collections.Counter[str] = collections.Counter()


def valid_entry(raw: bytes) -> bool:
    """The documented rule: a UTF-8 JSON object with an integer op_code of 0..10 and, for the
    operations Optuna's replay applies (0..9), the fields it reads (protocol/entries.py;
    entries of DISCARD_TRIALS, 10, carry anything)."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False
    op = value.get("op_code") if isinstance(value, dict) else None
    if not (type(op) is int and 0 <= op <= 10 and len(raw) <= MAX_ENTRY):
        return False
    try:
        check_fields(value, 0)
    except RequestError:
        return False
    return True


def decodes(message: Any, data: bytes) -> bool:
    try:
        message.FromString(data)
    except DecodeError:
        return False
    return True


class Target:
    """A proxy with tiny limits, a token, and a protected journal with a snapshot."""

    def __init__(self, proxy: ProxyProcess, token: str) -> None:
        self.proxy = proxy
        self.raw = RawClient(proxy.endpoint, token)
        self.channel = self.raw.channel
        self.metadata = self.raw.metadata
        self.max_message = self.raw.WhoAmI(pb.WhoAmIRequest()).limits.max_message_bytes
        seed = [json.dumps({"op_code": 10, "worker_id": "seed", "i": i}).encode()
                for i in range(SEED_LENGTH)]
        self.raw.AppendLogs(pb.AppendLogsRequest(journal=TARGET, entries=seed[:-1]))
        self.raw.AppendLogs(pb.AppendLogsRequest(journal=TARGET, entries=seed[-1:],
                                                 client_id=CLIENT, sequence=100))
        self.raw.SaveSnapshot(iter([pb.SnapshotChunk(journal=TARGET, position=SEED_LENGTH,
                                                     data=b"snapshot")]))
        self.raw.UploadArtifact(iter([
            pb.ArtifactChunk(info=pb.ArtifactInfo(artifact_id=ART, journal=TARGET),
                             data=ART_DATA),
            pb.ArtifactChunk(sha256=hashlib.sha256(ART_DATA).digest())]))
        self.before = self.state()

    def state(self) -> tuple[list[bytes], bytes, int, bytes, list[tuple[str, int]]]:
        entries = [e for c in self.raw.ReadLogs(pb.ReadLogsRequest(journal=TARGET))
                   for e in c.entries]
        snapshot = b"".join(c.data for c in self.raw.LoadSnapshot(
            pb.LoadSnapshotRequest(journal=TARGET)))
        listed = {j.name: j.length for j in self.raw.ListJournals(pb.ListJournalsRequest())
                  .journals}
        artifact = b"".join(c.data for c in self.raw.DownloadArtifact(
            pb.DownloadArtifactRequest(artifact_id=ART)))
        labelled = [(i.artifact_id, i.size) for page in self.raw.ListArtifacts(
            pb.ListArtifactsRequest(journal=TARGET)) for i in page.artifacts]
        return entries, snapshot, listed[TARGET], artifact, labelled

    def call(self, method: str, payload: Any, metadata: Any = None) -> tuple[grpc.StatusCode,
                                                                                str]:
        """Send raw bytes (a list of them for a streamed request); return (code, details)."""
        m = METHODS[method]
        path = f"/{m.containing_service.full_name}/{method}"
        kw = {"metadata": self.metadata if metadata is None else metadata, "timeout": 30}
        try:
            if m.client_streaming and m.server_streaming:  # Session: answers come in-band
                list(self.channel.stream_stream(path)(iter(payload), **kw))
            elif m.client_streaming:
                self.channel.stream_unary(path)(iter(payload), **kw)
            elif m.server_streaming:
                list(self.channel.unary_stream(path)(payload, **kw))
            else:
                self.channel.unary_unary(path)(payload, **kw)
        except grpc.RpcError as e:
            return e.code(), e.details() or ""
        return grpc.StatusCode.OK, ""

    def check(self, method: str, payload: Any, may_pass: bool) -> None:
        """One input: the answer must be clear, and a defective request must be refused."""
        TRIED[method] += 1
        code, details = self.call(method, payload)
        streamed = METHODS[method].client_streaming
        parts = payload if streamed else [payload]
        message = getattr(pb, METHODS[method].input_type.name)
        broken = {grpc.StatusCode.RESOURCE_EXHAUSTED: [len(p) > self.max_message for p in parts],
                  grpc.StatusCode.INVALID_ARGUMENT: [not decodes(message, p) for p in parts]}
        if any(map(any, broken.values())):
            if streamed:  # which broken message the server meets first depends on the others
                assert code in broken, (code, details)
            else:
                assert broken[code][0], (code, details)
            if code == grpc.StatusCode.INVALID_ARGUMENT and not streamed:
                assert "could not be decoded" in details
            return
        allowed = REFUSED | ({grpc.StatusCode.OK} if may_pass else set())
        if method in ARTIFACT_METHODS:  # no such artifact; a checksum that does not match
            allowed |= {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.DATA_LOSS}
        assert code in allowed, (method, code, details)
        if code != grpc.StatusCode.OK:
            assert 10 < len(details) < 2_000, details
            assert "Traceback" not in details and "Unexpected" not in details, details


@pytest.fixture(scope="module")
def target(redis_server, tmp_path_factory) -> Iterator[Target]:
    with ProxyProcess(redis_server.url, data_dir=tmp_path_factory.mktemp("fuzz"),
                      extra_args=LIMITS) as proxy:
        token = issue_token(redis_server.url, "fuzz" + uuid.uuid4().hex[:8])
        t = Target(proxy, token)
        yield t
        t.channel.close()
    print(f"\nfuzzed {sum(TRIED.values())} inputs: {dict(sorted(TRIED.items()))}")


@pytest.fixture(autouse=True)
def journal_unchanged(target: Target) -> Iterator[None]:
    """After every property: same journal bytes, same snapshot, proxy alive and SERVING, and
    no traceback in its log."""
    yield
    assert target.state() == target.before
    assert target.proxy.proc is not None and target.proxy.proc.poll() is None
    assert health(target.proxy.endpoint) == SERVING
    log = target.proxy.log_path.read_text(errors="replace")
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


def run(strategy: st.SearchStrategy[Any], body: Callable[[Any], None], examples: int) -> None:
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def prop(value: Any) -> None:
        body(value)

    prop()


# -- strategies ---------------------------------------------------------------------------------

def json_values(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                        max_leaves=max_leaves)


GOOD_ENTRY = st.builds(
    lambda tag, attr: json.dumps({"op_code": 9, "worker_id": tag, "trial_id": 0,
                                  "system_attr": {"k": attr}}).encode(),
    st.text(max_size=20), json_values(4)) | st.builds(
    lambda tag: json.dumps({"op_code": 10, "worker_id": tag}).encode(), st.text(max_size=20))
BAD_OP_CODE = (st.integers().filter(lambda n: not 0 <= n <= 10) | st.floats() | st.booleans()
               | st.text(max_size=5) | st.none() | st.lists(st.integers(), max_size=2))
BAD_ENTRY = st.one_of(
    st.binary(max_size=300),
    json_values().filter(lambda v: not isinstance(v, dict)).map(lambda v: json.dumps(v).encode()),
    st.builds(lambda d, op: json.dumps({**d, "op_code": op}).encode(),
              st.dictionaries(st.text(max_size=8), json_values(4), max_size=4), BAD_OP_CODE),
    st.dictionaries(st.text(max_size=8).filter(lambda k: k != "op_code"), json_values(4),
                    max_size=4).map(lambda d: json.dumps(d).encode()),
    st.builds(lambda e, cut: e[:cut], GOOD_ENTRY, st.integers(0, 30)),
    st.builds(lambda n: json.dumps({"op_code": 5, "pad": "x" * n}).encode(),
              st.integers(MAX_ENTRY, 4 * MAX_ENTRY)),
    st.builds(lambda junk: b'{"op_code": 5, "x": "' + junk + b'"}',
              st.binary(min_size=1, max_size=8).filter(lambda b: not _utf8(b))),
).filter(lambda raw: not valid_entry(raw))
CRAFTED_NAMES = ["", "../" + TARGET, TARGET + "/../x", "{" + TARGET + "}", TARGET + "}",
                 "a{b}c", "\u0436", "\uff46uzz-target", "fuzz target", "." + TARGET, "-x",
                 "x" * 129, "x" * 5000, TARGET + "\n", TARGET + "\x00", "*", "fuzz-*",
                 "\u202e" + TARGET, TARGET + ":log", "default/" + TARGET]
BAD_NAME = st.sampled_from(CRAFTED_NAMES) | st.text(max_size=200).filter(
    lambda s: not NAME_RULE.fullmatch(s))
ANY_NAME = BAD_NAME | st.just(TARGET) | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}",
                                                      fullmatch=True)
INT64 = st.integers(-(2**63), 2**63 - 1)


def _utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@st.composite
def bad_appends(draw: st.DrawFn) -> tuple[bytes, bool]:
    """An AppendLogs aimed at the protected journal with at least one defect."""
    r = pb.AppendLogsRequest(journal=TARGET, known_position=draw(st.integers(0, SEED_LENGTH)))
    entries = draw(st.lists(GOOD_ENTRY, min_size=1, max_size=4))
    defect = draw(st.sampled_from(["name", "entry", "empty", "too many", "too big", "negative",
                                   "beyond", "client id", "stale", "duplicate", "huge sequence"]))
    may_pass = False
    if defect == "name":
        r.journal = draw(BAD_NAME)
    elif defect == "entry":
        entries.insert(draw(st.integers(0, len(entries))), draw(BAD_ENTRY))
    elif defect == "empty":
        entries = []
    elif defect == "too many":
        entries = [b'{"op_code":5}'] * draw(st.integers(MAX_BATCH_ENTRIES + 1, 200))
    elif defect == "too big":
        pad = json.dumps({"op_code": 5, "pad": "x" * 400}).encode()
        entries = [pad] * draw(st.integers(MAX_BATCH_BYTES // len(pad) + 1, MAX_BATCH_ENTRIES))
    elif defect == "negative":
        r.known_position = draw(st.integers(-(2**63), -1))
    elif defect == "beyond":
        r.known_position = draw(st.integers(SEED_LENGTH + 1, 2**63 - 1))
    elif defect == "client id":
        r.client_id, r.sequence = draw(st.text(min_size=129, max_size=300)), 1
    elif defect == "stale":  # an old copy of one of CLIENT's appends
        r.client_id, r.sequence = CLIENT, draw(st.integers(0, 99))
    elif defect == "duplicate":  # a retry of CLIENT's last append: answered, not written
        r.client_id, r.sequence, may_pass = CLIENT, 100, True
    else:  # sequences beyond what the store keeps exactly (14 digits)
        r.client_id = uuid.uuid4().hex
        r.sequence = draw(st.integers(10**14, 2**64 - 1))
    r.entries.extend(entries)
    return r.SerializeToString(), may_pass


@st.composite
def bad_snapshots(draw: st.DrawFn) -> tuple[list[bytes], bool]:
    """A SaveSnapshot upload that must not replace the protected journal's snapshot."""
    first = pb.SnapshotChunk(journal=TARGET, position=draw(st.integers(0, SEED_LENGTH)),
                             data=draw(st.binary(max_size=64)))
    rest = [pb.SnapshotChunk(journal=draw(ANY_NAME), position=draw(INT64),
                             data=draw(st.binary(max_size=64)))
            for _ in range(draw(st.integers(0, 3)))]
    defect = draw(st.sampled_from(["empty", "name", "negative", "beyond", "older", "too big"]))
    if defect == "empty":
        return [], False
    if defect == "name":
        first.journal = draw(BAD_NAME)
    elif defect == "negative":
        first.position = draw(st.integers(-(2**63), -1))
    elif defect == "beyond":
        first.position = draw(st.integers(SEED_LENGTH + 1, 2**63 - 1))
    elif defect == "too big":
        rest += [pb.SnapshotChunk(data=b"z" * 1000)] * (MAX_SNAPSHOT // 1000 + 1)
    chunks = [first, *rest]
    return [c.SerializeToString() for c in chunks], defect == "older"


def bad_heartbeats(kind: type) -> st.SearchStrategy[tuple[bytes, bool]]:
    ids = st.lists(INT64, max_size=50) | st.builds(lambda n: list(range(n)),
                                                   st.integers(9_000, 12_000))
    if kind is pb.GetHeartbeatsRequest:  # a read: any answer but a crash will do
        return st.builds(lambda j, i: (kind(journal=j, trial_ids=i).SerializeToString(), True),
                         ANY_NAME, ids)
    defective = st.one_of(
        st.builds(lambda j, i: kind(journal=j, trial_ids=i), BAD_NAME, ids),
        st.just(kind(journal=TARGET)),
        st.builds(lambda i: kind(journal=TARGET, trial_ids=i),
                  st.lists(INT64, min_size=1, max_size=20).filter(lambda i: min(i) < 0)),
        st.builds(lambda n: kind(journal=TARGET, trial_ids=range(n)),
                  st.integers(10_001, 12_000)),
    )
    return defective.map(lambda r: (r.SerializeToString(), False))


def bad_shares() -> st.SearchStrategy[tuple[bytes, bool]]:
    """ShareToken without a valid expiry, with a pattern no journal name could match, or
    with a note that is not a short line: refused, no token minted."""
    days = 86400
    defective = st.one_of(
        st.builds(lambda e: pb.ShareTokenRequest(expires_seconds=e),
                  INT64.filter(lambda e: not 0 < e <= 90 * days)),
        st.builds(lambda j: pb.ShareTokenRequest(journal_pattern=j, expires_seconds=60),
                  st.text(min_size=1, max_size=200).filter(
                      lambda j: not re.fullmatch(r"[A-Za-z0-9*?][A-Za-z0-9._*?-]{0,127}", j))),
        st.builds(lambda n: pb.ShareTokenRequest(note=n, expires_seconds=60),
                  st.text(max_size=400).filter(lambda n: len(n) > 200 or not n.isprintable())),
    )
    return defective.map(lambda r: (r.SerializeToString(), False))


CRAFTED_IDS = ["", ".", "..", "../" + ART, ART + "/x", "/" + ART, ART + "\x00", "x" * 129,
               "." + ART, ART + "\n", "\u202e" + ART, "a\\b", "%2e%2e%2f" + ART]
BAD_ID = st.sampled_from(CRAFTED_IDS) | st.text(max_size=200).filter(
    lambda s: not NAME_RULE.fullmatch(s))
ANY_ID = BAD_ID | st.just(ART) | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)
UPLOAD_DEFECTS = ["id", "no checksum", "wrong checksum", "more", "fewer", "negative size",
                  "info twice", "no info", "journal label", "trial label", "huge"]


@st.composite
def bad_uploads(draw: st.DrawFn) -> tuple[list[bytes], bool]:
    """An UploadArtifact aimed at the protected artifact with at least one defect: it must
    not replace it."""
    data = draw(st.binary(max_size=300)) + b"pad"
    digest = hashlib.sha256(data).digest()
    info = pb.ArtifactInfo(artifact_id=ART, journal=TARGET)
    defect = draw(st.sampled_from(UPLOAD_DEFECTS))
    tail = [pb.ArtifactChunk(sha256=digest)]
    if defect == "id":
        info.artifact_id = draw(BAD_ID)
    elif defect == "no checksum":
        tail = []
    elif defect == "wrong checksum":
        tail = [pb.ArtifactChunk(sha256=draw(st.binary(min_size=1, max_size=40).filter(
            lambda b: b != digest)))]
    elif defect == "more":
        info.size = draw(st.integers(1, len(data) - 1))
    elif defect == "fewer":
        info.size = len(data) + draw(st.integers(1, 10**6))
    elif defect == "negative size":
        info.size = draw(st.integers(-(2**63), -1))
    elif defect == "journal label":
        info.journal = draw(BAD_NAME.filter(bool))
    elif defect == "trial label":
        info.trial_number = draw(st.integers(-(2**63), -1))
    elif defect == "huge":  # beyond the quota 'artifact_size'
        info.size = draw(st.integers(10**13, 2**63 - 1))
    head = [pb.ArtifactChunk(info=info, data=data)]
    if defect == "info twice":
        head.append(pb.ArtifactChunk(info=info))
    elif defect == "no info":
        head = [pb.ArtifactChunk(data=data)]
    return [c.SerializeToString() for c in [*head, *tail]], False


def _download(artifact_id: str, offset: int, version: str) -> tuple[bytes, bool]:
    request = pb.DownloadArtifactRequest(artifact_id=artifact_id, offset=offset, version=version)
    return request.SerializeToString(), True


def _listing(journal: str, study: str, trial: int | None) -> tuple[bytes, bool]:
    request = pb.ListArtifactsRequest(journal=journal, study=study)
    if trial is not None:
        request.trial_number = trial
    return request.SerializeToString(), True


STRUCTURED: dict[str, st.SearchStrategy[tuple[Any, bool]]] = {
    "AppendLogs": bad_appends(),
    "ReadLogs": st.builds(lambda j, p, n: (pb.ReadLogsRequest(journal=j, position=p,
                                                              max_entries=n), True),
                          ANY_NAME, INT64, INT64).map(lambda t: (t[0].SerializeToString(), t[1])),
    "SaveSnapshot": bad_snapshots(),
    "LoadSnapshot": ANY_NAME.map(lambda j: (pb.LoadSnapshotRequest(journal=j)
                                            .SerializeToString(), True)),
    "DeleteJournal": BAD_NAME.map(lambda j: (pb.DeleteJournalRequest(journal=j)
                                             .SerializeToString(), False)),
    "RecordHeartbeat": bad_heartbeats(pb.RecordHeartbeatRequest),
    "GetHeartbeats": bad_heartbeats(pb.GetHeartbeatsRequest),
    "ShareToken": bad_shares(),
    "UploadArtifact": bad_uploads(),
    "DownloadArtifact": st.builds(_download, ANY_ID, INT64, st.text(max_size=40)),
    "DeleteArtifact": BAD_ID.map(lambda a: (pb.DeleteArtifactRequest(artifact_id=a)
                                            .SerializeToString(), False)),
    "ListArtifacts": st.builds(_listing, ANY_NAME, st.text(max_size=50), st.none() | INT64),
}


def valid_example(method: str) -> bytes:
    """A well-formed request of the method's type, to mutate. It names another journal than
    the protected one: a mutation may well be a valid request, and some of those write."""
    message = getattr(pb, METHODS[method].input_type.name)()
    for field, value in (("journal", "fuzz-other"), ("position", 3), ("trial_ids", [1, 2]),
                         ("client_id", CLIENT), ("sequence", 100), ("data", b"abc"),
                         ("artifact_id", "fuzz-other")):
        if field in message.DESCRIPTOR.fields_by_name:
            attr = getattr(message, field)
            attr.extend(value) if hasattr(attr, "extend") else setattr(message, field, value)
    if method == "AppendLogs":
        message.entries.append(b'{"op_code":10}')
    return message.SerializeToString()


OTHER_MESSAGES = st.sampled_from([
    pb.LogChunk(start=3, entries=[b"x"], journal_length=9),
    pb.WhoAmIResponse(namespace="someone-else", limits=pb.Limits(max_entry_bytes=1)),
    pb.SnapshotChunk(journal="../x", position=-1, data=b"\x00" * 10),
    pb.JournalInfo(name="fuzz-other", length=-5),
    pb.Heartbeat(trial_id=-1, age_ms=2**62),
]).map(lambda m: m.SerializeToString())


def mutations(method: str) -> st.SearchStrategy[bytes]:
    base = valid_example(method)
    return st.one_of(
        st.integers(0, len(base)).map(lambda n: base[:n]),  # truncated
        st.builds(lambda i, b: base[:i] + bytes([b]) + base[i + 1:],  # one byte changed
                  st.integers(0, max(len(base) - 1, 0)), st.integers(0, 255)),
        st.binary(min_size=1, max_size=16).map(lambda junk: base + junk),  # trailing junk
    )


def raw_payloads(method: str) -> st.SearchStrategy[Any]:
    small = st.one_of(
        st.binary(max_size=256), mutations(method), OTHER_MESSAGES,
        st.sampled_from([b"\xff" * 8, b"\x0a\xff\xff\xff\xff\x0f", b"\x08" + b"\xff" * 10]),
    )
    over_cap = st.integers(1_050_000, 1_300_000).map(lambda n: b"\x0a" * n)
    one = st.integers(0, 24).flatmap(lambda k: over_cap if k == 0 else small)
    if METHODS[method].client_streaming:
        return st.lists(one, max_size=3)
    return one


# -- the properties -----------------------------------------------------------------------------

@pytest.mark.parametrize("method", list(METHODS))
def test_raw_bytes_at_every_rpc(target: Target, method: str) -> None:
    run(raw_payloads(method), lambda p: target.check(method, p, may_pass=True), EXAMPLES)


@pytest.mark.parametrize("method", list(STRUCTURED))
def test_wrong_requests_are_refused(target: Target, method: str) -> None:
    run(STRUCTURED[method], lambda c: target.check(method, c[0], may_pass=c[1]), EXAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHODS))
def test_many_more_inputs(target: Target, method: str) -> None:
    run(raw_payloads(method), lambda p: target.check(method, p, may_pass=True), 10 * EXAMPLES)
    if method in STRUCTURED:
        run(STRUCTURED[method], lambda c: target.check(method, c[0], may_pass=c[1]),
            10 * EXAMPLES)
