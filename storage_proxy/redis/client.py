"""The proxy's asyncio Redis clients, one kind per topology (see urls.py), with the proxy's
timeouts, and every round trip counted and timed in the metrics under its command's name (or
its Lua script's file name)."""

from __future__ import annotations

import hashlib
from time import perf_counter
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection, ConnectionPool, SSLConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff

from storage_proxy import metrics
from storage_proxy.redis import scripts
from storage_proxy.redis.urls import RedisTarget, parse_url

# Timeouts are short and there is a single quick retry (enough to replace a connection that
# Redis closed while idle), so an outage turns into UNAVAILABLE for the caller within seconds
# instead of a hung call. Retrying an append is safe: the script deduplicates it.
_TIMEOUTS: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 2.0}


MAX_CONNECTIONS = 100  # to Redis, per proxy process
POOL_WAIT = 10.0  # seconds a command may wait for a free connection


def _retry() -> Retry:
    return Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=1)


# --- metrics of every round trip -------------------------------------------------------------

def is_out_of_memory(e: BaseException) -> bool:
    """Redis refused a write at its memory limit (Redis 7 says so before a script runs,
    Redis 6 from inside it, as a plain script error)."""
    return isinstance(e, redis.exceptions.OutOfMemoryError) or (
        isinstance(e, redis.exceptions.ResponseError) and "OOM command not allowed" in str(e))


def error_label(e: Exception) -> str | None:
    """The error label of a failed round trip; None for a script's refusal (an answer)."""
    if is_out_of_memory(e):
        return "OutOfMemoryError"
    if type(e) is redis.exceptions.ResponseError and scripts.is_refusal(e):
        return None
    return type(e).__name__


def _command_label(args: tuple[Any, ...]) -> str:
    command = args[0] if isinstance(args[0], str) else str(args[0])
    upper = command.upper()
    if upper in ("EVALSHA", "EVAL") and len(args) > 1:
        key = args[1] if upper == "EVALSHA" else hashlib.sha1(str(args[1]).encode()).hexdigest()
        return scripts.name_of(str(key))
    return upper.split(" ", 1)[0].lower()


async def _timed(call: Any, args: tuple[Any, ...]) -> Any:
    label = _command_label(args)
    start = perf_counter()
    error = None
    try:
        return await call
    except redis.exceptions.NoScriptError:
        raise  # the script object loads the script and sends it again: not an outage
    except Exception as e:
        error = error_label(e)
        raise
    finally:
        metrics.redis_round_trip(label, perf_counter() - start, error)


class InstrumentedRedis(aioredis.Redis):
    """redis.asyncio.Redis that counts and times each command (standalone and Sentinel)."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        return await _timed(super().execute_command(*args, **options), args)


class InstrumentedCluster(RedisCluster):
    """RedisCluster that counts and times each command, and never runs out of seed nodes.

    Older redis-py versions drop a seed node from `startup_nodes` each time it fails to
    answer; once all are gone the client stays broken ("cannot be connected. Please provide
    at least one reachable node: None", redis-py issues #3221, #3693) even after the cluster
    is back. Putting the seeds back lets the next command find the cluster again.
    """

    seeds: tuple[ClusterNode, ...] = ()  # the nodes of the URL

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await _timed(super().execute_command(*args, **kwargs), args)
        except redis.exceptions.RedisClusterException as e:
            if "cannot be connected" in str(e):
                self._restore_seeds()
            raise

    def _restore_seeds(self) -> None:
        nodes = self.nodes_manager.startup_nodes
        for seed in self.seeds:
            if seed.name not in nodes:
                nodes[seed.name] = ClusterNode(seed.host, seed.port, **self.connection_kwargs)


# --- clients ---------------------------------------------------------------------------------

def connect(url: str) -> Any:
    """The proxy's client for any supported URL (see the module docstring)."""
    target = parse_url(url)
    # RuntimeError is retried too: under uvloop, writing to a pooled connection that Redis (or
    # the network) closed raises "unable to perform operation on <TCPTransport closed=True>"
    # instead of an OSError. Nothing was sent; redis-py drops the connection and retries.
    if target.kind == "standalone":
        # A blocking pool: when more commands are in flight than it has connections (Redis
        # slow for a moment under hundreds of callers), a call waits up to POOL_WAIT seconds
        # for a connection instead of failing at once with MaxConnectionsError.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=POOL_WAIT, retry=_retry(),
            retry_on_error=[RuntimeError], health_check_interval=30, **_TIMEOUTS)
        return InstrumentedRedis.from_pool(pool)
    if target.kind == "sentinel":
        return _sentinel(target).master_for(
            target.service, redis_class=InstrumentedRedis, retry=_retry(),
            retry_on_error=[RuntimeError], health_check_interval=30, **_TIMEOUTS)
    seeds = [ClusterNode(h, p) for h, p in target.hosts]
    client = InstrumentedCluster(
        startup_nodes=seeds, username=target.username, password=target.password,
        ssl=target.tls, retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
        health_check_interval=30, **_TIMEOUTS,
    )
    client.seeds = tuple(seeds)
    return client


def _sentinel(target: RedisTarget) -> Sentinel:
    sentinel_kwargs = {"username": target.sentinel_username,
                       "password": target.sentinel_password, **_TIMEOUTS}
    return Sentinel(target.hosts, sentinel_kwargs=sentinel_kwargs, db=target.db,
                    username=target.username, password=target.password, ssl=target.tls)


def connect_pubsub(url: str) -> aioredis.Redis:
    """A plain client to SUBSCRIBE with, for any supported URL.

    Standalone: the same server. Sentinel: the current master (after a failover the next
    connection goes to the new one). Cluster: any one node, trying the seed nodes in turn,
    because a classic PUBLISH reaches the subscribers of every node. There is no read timeout:
    a subscriber waits for messages; health checks find dead connections instead.
    """
    target = parse_url(url)
    options: dict[str, Any] = {"socket_connect_timeout": 2.0, "health_check_interval": 30,
                               "retry": _retry()}
    if target.kind == "standalone":
        return aioredis.Redis.from_url(url, **options)
    if target.kind == "sentinel":
        return _sentinel(target).master_for(target.service, redis_class=aioredis.Redis,
                                            **options)
    pool = ConnectionPool(
        connection_class=_AnyNodeSSLConnection if target.tls else _AnyNodeConnection,
        addresses=target.hosts, username=target.username, password=target.password,
        **options,
    )
    return aioredis.Redis(connection_pool=pool)


class _AnyNodeConnection(Connection):
    """Connects to the first of several nodes that accepts, starting after the last one used."""

    def __init__(self, *, addresses: list[tuple[str, int]], **kwargs: Any) -> None:
        self.addresses = list(addresses)
        self._next = 0
        host, port = self.addresses[0]
        super().__init__(host=host, port=port, **kwargs)

    async def _connect(self) -> None:
        error: BaseException | None = None
        for _ in range(len(self.addresses)):
            self.host, self.port = self.addresses[self._next % len(self.addresses)]
            self._next += 1
            try:
                return await super()._connect()
            except (OSError, TimeoutError) as e:
                error = e
        assert error is not None
        raise error


class _AnyNodeSSLConnection(_AnyNodeConnection, SSLConnection):
    pass


async def ping(client: Any) -> None:
    """Raise unless Redis answers: every primary of a cluster, else the one server."""
    if isinstance(client, RedisCluster):
        await client.ping(target_nodes=RedisCluster.PRIMARIES)
    else:
        await client.ping()


async def maxmemory(client: Any) -> int:
    """Redis' memory limit in bytes (`maxmemory`): the smallest of a cluster's primaries, 0
    when none is set."""
    if isinstance(client, RedisCluster):
        found = await client.info("memory", target_nodes=RedisCluster.PRIMARIES)
    else:
        found = await client.info("memory")
    infos = [found] if "maxmemory" in found else list(found.values())
    limits = [int(i.get("maxmemory", 0)) for i in infos if isinstance(i, dict)]
    return min((m for m in limits if m > 0), default=0)
