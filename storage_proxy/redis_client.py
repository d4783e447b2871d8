"""One place that turns a Redis URL into an asyncio client with the proxy's timeouts."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

MAX_CONNECTIONS = 100  # to Redis, per proxy process
POOL_WAIT = 10.0  # seconds a command may wait for a free connection


def connect(url: str) -> Any:
    """A client for redis://, rediss:// or unix:// URLs.

    Timeouts are short and there is a single quick retry (enough to replace a connection that
    Redis closed while idle), so an outage turns into UNAVAILABLE for the caller within seconds
    instead of a hung call. Retrying an append is safe: the script deduplicates it.

    RuntimeError is retried too: under uvloop, writing to a pooled connection that Redis (or
    the network) has closed raises "unable to perform operation on <TCPTransport closed=True>"
    instead of an OSError. Nothing was sent; redis-py drops the connection and the retry
    goes out on a new one.

    The pool is a blocking one: when more commands are in flight than it has connections
    (Redis slow for a moment under hundreds of callers), a call waits up to POOL_WAIT seconds
    for a connection instead of failing at once with MaxConnectionsError.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT,
        socket_timeout=5.0,
        socket_connect_timeout=2.0,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=1),
        retry_on_error=[RuntimeError],
        health_check_interval=30,
    )
    return aioredis.Redis.from_pool(pool)
