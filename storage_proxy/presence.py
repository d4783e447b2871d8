"""Which proxies use this Redis: each server process says so every few seconds, so that
`storage-proxy token issue` can tell whether a running proxy will read the token it writes,
and so that, while a replica of an earlier journal layout still serves (a rolling upgrade),
the append script also keeps each client's record where that replica looks for it.

A token written to a Redis (or under a key prefix) that no proxy serves is refused by the
proxy the user meant, and nothing else would say why. Every server process keeps one member
of a small sorted set fresh (score: the time it last said so); the token commands read the
members said within the last half minute. Nothing here is needed to serve: a failed update
(Redis down, or full) is retried every second, so that once Redis is back the token commands
see this proxy again at once, not up to INTERVAL later (an outage longer than FRESH made it
stale).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from optuna_grpc_storage.protocol.version import __version__
from storage_proxy.redis import keys

log = logging.getLogger("storage_proxy")

INTERVAL = 10.0  # seconds between two updates of one process
RETRY = 1.0  # seconds before trying again after an update failed
FRESH = 30.0  # a member older than this is a proxy that is gone
FORGET = 300.0  # members older than this are deleted
KEEP = 86400  # seconds the set outlives the last proxy that used this Redis
# Said by proxies that keep deduplication records in the usage hash (lua/append.lua); a member
# without it is a replica that reads only the per-client keys.
LAYOUT = "records in usage"


def member(port: int, auth: str) -> str:
    return (f"pid {os.getpid()} on {socket.gethostname()}, port {port}, version "
            f"{__version__}, auth {auth}, {LAYOUT}")


def older_layout(members: list[str]) -> bool:
    """Whether one of these proxies reads deduplication records only from per-client keys."""
    return any(LAYOUT not in m for m in members)


async def announce(redis: Any, prefix: str, who: str, interval: float = INTERVAL,
                   on_members: Callable[[list[str]], None] | None = None) -> None:
    """Keep `who` fresh in the set until cancelled; then remove it. Each time, on_members
    hears who else is fresh."""
    key = keys.proxies(prefix)
    try:
        while True:
            pause = interval
            try:
                now = time.time()
                pipe = redis.pipeline(transaction=False)
                pipe.zadd(key, {who: now})
                pipe.zremrangebyscore(key, "-inf", now - FORGET)
                pipe.expire(key, KEEP)
                pipe.zrangebyscore(key, now - FRESH, "+inf")
                *_, fresh = await pipe.execute()
                if on_members is not None:
                    on_members([m.decode() if isinstance(m, bytes) else str(m) for m in fresh])
            except Exception as e:  # serving does not depend on it
                log.debug("could not record this proxy in %s: %s", key, e)
                pause = min(interval, RETRY)
            await asyncio.sleep(pause)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(redis.zrem(key, who), 1.0)


async def running(redis: Any, prefix: str) -> list[str]:
    """The server processes that said, within FRESH seconds, that they use this Redis with
    this key prefix."""
    members = await redis.zrangebyscore(keys.proxies(prefix), time.time() - FRESH, "+inf")
    return [m.decode() if isinstance(m, bytes) else str(m) for m in members]
