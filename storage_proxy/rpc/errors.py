"""What status a failed call answers with: a refusal as it is, a Redis outage as UNAVAILABLE
(safe to retry), a full Redis as RESOURCE_EXHAUSTED, anything else INTERNAL (and logged)."""

from __future__ import annotations

import logging

import grpc
import redis.exceptions

from optuna_grpc_storage.protocol.errors import RequestError
from storage_proxy.redis.client import is_out_of_memory

log = logging.getLogger("storage_proxy")

# Failures that pass: Redis restarting, a Sentinel or Cluster failover in progress.
_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
               redis.exceptions.BusyLoadingError, redis.exceptions.ReadOnlyError,
               redis.exceptions.ClusterDownError, redis.exceptions.TryAgainError,
               redis.exceptions.SlotNotCoveredError, redis.exceptions.MasterDownError,
               ConnectionError, TimeoutError)


def redis_down(e: Exception) -> bool:
    """A failure to reach Redis. Under uvloop, a write to a connection the network has just
    closed raises RuntimeError("unable to perform operation on <TCPTransport closed=True>;
    the handler is closed") rather than an OSError, and redis-py lets it through."""
    return isinstance(e, _REDIS_DOWN) or (
        isinstance(e, RuntimeError) and "the handler is closed" in str(e))


def status_of(e: Exception, where: str) -> RequestError:
    """The status a failed request answers with (call from an except block: an unexpected
    error is logged with its traceback)."""
    if isinstance(e, RequestError):
        level = logging.DEBUG if e.code == grpc.StatusCode.UNAUTHENTICATED else logging.INFO
        log.log(level, "refused %s: %s", e.code.name, e.message)
        return e
    if redis_down(e):
        log.warning("redis unavailable: %s", type(e).__name__)
        return RequestError(grpc.StatusCode.UNAVAILABLE,
                            "the storage proxy cannot reach Redis right now; retry shortly")
    if is_out_of_memory(e):
        log.error("redis is out of memory (maxmemory): writes are refused")
        return RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                            "the storage is full (Redis reached its memory limit); nothing was "
                            "written; ask your operator to add memory or delete finished journals")
    log.exception("unexpected error in %s", where)
    return RequestError(grpc.StatusCode.INTERNAL, "internal error in the storage proxy")
