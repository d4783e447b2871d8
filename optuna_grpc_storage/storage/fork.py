"""What the client does when its process forks (os.fork, multiprocessing's "fork" start
method, a fork-context Pool or ProcessPoolExecutor).

gRPC's C core registers pthread_atfork handlers that quiesce it and give the child a fresh
polling engine, but they give up ("Other threads are currently calling into gRPC, skipping
fork() handlers") whenever any other thread is inside gRPC, and a client with a live Session
stream always has one: the channel's spin thread waits in grpc_completion_queue_next for as
long as the stream is open. The child then inherits the parent's epoll set and pollers and
crashes in them (SIGSEGV, or SIGABRT on a failed check in ev_epoll1_linux.cc).

So, before every fork: no new call may start (the gate closes), every stream and channel of
every Connection is closed (which cancels calls in flight: their Connection.call sees
CANCELLED, which it retries, and the retry waits at the gate), and the fork waits until no
other thread is inside a call. gRPC is then idle and its own handlers run. After the fork,
the parent opens the gate and reconnects lazily on the next call; the child resets every
client's per-process state (locks, channel, stream, idempotency identity, Optuna worker id)
and connects lazily too.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc

log = logging.getLogger(__name__)

DRAIN_TIMEOUT = 10.0  # longest a fork waits for calls in other threads to leave gRPC
# After closing channels, how long to let gRPC's own threads finish tearing them down: a
# fork that catches an EventEngine thread holding a core lock leaves that lock held forever
# in the child (seen as a child hanging in its first grpc.insecure_channel()).
SETTLE = float(os.environ.get("OGS_FORK_SETTLE_SECONDS", "0.1"))
STATE_LOCK_TIMEOUT = 2.0  # longest it waits for a storage operation to finish


class ForkInProgress(grpc.RpcError):
    """Raised to a call that tries to open a channel or stream while the process forks;
    UNAVAILABLE, so Connection.call retries it once the fork is over."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "the process is forking"


class _Gate:
    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.forking = False
        self.inside: dict[int, int] = {}  # thread ident -> depth of calls in progress


_gate = _Gate()
# Every object with per-process state: Connection, SessionStream, the stream watchdog,
# GrpcJournalBackend, GrpcJournalStorage. Each defines some of the hooks _fork_prepare,
# _fork_quiesce, _fork_close, _fork_parent, _fork_child, called in that order.
_objects: weakref.WeakSet[Any] = weakref.WeakSet()


def track(obj: Any) -> None:
    _objects.add(obj)


def forking() -> bool:
    return _gate.forking


@contextmanager
def calling() -> Iterator[None]:
    """Around every attempt of a call: waits while a fork is under way, then counts the
    thread as inside gRPC until the attempt ends."""
    gate, me = _gate, threading.get_ident()
    with gate.cond:
        while gate.forking and me not in gate.inside:  # a nested call never waits
            gate.cond.wait()
        gate.inside[me] = gate.inside.get(me, 0) + 1
    try:
        yield
    finally:
        _leave(gate, me)


@contextmanager
def unless_forking() -> Iterator[bool]:
    """For background work (the stream watchdog): True and counted inside, or False at once
    if a fork is under way."""
    gate, me = _gate, threading.get_ident()
    with gate.cond:
        entered = not gate.forking
        if entered:
            gate.inside[me] = gate.inside.get(me, 0) + 1
    try:
        yield entered
    finally:
        if entered:
            _leave(gate, me)


def _leave(gate: _Gate, me: int) -> None:
    with gate.cond:
        if gate.inside.get(me, 0) <= 1:
            gate.inside.pop(me, None)
            gate.cond.notify_all()
        else:
            gate.inside[me] -= 1


def _each(hook: str) -> list[Any]:
    results = []
    for obj in list(_objects):
        method = getattr(obj, hook, None)
        if method is not None:
            try:
                results.append(method())
            except Exception:  # a hook must never break the fork
                log.exception("fork hook %s of %r failed", hook, obj)
    return results


def _before() -> None:
    _each("_fork_prepare")  # storages: let operations in progress finish (bounded)
    gate, me = _gate, threading.get_ident()
    with gate.cond:
        gate.forking = True
    deadline = time.monotonic() + DRAIN_TIMEOUT
    closed = False
    while True:
        _each("_fork_quiesce")  # sessions drop their streams,
        closed |= any(_each("_fork_close"))  # then connections close their channels
        with gate.cond:
            others = [t for t in gate.inside if t != me]
            if not others:
                break
            if time.monotonic() > deadline:
                log.warning("forking while %d thread(s) are still inside gRPC calls; gRPC "
                            "may skip its fork handlers", len(others))
                break
            gate.cond.wait(0.05)
    if closed and SETTLE > 0:
        time.sleep(SETTLE)


def _after_in_parent() -> None:
    with _gate.cond:
        _gate.forking = False
        _gate.cond.notify_all()
    _each("_fork_parent")


def _after_in_child() -> None:
    global _gate
    _gate = _Gate()  # the old one's lock may have been held by a thread the child lacks
    _each("_fork_child")


_installed = False
_install_lock = threading.Lock()


def install() -> None:
    """Register the handlers; called right after the process's first channel is made. By
    then gRPC has registered its own Python handlers (it does so on first channel creation),
    and os.register_at_fork runs `before` hooks in reverse order: ours run first, while the
    channels' threads can still finish (gRPC's, with GRPC_ENABLE_FORK_SUPPORT=1, would park
    them and a channel.close() from ours would then wait forever)."""
    global _installed
    if _installed or not hasattr(os, "register_at_fork"):
        return
    with _install_lock:
        if not _installed:
            os.register_at_fork(before=_before, after_in_parent=_after_in_parent,
                                after_in_child=_after_in_child)
            _installed = True
