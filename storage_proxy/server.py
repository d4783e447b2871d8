"""Run the proxy: Redis (external or embedded), the journal service, health, clean shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from contextlib import AsyncExitStack, suppress
from pathlib import Path
from typing import Any

from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from optuna_grpc_storage.v1 import journal_pb2, journal_pb2_grpc
from storage_proxy import __version__, metrics
from storage_proxy.auth import Authenticator, TokenRegistry
from storage_proxy.config import Settings
from storage_proxy.redis_client import (
    connect,
    expect_refusals,
    name_scripts,
    parse_url,
    ping,
)
from storage_proxy.redis_process import RedisProcess
from storage_proxy.service import JournalService
from storage_proxy.store import JournalStore

log = logging.getLogger("storage_proxy")

SERVICE_NAME = journal_pb2.DESCRIPTOR.services_by_name["JournalService"].full_name
LIVENESS_SERVICE = "liveness"


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


def name_redis_scripts() -> None:
    """Count each Lua script's round trips under its own name (APPEND_LUA -> "append"), and
    its refusals (STALE_SEQUENCE...) as answers rather than Redis errors."""
    from storage_proxy import auth, store

    expect_refusals(*store._SCRIPT_ERRORS)
    name_scripts(**{
        name[: -len("_LUA")].lower(): source
        for module in (store, auth)
        for name, source in vars(module).items()
        if name.endswith("_LUA") and isinstance(source, str)
    })


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
        else:
            log.info("redis: %s", parse_url(redis_url).describe())
        if settings.metrics_port >= 0:
            port = metrics.start_http_server(settings.host, settings.metrics_port)
            log.info("metrics on http://%s:%d/metrics%s", settings.host, port,
                     " (all processes of " + os.environ[metrics.MULTIPROC_ENV] + ")"
                     if metrics.MULTIPROC_ENV in os.environ else "")
        name_redis_scripts()
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
        journal_pb2_grpc.add_JournalServiceServicer_to_server(
            JournalService(store, auth, settings.limits), server)
        health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        # For liveness probes: SERVING while the process serves gRPC, whatever Redis does.
        await health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        port = server.add_insecure_port(f"{settings.host}:{settings.port}")
        await server.start()
        watcher = asyncio.create_task(watch_redis(redis, health))
        log.info("storage-proxy %s listening on %s:%d (h2c), auth=%s", __version__,
                 settings.host, port, settings.auth)

        signals = asyncio.Queue[int]()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, signals.put_nowait, sig)
        if ready is not None:
            ready.set()
        received = await signals.get()
        await drain(server, health, watcher, settings, signals, received)
    return 0


async def drain(server: aio.Server, health: HealthServicer, watcher: asyncio.Task[None],
                settings: Settings, signals: asyncio.Queue[int], received: int) -> None:
    """Health NOT_SERVING first (load balancers move away), then, after --drain-seconds, stop
    taking calls and give in-flight ones --grace-seconds. A second signal cuts both short."""
    metrics.DRAINING.set(1)
    log.info("%s: draining; health NOT_SERVING, new calls taken for %.0fs more, then in-flight "
             "calls get %.0fs", signal.Signals(received).name, settings.drain_seconds,
             settings.grace_seconds)
    watcher.cancel()
    with suppress(asyncio.CancelledError):
        await watcher
    await health.enter_graceful_shutdown()
    second = asyncio.ensure_future(signals.get())
    if settings.drain_seconds > 0:
        await asyncio.wait([second], timeout=settings.drain_seconds)
    grace = 0.0 if second.done() else settings.grace_seconds
    stopping = asyncio.ensure_future(server.stop(grace))
    await asyncio.wait([stopping, second], return_when=asyncio.FIRST_COMPLETED)
    if not stopping.done():
        log.warning("second signal: cancelling the calls still in flight")
        await server.stop(0)
        await stopping
    second.cancel()
    log.info("stopped")


def run(settings: Settings) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve(settings))
    return uvloop.run(serve(settings))
