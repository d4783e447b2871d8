"""gRPC health that follows Redis: SERVING while Redis answers PING, for the journal service
and the overall ("") service, and NOT_SERVING only once it has not answered for
--redis-unready-seconds (a ping stuck behind a slow moment is not an outage, and every replica
going unready at once over one would turn a slow second into a full one). "liveness" stays
SERVING while the process serves gRPC."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from optuna_grpc_storage.protocol.v1 import journal_pb2
from storage_proxy import metrics
from storage_proxy.redis.client import ping

log = logging.getLogger("storage_proxy")

SERVICE_NAME = journal_pb2.DESCRIPTOR.services_by_name["JournalService"].full_name
LIVENESS_SERVICE = "liveness"
PING_TIMEOUT = 2.0  # seconds one PING may take before it counts as unanswered


async def watch_redis(redis: Any, health: HealthServicer, interval: float = 1.0,
                      unready_after: float = 10.0) -> None:
    """Keep gRPC health SERVING while Redis answers PING (every primary of a cluster), and
    NOT_SERVING from when it has not answered for `unready_after` seconds until it does."""
    status = None
    answered = float("-inf")  # unready until Redis first answers
    while True:
        why = ""
        try:
            await asyncio.wait_for(ping(redis), timeout=max(interval, PING_TIMEOUT))
            answered = time.monotonic()
            metrics.REDIS_UP.set(1)
        except Exception as e:
            why = f": {type(e).__name__} {str(e)[:200]}".rstrip()
            metrics.REDIS_UP.set(0)
        silent = time.monotonic() - answered
        new = (health_pb2.HealthCheckResponse.SERVING if silent < max(unready_after, 0.0)
               or not why else health_pb2.HealthCheckResponse.NOT_SERVING)
        if why and status == health_pb2.HealthCheckResponse.SERVING and new == status:
            log.info("redis did not answer a ping%s (for %.1fs; unready after %.0fs)", why,
                     silent, unready_after)
        if new != status:
            status = new
            up = new == health_pb2.HealthCheckResponse.SERVING
            name = health_pb2.HealthCheckResponse.ServingStatus.Name(new)
            (log.info if up else log.warning)("health %s (redis %s%s)", name,
                                              "up" if up else "unreachable", why)
            for service in ("", SERVICE_NAME):
                await health.set(service, new)
        await asyncio.sleep(interval)
