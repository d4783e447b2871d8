"""Bad requests get a clear status code and leave the journal exactly as it was."""

from __future__ import annotations

import json

import grpc
import pytest
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    distribution_to_json,
)

from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb

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
    "entry too large": ([b'{"op_code": 10, "x": "' + b"a" * (1 << 20) + b'"}'], TOO_BIG,
                        "limit is 1048576"),
    "too many entries": ([GOOD] * 1_001, TOO_BIG, "limit is 1000"),
    # Deeper than the parser's recursion limit: it answered INTERNAL and logged a traceback.
    "json 5,000 levels deep": ([b'{"op_code": 10, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"],
                               INVALID, "more than 100 levels deep"),
    "objects 5,000 levels deep": ([b'{"op_code": 10, "x": ' + b'{"a": ' * 5000 + b"1"
                                   + b"}" * 5000 + b"}"], INVALID, "more than 100 levels deep"),
    "json 101 levels deep": ([b'{"op_code": 10, "x": ' + b"[" * 100 + b"]" * 100 + b"}"],
                             INVALID, "more than 100 levels deep"),
}

FLOAT = distribution_to_json(FloatDistribution(0, 1))
CHOICE = distribution_to_json(CategoricalDistribution(["a", "b"]))
T0 = "2026-01-01T00:00:00+00:00"
# Well-formed JSON objects with a valid op_code that Optuna's replay could not apply: each
# would break the study for every client that reads it.
POISON = {
    "no worker_id": {"op_code": 1, "study_id": 0},
    "directions not a list": {"op_code": 0, "worker_id": "w", "study_name": "s",
                              "directions": 1},
    "unknown direction": {"op_code": 0, "worker_id": "w", "study_name": "s", "directions": [7]},
    "two attrs at once": {"op_code": 2, "worker_id": "w", "study_id": 0,
                          "user_attr": {"a": 1, "b": 2}},
    "study_id a string": {"op_code": 3, "worker_id": "w", "study_id": "0",
                          "system_attr": {"a": 1}},
    "trial without datetime_start": {"op_code": 4, "worker_id": "w", "study_id": 0},
    "bad datetime": {"op_code": 4, "worker_id": "w", "study_id": 0, "datetime_start": "noon"},
    "param outside its choices": {"op_code": 4, "worker_id": "w", "study_id": 0,
                                  "datetime_start": T0, "distributions": {"c": CHOICE},
                                  "params": {"c": 5}},
    "param without distribution": {"op_code": 4, "worker_id": "w", "study_id": 0,
                                   "datetime_start": T0, "params": {"x": 0.5}},
    "value and values": {"op_code": 4, "worker_id": "w", "study_id": 0, "datetime_start": T0,
                         "value": 1.0, "values": [1.0]},
    "unreadable distribution": {"op_code": 5, "worker_id": "w", "trial_id": 0,
                                "param_name": "x", "param_value_internal": 0.5,
                                "distribution": '{"name": "Nope"}'},
    "distribution as object": {"op_code": 5, "worker_id": "w", "trial_id": 0,
                               "param_name": "x", "param_value_internal": 0.5,
                               "distribution": {"name": "FloatDistribution"}},
    "finished without datetime_complete": {"op_code": 6, "worker_id": "w", "trial_id": 0,
                                           "state": 1, "values": [1.0]},
    "unknown state": {"op_code": 6, "worker_id": "w", "trial_id": 0, "state": 9,
                      "values": None},
    "values not numbers": {"op_code": 6, "worker_id": "w", "trial_id": 0, "state": 1,
                           "values": ["x"], "datetime_complete": T0},
    "step not an integer": {"op_code": 7, "worker_id": "w", "trial_id": 0, "step": 1.5,
                            "intermediate_value": 1.0},
    "trial_id a bool": {"op_code": 8, "worker_id": "w", "trial_id": True,
                        "user_attr": {"a": 1}},
}


@pytest.mark.parametrize("name", POISON)
def test_entries_optuna_could_not_replay_are_refused(seeded, name: str) -> None:
    before = journal_bytes(seeded)
    with pytest.raises(grpc.RpcError) as e:
        seeded.AppendLogs(pb.AppendLogsRequest(journal="j", entries=[
            GOOD, json.dumps(POISON[name]).encode()]))
    assert e.value.code() == INVALID
    assert e.value.details().startswith("entry 1 (op_code ")
    assert journal_bytes(seeded) == before


def test_every_kind_of_valid_entry_is_accepted(seeded) -> None:
    valid = [
        {"op_code": 4, "worker_id": "w", "study_id": 0, "datetime_start": None, "state": 4,
         "value": None, "values": [1.0, float("nan")], "datetime_complete": T0,
         "distributions": {"x": FLOAT, "c": CHOICE}, "params": {"x": 0.5, "c": 1},
         "user_attrs": {}, "system_attrs": {}, "intermediate_values": {"3": 0.5}},
        {"op_code": 5, "worker_id": "w", "trial_id": 0, "param_name": "c",
         "param_value_internal": 1, "distribution": CHOICE},
        {"op_code": 6, "worker_id": "w", "trial_id": 0, "state": 0, "values": None,
         "datetime_start": T0},
        {"op_code": 7, "worker_id": "w", "trial_id": 0, "step": 2,
         "intermediate_value": float("inf")},
        {"op_code": 10, "anything": True},
    ]
    seeded.AppendLogs(pb.AppendLogsRequest(journal="j", entries=[
        json.dumps(v).encode() for v in valid]))
    assert len(journal_bytes(seeded)) == 2 + len(valid)


@pytest.mark.parametrize("name", BAD_BATCHES)
def test_bad_batch_is_refused_whole(seeded, proxy, name: str) -> None:
    entries, code, words = BAD_BATCHES[name]
    before = journal_bytes(seeded)
    with pytest.raises(grpc.RpcError) as e:
        seeded.AppendLogs(pb.AppendLogsRequest(journal="j", entries=entries))
    assert e.value.code() == code, e.value.details()
    assert words in e.value.details()
    assert journal_bytes(seeded) == before
    assert "Traceback" not in proxy.log_path.read_text(errors="replace")


def test_json_100_levels_deep_is_accepted_and_read_back(seeded) -> None:
    deep = b'{"op_code": 10, "x": ' + b"[" * 99 + b"]" * 99 + b"}"
    seeded.AppendLogs(pb.AppendLogsRequest(journal="j", entries=[deep]))
    assert journal_bytes(seeded)[-1] == deep


def test_batch_over_byte_limit(seeded) -> None:
    entry = b'{"op_code": 8, "x": "' + b"a" * 900_000 + b'"}'
    with pytest.raises(grpc.RpcError) as e:
        seeded.AppendLogs(pb.AppendLogsRequest(journal="j", entries=[entry] * 2))
    assert e.value.code() == TOO_BIG
    assert "limit is 1048576 bytes" in e.value.details()
    assert len(journal_bytes(seeded)) == 2


def test_message_over_grpc_limit_is_resource_exhausted(seeded) -> None:
    entries = [b'{"op_code": 8, "x": "' + b"a" * 1_000_000 + b'"}'] * 3  # > 2 MiB message
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
