"""The journal service through the raw gRPC stub: ordering, unseen tails, idempotency,
chunked reads, snapshots, listing, deletion, heartbeats."""

from __future__ import annotations

import json

import grpc
import pytest

from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb


def entry(i: int) -> bytes:
    return json.dumps({"op_code": 9, "worker_id": "w", "trial_id": i,
                       "system_attr": {"i": i}}).encode()


def read_all(raw, journal: str, position: int = 0) -> list[bytes]:
    out: list[bytes] = []
    for chunk in raw.ReadLogs(pb.ReadLogsRequest(journal=journal, position=position)):
        assert chunk.start == position + len(out)
        out.extend(chunk.entries)
    return out


def append(raw, journal: str, entries: list[bytes], **kw) -> pb.AppendLogsResponse:
    return raw.AppendLogs(pb.AppendLogsRequest(journal=journal, entries=entries, **kw))


def test_append_then_read_in_order(raw) -> None:
    r1 = append(raw, "j", [entry(0), entry(1)])
    r2 = append(raw, "j", [entry(2)])
    assert (r1.first_position, r2.first_position) == (0, 2)
    assert read_all(raw, "j") == [entry(0), entry(1), entry(2)]
    assert read_all(raw, "j", 2) == [entry(2)]
    assert read_all(raw, "j", 3) == []


def test_append_returns_the_entries_the_caller_has_not_seen(raw) -> None:
    append(raw, "j", [entry(i) for i in range(5)])
    r = append(raw, "j", [entry(5)], known_position=2)
    assert r.first_position == 5 and r.unseen_complete
    assert list(r.unseen) == [entry(2), entry(3), entry(4)]
    r = append(raw, "j", [entry(6)], known_position=6)
    assert r.unseen_complete and list(r.unseen) == []


def test_unseen_tail_too_long_is_left_to_read_logs(raw) -> None:
    append(raw, "j", [entry(i) for i in range(1000)])  # server returns at most 1000 inline
    append(raw, "j", [entry(i) for i in range(1000, 1500)], known_position=1000)
    r = append(raw, "j", [entry(1500)], known_position=0)
    assert not r.unseen_complete and list(r.unseen) == []
    assert len(read_all(raw, "j")) == 1501


def test_retried_append_is_applied_once(raw) -> None:
    first = append(raw, "j", [entry(0)], client_id="c1", sequence=1)
    again = append(raw, "j", [entry(0)], client_id="c1", sequence=1)
    assert first.first_position == 0 and not first.duplicate
    assert again.duplicate and again.first_position == 0  # where the first copy landed
    nxt = append(raw, "j", [entry(1)], client_id="c1", sequence=2)
    assert not nxt.duplicate and nxt.first_position == 1
    with pytest.raises(grpc.RpcError) as e:  # a delayed copy of an older request
        append(raw, "j", [entry(0)], client_id="c1", sequence=1)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    other = append(raw, "j", [entry(2)], client_id="c2", sequence=1)
    assert not other.duplicate and other.first_position == 2
    assert read_all(raw, "j") == [entry(0), entry(1), entry(2)]


def test_known_position_beyond_the_end_is_refused(raw) -> None:
    append(raw, "j", [entry(0)])
    with pytest.raises(grpc.RpcError) as e:
        append(raw, "j", [entry(1)], known_position=5)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "beyond the end" in e.value.details()
    assert read_all(raw, "j") == [entry(0)]


def test_reads_stream_in_bounded_chunks(raw) -> None:
    big = [json.dumps({"op_code": 8, "worker_id": "w", "trial_id": i,
                       "user_attr": {"pad": "x" * 100_000}}).encode() for i in range(30)]
    for i in range(0, 30, 10):  # 3 MB in batches within the 1 MiB limit
        raw.AppendLogs(pb.AppendLogsRequest(journal="j", entries=big[i : i + 10],
                                            known_position=i))
    chunks = list(raw.ReadLogs(pb.ReadLogsRequest(journal="j", position=0)))
    assert len(chunks) >= 3  # 3 MB cannot fit one 1 MiB chunk
    assert all(sum(len(e) for e in c.entries) <= 1 << 20 for c in chunks)
    assert [e for c in chunks for e in c.entries] == big
    assert all(c.journal_length == 30 for c in chunks)
    part = list(raw.ReadLogs(pb.ReadLogsRequest(journal="j", position=10, max_entries=5)))
    assert [e for c in part for e in c.entries] == big[10:15]


def test_read_past_the_end_is_out_of_range(raw) -> None:
    append(raw, "j", [entry(0)])
    with pytest.raises(grpc.RpcError) as e:
        read_all(raw, "j", 2)
    assert e.value.code() == grpc.StatusCode.OUT_OF_RANGE


def test_entries_are_stored_on_one_line(raw) -> None:
    append(raw, "j", [b'{\n  "op_code": 10,\r\n  "x": "a b"\n}'])
    assert read_all(raw, "j") == [b'{  "op_code": 10,  "x": "a b"}']


def test_snapshots_only_move_forward(raw) -> None:
    append(raw, "j", [entry(i) for i in range(10)])
    assert list(raw.LoadSnapshot(pb.LoadSnapshotRequest(journal="j"))) == []
    data = bytes(range(256)) * 10_000  # 2.5 MB: several chunks each way
    chunks = [pb.SnapshotChunk(journal="j", position=8, data=data[:1 << 20])]
    step = 1 << 20
    chunks += [pb.SnapshotChunk(data=data[o : o + step]) for o in range(step, len(data), step)]
    saved = raw.SaveSnapshot(iter(chunks))
    assert saved.stored and saved.position == 8
    older = raw.SaveSnapshot(iter([pb.SnapshotChunk(journal="j", position=5, data=b"old")]))
    assert not older.stored and older.position == 8
    loaded = list(raw.LoadSnapshot(pb.LoadSnapshotRequest(journal="j")))
    assert loaded[0].position == 8 and loaded[0].total_size == len(data)
    assert b"".join(c.data for c in loaded) == data
    with pytest.raises(grpc.RpcError) as e:
        raw.SaveSnapshot(iter([pb.SnapshotChunk(journal="j", position=11, data=b"x")]))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_list_and_delete_journals(raw) -> None:
    append(raw, "a", [entry(0)])
    append(raw, "b", [entry(0), entry(1)])
    listed = {j.name: j.length for j in raw.ListJournals(pb.ListJournalsRequest()).journals}
    assert listed == {"a": 1, "b": 2}
    assert raw.DeleteJournal(pb.DeleteJournalRequest(journal="a")).deleted
    assert [j.name for j in raw.ListJournals(pb.ListJournalsRequest()).journals] == ["b"]
    assert read_all(raw, "a") == []
    assert not raw.DeleteJournal(pb.DeleteJournalRequest(journal="a")).deleted


def test_heartbeats_use_the_server_clock(raw) -> None:
    raw.AppendLogs(pb.AppendLogsRequest(journal="j", entries=[b'{"op_code": 10}']))
    rec = raw.RecordHeartbeat(pb.RecordHeartbeatRequest(journal="j", trial_ids=[3, 7]))
    got = raw.GetHeartbeats(pb.GetHeartbeatsRequest(journal="j", trial_ids=[3, 7, 9]))
    ages = {h.trial_id: h.age_ms for h in got.heartbeats}
    assert set(ages) == {3, 7}
    assert all(0 <= a < 5_000 for a in ages.values())
    assert got.server_time_ms >= rec.server_time_ms


def test_who_am_i(raw, proxy) -> None:
    me = raw.WhoAmI(pb.WhoAmIRequest())
    assert me.namespace.startswith("u") and me.auth_required
    assert me.limits.max_entry_bytes == 1 << 20
    assert me.limits.max_message_bytes > me.limits.max_batch_bytes
    assert me.server_version
