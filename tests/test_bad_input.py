"""Bad requests get a clear status code and leave the journal exactly as it was."""

from __future__ import annotations

import json

import grpc
import pytest

from optuna_grpc_storage.v1 import journal_pb2 as pb

GOOD = json.dumps({"op_code": 0, "worker_id": "w", "study_name": "s", "directions": [1]}).encode()
INVALID = grpc.StatusCode.INVALID_ARGUMENT
TOO_BIG = grpc.StatusCode.RESOURCE_EXHAUSTED


def journal_bytes(raw, journal: str = "j") -> list[bytes]:
    return [e for c in raw.ReadLogs(pb.ReadLogsRequest(journal=journal)) for e in c.entries]


@pytest.fixture
def seeded(raw):
    raw.AppendLogs(pb.AppendLogsRequest(journal="j", entries=[GOOD, GOOD]))
    return raw


BAD_BATCHES = {
    "not json": ([b"{op_code: 1}"], INVALID, "not UTF-8 JSON"),
    "truncated json": ([b'{"op_code": 4, "x": [1, 2'], INVALID, "not UTF-8 JSON"),
    "not utf-8": ([b'{"op_code": 4, "x": "\xff\xfe"}'], INVALID, "not UTF-8 JSON"),
    "json array": ([b"[1, 2]"], INVALID, "not an object"),
    "json string": ([b'"op_code"'], INVALID, "not an object"),
    "no op_code": ([b'{"worker_id": "w"}'], INVALID, "op_code"),
    "op_code string": ([b'{"op_code": "4"}'], INVALID, "op_code"),
    "op_code float": ([b'{"op_code": 4.0}'], INVALID, "op_code"),
    "op_code bool": ([b'{"op_code": true}'], INVALID, "op_code"),
    "op_code unknown": ([b'{"op_code": 11}'], INVALID, "op_code"),
    "op_code negative": ([b'{"op_code": -1}'], INVALID, "op_code"),
    "empty entry": ([b""], INVALID, "not UTF-8 JSON"),
    "empty batch": ([], INVALID, "empty batch"),
    "one bad among good": ([GOOD, GOOD, b"{}", GOOD], INVALID, "entry 2"),
    "entry too large": ([b'{"op_code": 8, "x": "' + b"a" * (1 << 20) + b'"}'], TOO_BIG,
                        "limit is 1048576"),
    "too many entries": ([GOOD] * 10_001, TOO_BIG, "limit is 10000"),
}


@pytest.mark.parametrize("name", BAD_BATCHES)
def test_bad_batch_is_refused_whole(seeded, name: str) -> None:
    entries, code, words = BAD_BATCHES[name]
    before = journal_bytes(seeded)
    with pytest.raises(grpc.RpcError) as e:
        seeded.AppendLogs(pb.AppendLogsRequest(journal="j", entries=entries))
    assert e.value.code() == code, e.value.details()
    assert words in e.value.details()
    assert journal_bytes(seeded) == before


def test_batch_over_byte_limit(seeded) -> None:
    entry = b'{"op_code": 8, "x": "' + b"a" * 900_000 + b'"}'
    with pytest.raises(grpc.RpcError) as e:
        seeded.AppendLogs(pb.AppendLogsRequest(journal="j", entries=[entry] * 19))
    assert e.value.code() == TOO_BIG
    assert "limit is 16777216 bytes" in e.value.details()
    assert len(journal_bytes(seeded)) == 2


def test_message_over_grpc_limit_is_resource_exhausted(seeded) -> None:
    entries = [b'{"op_code": 8, "x": "' + b"a" * 1_000_000 + b'"}'] * 20  # > 17 MiB message
    with pytest.raises(grpc.RpcError) as e:
        seeded.AppendLogs(pb.AppendLogsRequest(journal="j", entries=entries))
    assert e.value.code() == TOO_BIG
    assert len(journal_bytes(seeded)) == 2


@pytest.mark.parametrize("request_", [
    pb.ReadLogsRequest(journal="j", position=-1),
    pb.ReadLogsRequest(journal="j", position=0, max_entries=-5),
])
def test_negative_read_positions(seeded, request_) -> None:
    with pytest.raises(grpc.RpcError) as e:
        list(seeded.ReadLogs(request_))
    assert e.value.code() == INVALID
    assert ">= 0" in e.value.details()


def test_negative_known_position(seeded) -> None:
    with pytest.raises(grpc.RpcError) as e:
        seeded.AppendLogs(pb.AppendLogsRequest(journal="j", entries=[GOOD], known_position=-3))
    assert e.value.code() == INVALID
    assert len(journal_bytes(seeded)) == 2


@pytest.mark.parametrize("name", ["", "../j", "a/b", "{j}", "j}", "a b", "ж", "x" * 129, ".j",
                                  "j\n", "j\x00"])
def test_bad_journal_names(seeded, name: str) -> None:
    with pytest.raises(grpc.RpcError) as e:
        seeded.AppendLogs(pb.AppendLogsRequest(journal=name, entries=[GOOD]))
    assert e.value.code() == INVALID
    assert "invalid journal name" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        list(seeded.ReadLogs(pb.ReadLogsRequest(journal=name)))
    assert e.value.code() == INVALID
    listed = [j.name for j in seeded.ListJournals(pb.ListJournalsRequest()).journals]
    assert listed == ["j"]


def test_snapshot_without_chunks_or_too_large(seeded) -> None:
    with pytest.raises(grpc.RpcError) as e:
        seeded.SaveSnapshot(iter([]))
    assert e.value.code() == INVALID
    with pytest.raises(grpc.RpcError) as e:
        seeded.SaveSnapshot(iter([pb.SnapshotChunk(journal="j", position=-1, data=b"x")]))
    assert e.value.code() == INVALID
    assert list(seeded.LoadSnapshot(pb.LoadSnapshotRequest(journal="j"))) == []


def test_bad_heartbeat_requests(seeded) -> None:
    for ids in ([], [-1]):
        with pytest.raises(grpc.RpcError) as e:
            seeded.RecordHeartbeat(pb.RecordHeartbeatRequest(journal="j", trial_ids=ids))
        assert e.value.code() == INVALID
