"""Run the proxy: Redis (external or embedded), the journal service, health, clean shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import AsyncExitStack, suppress
from pathlib import Path
from typing import Any

from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from optuna_grpc_storage.v1 import journal_pb2, journal_pb2_grpc
from storage_proxy import __version__
from storage_proxy.auth import Authenticator, TokenRegistry
from storage_proxy.config import Settings
from storage_proxy.decoding import add_servicer
from storage_proxy.redis_client import connect
from storage_proxy.redis_process import RedisProcess
from storage_proxy.service import JournalService
from storage_proxy.store import JournalStore

log = logging.getLogger("storage_proxy")

SERVICE_NAME = journal_pb2.DESCRIPTOR.services_by_name["JournalService"].full_name


def server_options(settings: Settings) -> list[tuple[str, Any]]:
    size = settings.limits.max_message_bytes
    return [
        ("grpc.max_receive_message_length", size),
        ("grpc.max_send_message_length", size),
        ("grpc.so_reuseport", 1),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        # Long-lived connections are recycled so clients spread over new replicas.
        ("grpc.max_connection_age_ms", 300_000),
        ("grpc.max_connection_age_grace_ms", int(settings.grace_seconds * 1000)),
    ]


async def watch_redis(redis: Any, health: HealthServicer, interval: float = 1.0) -> None:
    """Keep gRPC health SERVING exactly while Redis answers PING."""
    status = None
    while True:
        try:
            await asyncio.wait_for(redis.ping(), timeout=max(interval, 1.0))
            new = health_pb2.HealthCheckResponse.SERVING
        except Exception:
            new = health_pb2.HealthCheckResponse.NOT_SERVING
        if new != status:
            status = new
            log.info("health %s (redis %s)", health_pb2.HealthCheckResponse.ServingStatus.Name(new),
                     "up" if new == health_pb2.HealthCheckResponse.SERVING else "unreachable")
            for name in ("", SERVICE_NAME):
                await health.set(name, new)
        await asyncio.sleep(interval)


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> int:
    async with AsyncExitStack() as stack:
        redis_url = settings.redis_url
        if not redis_url:
            embedded = RedisProcess(settings.data_dir, unix_socket=True,
                                    appendfsync=settings.appendfsync)
            redis_url = embedded.start()
            stack.callback(embedded.stop)
            log.info("embedded Redis %s started (pid %s): data and AOF in %s, url %s; it stops "
                     "with the proxy", embedded.version(), embedded.proc and embedded.proc.pid,
                     Path(settings.data_dir).resolve(), redis_url)
        redis = connect(redis_url)
        stack.push_async_callback(redis.aclose)

        if settings.auth == "none":
            auth = Authenticator(None)
            log.warning("--auth none: no token is checked and every caller shares namespace "
                        "%r; use this only on a trusted machine", auth.local_namespace)
        else:
            auth = Authenticator(TokenRegistry(redis, settings.key_prefix),
                                 cache_seconds=settings.auth_cache_seconds)

        server = aio.server(options=server_options(settings))
        store = JournalStore(redis, settings.key_prefix)
        add_servicer(journal_pb2_grpc.add_JournalServiceServicer_to_server,
                     JournalService(store, auth, settings.limits), server)
        health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        port = server.add_insecure_port(f"{settings.host}:{settings.port}")
        await server.start()
        watcher = asyncio.create_task(watch_redis(redis, health))
        log.info("storage-proxy %s listening on %s:%d (h2c), auth=%s", __version__,
                 settings.host, port, settings.auth)

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if ready is not None:
            ready.set()
        await stop.wait()

        log.info("shutting down: health NOT_SERVING, in-flight calls get %.0fs",
                 settings.grace_seconds)
        watcher.cancel()
        with suppress(asyncio.CancelledError):
            await watcher
        await health.enter_graceful_shutdown()
        await server.stop(settings.grace_seconds)
        log.info("stopped")
    return 0


def run(settings: Settings) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve(settings))
    return uvloop.run(serve(settings))
