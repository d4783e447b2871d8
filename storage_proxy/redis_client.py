"""One place that turns a Redis URL into an asyncio client with the proxy's timeouts."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff


def connect(url: str) -> Any:
    """A client for redis://, rediss:// or unix:// URLs.

    Timeouts are short and there is a single quick retry (enough to replace a connection that
    Redis closed while idle), so an outage turns into UNAVAILABLE for the caller within seconds
    instead of a hung call. Retrying an append is safe: the script deduplicates it.

    RuntimeError is retried too: under uvloop, writing to a pooled connection that Redis (or
    the network) has closed raises "unable to perform operation on <TCPTransport closed=True>"
    instead of an OSError. Nothing was sent; redis-py drops the connection and the retry
    goes out on a new one.
    """
    return aioredis.Redis.from_url(
        url,
        socket_timeout=5.0,
        socket_connect_timeout=2.0,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=1),
        retry_on_error=[RuntimeError],
        health_check_interval=30,
    )
