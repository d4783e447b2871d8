"""One long-lived bidirectional stream per process, carrying this client's appends and reads.

A message on an open stream costs the proxy about a third less CPU than a new unary call, and
the round trip is about a third shorter; Optuna makes one round trip per write, so this is most
of a single worker's speed. Requests go one at a time and are answered in order. A request
that fails is answered in-band and the stream goes on; a stream that breaks (proxy restarted
or draining, network cut, deadline passed) is closed and the caller's retry opens a new one,
possibly to another replica — safe, since every append carries its idempotency key.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from optuna_grpc_storage.storage import fork
from optuna_grpc_storage.storage.connection import Connection, retry_hint

_CODES = {code.value[0]: code for code in grpc.StatusCode}
# How often pending requests' deadlines are checked: a twentieth of the shortest timeout in
# use, within these bounds (1 s for the default 30 s). A tick costs CPU in every worker
# process whether anything is pending or not, and a 50 ms tick in each of 32 workers was
# ~0.5 ms of CPU per trial at this machine's trial rates.
WATCHDOG_TICK = 0.05
WATCHDOG_MAX_TICK = 1.0
REST_SECONDS = 5.0  # at least this long on unary calls after the proxy refused a stream


class StreamError(grpc.RpcError):
    """A failed request on the stream, shaped like the error of a unary call."""

    def __init__(self, code: grpc.StatusCode, details: str,
                 retry_after: float | None = None) -> None:
        super().__init__(details)
        self._code = code
        self._details = details
        self.retry_after = retry_after  # seconds: the proxy's hint (a per-user limit)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class SessionStream:
    """The Session RPC of this process: requests go one at a time and are answered in order."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.unsupported = False  # the server has no Session method: use unary calls
        self._init_local_state()
        fork.track(self)

    @property
    def resting(self) -> bool:
        """The proxy refused this user another stream for now: use unary calls meanwhile."""
        return time.monotonic() < self._rest_until

    def _init_local_state(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()  # one request at a time
        self._call: Any = None  # the stream, a grpc rendezvous
        self._ender: weakref.finalize | None = None
        self._requests: queue.SimpleQueue[pb.SessionRequest | None] | None = None
        self._deadline: float | None = None
        self.tick = WATCHDOG_MAX_TICK  # what this session's timeout asks of the watchdog
        self._expired = False
        self._rest_until = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {"connection": self.connection, "unsupported": self.unsupported}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_local_state()
        fork.track(self)

    def _fork_quiesce(self) -> None:
        """Before a fork: end the request feed (so the stream's sending thread leaves) and
        cancel the stream. Without waiting for the lock: its holder may be waiting for an
        answer, which then fails with CANCELLED and is retried after the fork."""
        if self._lock.acquire(blocking=False):
            try:
                self._close()  # idle: drop the stream, the next request opens a new one
            finally:
                self._lock.release()
            return
        requests, call = self._requests, self._call
        if requests is not None:
            requests.put(None)
        if call is not None:
            call.cancel()

    def _fork_child(self) -> None:
        self._forget_inherited()

    def _forget_inherited(self) -> None:
        """In a child: drop the parent's stream without touching it (no cancel, not even at
        exit), and start afresh."""
        if self._ender is not None:
            self._ender.detach()
        self._init_local_state()

    def request(self, request: pb.SessionRequest, timeout: float,
                on_message: Callable[[pb.SessionResponse], None] | None = None,
                ) -> list[pb.SessionResponse]:
        """Send one request and return the messages answering it (on_message sees each as it
        arrives). Raises a grpc.RpcError: in-band failures keep the stream, others close it."""
        if self._pid != os.getpid():  # never touch a stream inherited through fork
            self._forget_inherited()
        with self._lock:
            self.tick = min(max(timeout / 20, WATCHDOG_TICK), WATCHDOG_MAX_TICK)
            if self._call is None:
                self._open()
            assert self._requests is not None
            self._expired = False
            self._deadline = time.monotonic() + timeout
            try:
                self._requests.put(request)
                return self._answer(on_message)
            except StreamError:
                raise
            except grpc.RpcError as e:
                self._close()
                if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                    self.unsupported = True
                hint = retry_hint(e)
                if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and hint is not None:
                    self._rest_until = time.monotonic() + max(hint, REST_SECONDS)
                if self._expired:
                    raise StreamError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                       f"no answer within {timeout:.1f}s") from None
                raise
            finally:
                self._deadline = None

    def _answer(self, on_message: Callable[[pb.SessionResponse], None] | None,
                ) -> list[pb.SessionResponse]:
        out = []
        while True:
            try:
                message = next(self._call)
            except StopIteration:
                self._close()
                raise StreamError(grpc.StatusCode.UNAVAILABLE,
                                   "the proxy ended the session (draining)") from None
            if message.WhichOneof("result") == "error":
                error = message.error
                raise StreamError(_CODES.get(error.code, grpc.StatusCode.UNKNOWN),
                                  error.message,
                                  error.retry_after_ms / 1000 if error.retry_after_ms else None)
            if on_message is not None:
                on_message(message)
            out.append(message)
            if message.last:
                return out

    def _open(self) -> None:
        requests: queue.SimpleQueue[pb.SessionRequest | None] = queue.SimpleQueue()

        def feed() -> Iterator[pb.SessionRequest]:
            while (item := requests.get()) is not None:
                yield item

        self._requests = requests
        self._call = self.connection.stub.Session(feed(), metadata=self.connection.metadata)
        # Dropped without close(), the stream still ends, and its sending thread with it.
        self._ender = weakref.finalize(self, _end, requests, self._call)
        self._ender.atexit = False  # at exit the channel goes anyway
        _watchdog.watch(self)

    def _close(self) -> None:
        if self._ender is not None:
            self._ender()  # ends the feed and cancels the stream, once
        self._call = self._requests = self._ender = None

    def close(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                self._close()

    def expire_if_late(self, now: float) -> None:
        deadline, call = self._deadline, self._call
        if deadline is not None and call is not None and now > deadline:
            self._expired = True
            call.cancel()


def _end(requests: queue.SimpleQueue[pb.SessionRequest | None], call: Any) -> None:
    requests.put(None)
    call.cancel()


class _Watchdog:
    """One thread per process that cancels a session's stream when a request outlives its
    deadline (a stream has no per-message deadline of its own)."""

    def __init__(self) -> None:
        self._sessions: weakref.WeakSet[SessionStream] = weakref.WeakSet()
        self._pid = -1
        self._lock = threading.Lock()
        fork.track(self)

    def _fork_child(self) -> None:  # its thread is gone; the next watch() starts one
        self._sessions = weakref.WeakSet()
        self._pid = -1
        self._lock = threading.Lock()

    def watch(self, session: SessionStream) -> None:
        with self._lock:
            self._sessions.add(session)
            if self._pid != os.getpid():  # first use in this process (threads die at fork)
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="ogs-session-deadlines",
                                 daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(min((s.tick for s in list(self._sessions)), default=WATCHDOG_MAX_TICK))
            with fork.unless_forking() as running:  # cancel() enters gRPC
                if running:
                    now = time.monotonic()
                    for session in list(self._sessions):
                        session.expire_if_late(now)


_watchdog = _Watchdog()
