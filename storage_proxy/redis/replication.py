"""Acknowledged means replicated, when asked (--min-replicas N): a write that is answered OK
is first confirmed by Redis `WAIT N T` (in N replicas' memory) or, with --replica-ack
fsynced, `WAITAOF 0 N T` (in N replicas' AOF on disk; Redis >= 7.2).

WAIT counts the writes made *on the connection it runs on*, so it goes in one pipeline with
the write script: one round trip, one connection. A write that made no change still writes (a
retried append refreshes its idempotency key, lua/append.lua), so WAIT after a retry answered
"duplicate" confirms the first application too: the replication stream is in order. Not
confirmed in time means UNAVAILABLE, which clients retry with the same idempotency key.

Redis Cluster is refused: WAIT would have to run on the connection that the cluster client
picked for the journal's shard, which it does not expose; a future version may do it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import grpc
import redis.exceptions

from optuna_grpc_storage.protocol.errors import RequestError
from storage_proxy import metrics
from storage_proxy.redis import scripts
from storage_proxy.redis.client import error_label

log = logging.getLogger("storage_proxy")

MAX_TIMEOUT_MS = 4000  # a Redis reply may take at most 5 s (client.py's socket_timeout)
WAITAOF_SINCE = (7, 2)


@dataclass(frozen=True)
class Replication:
    """What an acknowledged write must have reached: `replicas` replicas (0: the master
    alone, as its AOF policy says), within `timeout_ms`; `ack` "received" or "fsynced"."""

    replicas: int = 0
    timeout_ms: int = 1000
    ack: str = "received"

    def __post_init__(self) -> None:
        if self.replicas < 0:
            raise ValueError(f"--min-replicas must be 0 or more, not {self.replicas}")
        if self.replicas and not 1 <= self.timeout_ms <= MAX_TIMEOUT_MS:
            raise ValueError(f"--replica-timeout-ms must be between 1 and {MAX_TIMEOUT_MS} "
                             f"(Redis calls time out after 5 s), not {self.timeout_ms}")
        if self.ack not in ("received", "fsynced"):
            raise ValueError(f"--replica-ack must be 'received' or 'fsynced', not {self.ack!r}")

    @property
    def wanted(self) -> bool:
        return self.replicas > 0

    def command(self) -> tuple[Any, ...]:
        if self.ack == "fsynced":
            return ("WAITAOF", 0, self.replicas, self.timeout_ms)
        return ("WAIT", self.replicas, self.timeout_ms)

    def confirmed(self, reply: Any) -> int:
        """How many replicas the reply of command() counts."""
        return int(reply[1]) if self.ack == "fsynced" else int(reply)

    def describe(self) -> str:
        where = "AOF on disk" if self.ack == "fsynced" else "memory"
        return (f"every acknowledged write is in the {where} of {self.replicas} replica(s) "
                f"(confirmed within {self.timeout_ms} ms, else UNAVAILABLE)")


def refuse_topology(replication: Replication, kind: str, embedded: bool) -> None:
    """ValueError, saying why, for a topology where --min-replicas cannot hold."""
    if not replication.wanted:
        return
    if embedded:
        raise ValueError("--min-replicas needs a Redis with replicas: give --redis-url (the "
                         "embedded Redis has none, so no write could ever be confirmed)")
    if kind == "cluster":
        raise ValueError("--min-replicas is not supported with Redis Cluster (WAIT must run "
                         "on the connection of the journal's shard); use a master with "
                         "replicas behind Sentinel, or leave --min-replicas at 0")


async def check_server(client: Any, replication: Replication) -> None:
    """At start: ValueError if this Redis cannot confirm as asked (no WAITAOF before 7.2);
    a warning if it has fewer replicas connected than asked. Unreachable: nothing to say."""
    if not replication.wanted:
        return
    try:
        server = await client.info("server")
        info = await client.info("replication")
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as e:
        log.warning("--min-replicas %d: cannot check Redis now (%s); appends will be "
                    "answered UNAVAILABLE until it has the replicas", replication.replicas,
                    type(e).__name__)
        return
    version = str(server.get("redis_version", "0"))
    parsed = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if replication.ack == "fsynced" and parsed < WAITAOF_SINCE:
        raise ValueError(f"--replica-ack fsynced needs Redis >= 7.2 (WAITAOF); this Redis is "
                         f"{version}: use --replica-ack received (WAIT) or a newer Redis")
    connected = int(info.get("connected_slaves", 0))
    if connected < replication.replicas:
        log.warning("--min-replicas %d, but Redis has %d replica(s) connected now: appends "
                    "will be answered UNAVAILABLE until enough are", replication.replicas,
                    connected)
    log.info("--min-replicas %d: %s", replication.replicas, replication.describe())


def not_confirmed(replication: Replication, reached: int) -> RequestError:
    return RequestError(
        grpc.StatusCode.UNAVAILABLE,
        f"the write is on the Redis master but reached {reached} of the "
        f"{replication.replicas} replica(s) --min-replicas asks for within "
        f"{replication.timeout_ms} ms; retry it (it will not be applied twice)")


async def script_then_wait(client: Any, script: Any, keys: list[Any], args: list[Any],
                           replication: Replication) -> tuple[Any, int]:
    """Run a registered script and the replication wait in one pipeline (one connection, one
    round trip, counted in the metrics under the script's name). Returns the script's reply
    (its error raised, as a plain call would) and how many replicas confirmed."""
    name = scripts.name_of(script.sha)
    for attempt in range(2):
        start, error = perf_counter(), None
        try:
            async with client.pipeline(transaction=False) as pipe:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
                pipe.execute_command(*replication.command())
                reply, waited = await pipe.execute(raise_on_error=False)
            for answer in (reply, waited):
                if isinstance(answer, Exception) and not isinstance(
                        answer, redis.exceptions.NoScriptError):
                    error = error or error_label(answer)
        except Exception as e:
            error = error_label(e)
            raise
        finally:
            metrics.redis_round_trip(name, perf_counter() - start, error)
        if isinstance(reply, redis.exceptions.NoScriptError) and attempt == 0:
            await client.script_load(script.script)  # then once more
            continue
        if isinstance(waited, Exception):
            raise waited
        if isinstance(reply, Exception):
            raise reply
        return reply, replication.confirmed(waited)
    raise AssertionError("unreachable")
