"""Per-user fairness in one server process: how many Session streams and how many other calls
one user may have open at once, how many bytes of appends in progress, and how many requests
per second (a token bucket, a Session request counting as one), so that one user's burst
cannot take a process (its CPU or its memory) from the others.

A refusal is RESOURCE_EXHAUSTED with a retry hint (RequestError.retry_after): clients wait that
long before they try again, and a client whose Session stream was refused uses unary calls
meanwhile. The limits are per process: a user may open `max_streams` streams on each process
of each replica.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from optuna_grpc_storage.protocol.errors import RequestError
from storage_proxy import metrics

BUSY_RETRY_SECONDS = 0.25  # the hint when a stream or call limit refuses
SWEEP_AT = 10_000  # users remembered before idle ones are forgotten


@dataclass
class _User:
    tokens: float
    stamp: float
    streams: int = 0
    calls: int = 0
    held: int = 0  # bytes of appends in progress


class Fairness:
    """0 for a limit means none."""

    def __init__(self, max_streams: int = 256, max_calls: int = 64, rate: float = 1000.0,
                 burst: float | None = None, max_bytes: int = 32 << 20,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_streams = max_streams
        self.max_calls = max_calls
        self.max_bytes = max_bytes
        self.rate = rate
        self.burst = burst if burst is not None else 2 * rate
        self.clock = clock
        self._users: dict[str, _User] = {}

    def _user(self, namespace: str, now: float) -> _User:
        user = self._users.get(namespace)
        if user is None:
            if len(self._users) >= SWEEP_AT:
                self._sweep(now)
            user = self._users[namespace] = _User(self.burst, now)
        return user

    def _sweep(self, now: float) -> None:
        """Forget users with nothing open and a full bucket: they carry no information."""
        for namespace, u in list(self._users.items()):
            idle = not (u.streams or u.calls or u.held)
            if idle and u.tokens + (now - u.stamp) * self.rate >= self.burst:
                del self._users[namespace]

    def admit(self, namespace: str) -> None:
        """Take one request from the user's bucket, or refuse with the time until one fills."""
        if self.rate <= 0:
            return
        now = self.clock()
        user = self._user(namespace, now)
        user.tokens = min(self.burst, user.tokens + (now - user.stamp) * self.rate)
        user.stamp = now
        if user.tokens < 1:
            metrics.record_fairness_refusal("rate")
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"user {namespace!r} is over {self.rate:g} requests/s on this proxy process "
                "(--max-user-requests-per-second); retry after the hinted delay",
                retry_after=(1 - user.tokens) / self.rate)
        user.tokens -= 1

    def open(self, namespace: str, stream: bool) -> Callable[[], None]:
        """Hold one of the user's Session streams (stream) or other calls until the returned
        function is called, or refuse if they hold their limit already."""
        limit = self.max_streams if stream else self.max_calls
        user = self._user(namespace, self.clock())
        held = user.streams if stream else user.calls
        if limit > 0 and held >= limit:
            what, flag = (("Session streams", "--max-user-streams") if stream
                          else ("calls", "--max-user-calls"))
            metrics.record_fairness_refusal("streams" if stream else "calls")
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"user {namespace!r} has {held} {what} open on this proxy process, the limit "
                f"({flag}); retry after the hinted delay", retry_after=BUSY_RETRY_SECONDS)
        if stream:
            user.streams += 1
        else:
            user.calls += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                if stream:
                    user.streams -= 1
                else:
                    user.calls -= 1

        return release

    def hold(self, namespace: str, nbytes: int) -> Callable[[], None]:
        """Count an append's bytes against the user's until the returned function is called,
        or refuse it if they have max_bytes in progress already (one append always passes)."""
        user = self._user(namespace, self.clock())
        if self.max_bytes > 0 and user.held and user.held + nbytes > self.max_bytes:
            metrics.record_fairness_refusal("bytes")
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"user {namespace!r} has {user.held} bytes of appends in progress on this "
                "proxy process (--max-user-inflight-bytes); retry after the hinted delay",
                retry_after=BUSY_RETRY_SECONDS)
        user.held += nbytes
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                user.held -= nbytes

        return release
