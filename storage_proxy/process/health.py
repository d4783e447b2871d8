"""gRPC health that follows Redis: SERVING while Redis answers PING, for the journal service
and the overall ("") service; "liveness" stays SERVING while the process serves gRPC."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from optuna_grpc_storage.protocol.v1 import journal_pb2
from storage_proxy import metrics
from storage_proxy.redis.client import ping

log = logging.getLogger("storage_proxy")

SERVICE_NAME = journal_pb2.DESCRIPTOR.services_by_name["JournalService"].full_name
LIVENESS_SERVICE = "liveness"


async def watch_redis(redis: Any, health: HealthServicer, interval: float = 1.0) -> None:
    """Keep gRPC health SERVING exactly while Redis answers PING (every primary of a cluster)."""
    status = None
    while True:
        why = ""
        try:
            await asyncio.wait_for(ping(redis), timeout=max(interval, 1.0))
            new = health_pb2.HealthCheckResponse.SERVING
        except Exception as e:
            new = health_pb2.HealthCheckResponse.NOT_SERVING
            why = f": {type(e).__name__} {str(e)[:200]}".rstrip()
        if new != status:
            status = new
            up = new == health_pb2.HealthCheckResponse.SERVING
            metrics.REDIS_UP.set(1 if up else 0)
            name = health_pb2.HealthCheckResponse.ServingStatus.Name(new)
            (log.info if up else log.warning)("health %s (redis %s%s)", name,
                                              "up" if up else "unreachable", why)
            for service in ("", SERVICE_NAME):
                await health.set(service, new)
        await asyncio.sleep(interval)
