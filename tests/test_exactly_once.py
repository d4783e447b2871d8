"""Promise 1: an append lands exactly once, even when its response is lost or late and the
client retries with the same idempotency key (client_id, sequence).

The lost response is real: a relay between client and proxy holds the proxy's replies, the test
waits until the entry is in the journal, then resets the connection, so the client never hears
that its append went through.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from optuna_grpc_storage import GrpcJournalBackend
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from tests.conftest import RawClient
from tests.faults import doubled, entry, journal
from tests.ops_helpers import wait_for
from tests.relay import Relay


@pytest.fixture
def relay(proxy):
    relay = Relay(("127.0.0.1", proxy.port)).start()
    yield relay
    relay.close()


def append(raw: RawClient, entries: list[bytes], **kw) -> pb.AppendLogsResponse:
    return raw.AppendLogs(pb.AppendLogsRequest(journal="default", entries=entries, **kw))


def test_concurrent_copies_of_one_append_apply_once(raw) -> None:
    """Twenty copies of the same request race through the proxy: one applies, the others are
    told they are duplicates of it."""
    append(raw, [entry("other", 0)])
    request = dict(entries=[entry("c", 1), entry("c", 2)], client_id="c", sequence=1)
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: append(raw, **request), range(20)))
    assert sorted(a.duplicate for a in answers) == [False] + [True] * 19
    assert {a.first_position for a in answers} == {1}
    assert journal(raw) == [entry("other", 0), entry("c", 1), entry("c", 2)]


def test_sequences_apply_in_order_and_stale_copies_are_refused(raw) -> None:
    for seq in range(1, 6):
        assert not append(raw, [entry("c", seq)], client_id="c", sequence=seq).duplicate
        assert append(raw, [entry("c", seq)], client_id="c", sequence=seq).duplicate
    for stale in (1, 4):
        with pytest.raises(grpc.RpcError) as e:
            append(raw, [entry("c", stale)], client_id="c", sequence=stale)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "older than its last applied append (5)" in e.value.details()
    assert journal(raw) == [entry("c", i) for i in range(1, 6)]


def test_the_largest_sequence_still_deduplicates(raw) -> None:
    top = 10**14 - 1
    assert not append(raw, [entry("c", 1)], client_id="c", sequence=top).duplicate
    assert append(raw, [entry("c", 1)], client_id="c", sequence=top).duplicate
    with pytest.raises(grpc.RpcError) as e:
        append(raw, [entry("c", 2)], client_id="c", sequence=top + 1)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sequence" in e.value.details()
    assert journal(raw) == [entry("c", 1)]


def test_lost_response_then_retry_with_the_same_key(proxy, token, relay) -> None:
    """Protocol level: the append is applied, its response never arrives, the retry is
    recognised as a duplicate and answers with the original position."""
    direct = RawClient(proxy.endpoint, token)
    via_relay = RawClient(relay.endpoint, token)
    append(via_relay, [entry("seed", 0)])  # the connection is up before the fault
    request = dict(entries=[entry("c", 1)], client_id="c", sequence=1, known_position=1)
    outcome: dict[str, object] = {}

    def send() -> None:
        try:
            outcome["response"] = append(via_relay, **request)
        except grpc.RpcError as e:
            outcome["code"] = e.code()

    relay.stall(upstream=False, downstream=True)
    sender = threading.Thread(target=send)
    sender.start()
    wait_for(lambda: len(journal(direct)) == 2, what="the append reached Redis")
    assert relay.reset() >= 1  # the response dies with the connection
    relay.flow()
    sender.join(30)
    assert outcome == {"code": grpc.StatusCode.UNAVAILABLE}

    retried = append(via_relay, **request)
    assert retried.duplicate and retried.first_position == 1
    assert retried.unseen_complete and list(retried.unseen) == []
    assert journal(direct) == [entry("seed", 0), entry("c", 1)]


def test_client_retries_a_lost_response_and_lands_once(proxy, token, relay) -> None:
    """End to end: GrpcJournalBackend.append_logs survives the lost response by itself, its
    view of the journal is right, and the next append carries on."""
    backend = GrpcJournalBackend(relay.endpoint, token=token, timeout=10, retry_deadline=60)
    direct = RawClient(proxy.endpoint, token)
    backend.append_logs([{"op_code": 10, "n": 0}])
    relay.stall(upstream=False, downstream=True)
    done = threading.Event()
    worker = threading.Thread(target=lambda: (backend.append_logs([{"op_code": 10, "n": 1}]),
                                              done.set()))
    worker.start()
    wait_for(lambda: len(journal(direct)) == 2, what="the append reached Redis")
    relay.reset()
    relay.flow()
    worker.join(60)
    assert done.is_set()
    assert backend.take_last_append() == (1, 1)  # the position of the first, and only, application
    backend.append_logs([{"op_code": 10, "n": 2}])
    stored = journal(direct)
    assert stored == [b'{"op_code":10,"n":0}', b'{"op_code":10,"n":1}', b'{"op_code":10,"n":2}']
    assert backend.read_logs(0) == [{"op_code": 10, "n": i} for i in range(3)]


def test_client_retries_a_timed_out_append_and_lands_once(proxy, token, relay) -> None:
    """The reply is only late: the call times out after 1 s, is retried with the same key on
    the same (still stalled) connection, and succeeds once the network moves again."""
    backend = GrpcJournalBackend(relay.endpoint, token=token, timeout=1, retry_deadline=60)
    direct = RawClient(proxy.endpoint, token)
    backend.append_logs([{"op_code": 10, "n": 0}])
    relay.stall(upstream=False, downstream=True)
    started = time.monotonic()
    worker = threading.Thread(target=lambda: backend.append_logs([{"op_code": 10, "n": 1}]))
    worker.start()
    wait_for(lambda: len(journal(direct)) == 2, what="the append reached Redis")
    time.sleep(2.5)  # more than two timeouts: the first attempt and a retry have expired
    relay.flow()
    worker.join(60)
    assert not worker.is_alive()
    assert time.monotonic() - started > 2.5
    assert backend.take_last_append() == (1, 1)
    assert journal(direct) == [b'{"op_code":10,"n":0}', b'{"op_code":10,"n":1}']
    assert doubled(journal(direct)) == []
