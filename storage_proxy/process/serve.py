"""One server process: a grpc.aio server on Redis, from start to drain.

On SIGTERM the process drains: health NOT_SERVING first (load balancers move away), new calls
still taken for --drain-seconds, then in-flight calls get --grace-seconds. A second signal
cuts both short. Every wait of the stop is bounded, so the process is gone within drain +
grace + a few seconds whatever Redis does (stopping.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from optuna_grpc_storage.protocol.v1 import journal_pb2_grpc
from optuna_grpc_storage.protocol.version import __version__
from storage_proxy import metrics, presence
from storage_proxy.artifacts import ArtifactService, artifact_service
from storage_proxy.auth import Authenticator
from storage_proxy.cache import JournalCache
from storage_proxy.config import Settings
from storage_proxy.fairness import Fairness
from storage_proxy.process.health import LIVENESS_SERVICE, watch_redis
from storage_proxy.process.stopping import CLOSE_SECONDS, StopSignals
from storage_proxy.quotas import Quotas
from storage_proxy.redis.client import connect, connect_pubsub
from storage_proxy.redis.replication import Replication
from storage_proxy.redis.store import JournalStore
from storage_proxy.rpc.decoding import add_servicer
from storage_proxy.rpc.servicer import JournalService
from storage_proxy.tls import CertificateFiles
from storage_proxy.tokens import TokenRegistry

log = logging.getLogger("storage_proxy")

def loop_time() -> float:
    return asyncio.get_running_loop().time()


def replication_of(settings: Settings) -> Replication:
    """What an acknowledged write must have reached (ValueError if the flags are wrong)."""
    return Replication(settings.min_replicas, settings.replica_timeout_ms,
                       settings.replica_ack)


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


async def serve(settings: Settings, stops: StopSignals | None = None) -> int:
    """One server process, until stopped; settings.redis_url must be set."""
    assert settings.redis_url
    stops = stops or StopSignals()
    async with AsyncExitStack() as stack:
        tls = tls_of(settings)
        if settings.metrics_port >= 0:  # with several processes, the supervisor serves them
            url = metrics.start_http_server(settings.metrics_bind, settings.metrics_port, tls)
            log.info("metrics on %s%s", url,
                     " (all processes of " + os.environ[metrics.MULTIPROC_ENV] + ")"
                     if os.environ.get(metrics.MULTIPROC_ENV) else "")
        redis = connect(settings.redis_url)
        stack.push_async_callback(_close, redis.aclose)
        subscriber = connect_pubsub(settings.redis_url)
        stack.push_async_callback(_close, subscriber.aclose)
        cache = JournalCache(redis, settings.cache_bytes, subscriber=subscriber,
                             idle_seconds=settings.cache_idle_seconds)
        quotas = Quotas(redis, settings.key_prefix, settings.limits,
                        cache_seconds=settings.auth_cache_seconds)
        store = JournalStore(redis, settings.key_prefix, quotas,
                             heartbeat_seconds=settings.heartbeat_ttl_seconds,
                             replication=replication_of(settings))
        fairness = Fairness(settings.max_user_streams, settings.max_user_calls,
                            settings.max_user_requests_per_second,
                            max_bytes=settings.max_user_inflight_bytes)
        service = JournalService(store, cache, _authenticator(redis, settings), settings.limits,
                                 fairness)
        artifacts = artifact_service(settings, redis, quotas, service.auth, fairness)
        server, health, port = await _start(settings, service, artifacts, tls)
        started = loop_time()
        tasks = [asyncio.create_task(watch_redis(redis, health,
                                                 unready_after=settings.redis_unready_seconds)),
                 asyncio.create_task(artifacts.sweep_forever())]
        if settings.cache_bytes > 0:
            tasks.append(asyncio.create_task(cache.run()))
        tasks.append(asyncio.create_task(presence.announce(  # for the token commands
            redis, settings.key_prefix, presence.member(port, settings.auth),
            on_members=lambda members: store.keep_legacy_records(
                presence.older_layout(members)))))
        log.info("storage-proxy %s listening on %s:%d (%s), auth=%s, pid %d", __version__,
                 settings.host, port, tls.mode if tls else "h2c", settings.auth, os.getpid())
        log.info("artifacts: %s", artifacts.blobs.description if artifacts.blobs else
                 "none (--artifact-store)")

        signals = asyncio.Queue[int]()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, stops.second):
            loop.add_signal_handler(sig, signals.put_nowait, sig)
        if stops.early:
            signals.put_nowait(signal.SIGTERM)
        received = await signals.get()
        stops.received(settings.drain_seconds, settings.grace_seconds)
        await drain(server, health, service, settings, signals, received, started)
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=CLOSE_SECONDS)
        log.info("stopped (pid %d)", os.getpid())
    return 0


async def _close(close: Callable[[], Awaitable[Any]]) -> None:
    """Close a Redis client at the stop, giving up after CLOSE_SECONDS: a hung Redis (stopped,
    or behind a partition) cannot answer, and an unclosed socket goes with the process."""
    try:
        await asyncio.wait_for(close(), CLOSE_SECONDS)
    except Exception as e:
        log.debug("closing a Redis client at the stop: %s", type(e).__name__)


def _authenticator(redis: Any, settings: Settings) -> Authenticator:
    if settings.auth == "none":
        auth = Authenticator(None)
        log.warning("--auth none: no token is checked and every caller shares namespace "
                    "%r; use this only on a trusted machine", auth.local_namespace)
        return auth
    return Authenticator(TokenRegistry(redis, settings.key_prefix),
                         cache_seconds=settings.auth_cache_seconds,
                         cache_bytes=settings.auth_cache_bytes)


def tls_of(settings: Settings) -> CertificateFiles | None:
    """The TLS files of --tls-cert/--tls-key/--tls-client-ca (TLSConfigError if wrong)."""
    return CertificateFiles.from_flags(settings.tls_cert, settings.tls_key,
                                       settings.tls_client_ca)


async def _start(settings: Settings, service: JournalService, artifacts: ArtifactService,
                 tls: CertificateFiles | None) -> tuple[aio.Server, HealthServicer, int]:
    """The started server with the journal, artifact and health services; and its port."""
    server = aio.server(options=server_options(settings))
    add_servicer(journal_pb2_grpc.add_JournalServiceServicer_to_server, service, server)
    add_servicer(journal_pb2_grpc.add_ArtifactServiceServicer_to_server, artifacts, server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    # For liveness probes: SERVING while the process serves gRPC, whatever Redis does.
    await health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    address = f"{settings.host}:{settings.port}"
    port = (server.add_secure_port(address, tls.server_credentials()) if tls
            else server.add_insecure_port(address))
    await server.start()
    return server, health, port


async def drain(server: aio.Server, health: HealthServicer, service: JournalService,
                settings: Settings, signals: asyncio.Queue[int], received: int,
                started: float) -> None:
    """Health NOT_SERVING first (load balancers move away), then, after --drain-seconds, stop
    taking calls and give in-flight ones --grace-seconds. Idle client sessions are released
    at once. A second signal cuts both short."""
    metrics.DRAINING.set(1)
    log.info("%s: draining; health NOT_SERVING, new calls taken for %.0fs more, then in-flight "
             "calls get %.0fs", signal.Signals(received).name, settings.drain_seconds,
             settings.grace_seconds)
    await health.enter_graceful_shutdown()
    second = asyncio.ensure_future(signals.get())
    if settings.drain_seconds > 0:
        await asyncio.wait([second], timeout=settings.drain_seconds)
    service.drain()
    grace = settings.grace_seconds
    if second.done():  # both signals came before the drain began
        log.warning("second signal: cancelling the calls still in flight")
        grace = 0.0
    # grpc.aio can miss a stop that follows start within a moment and sit out the whole
    # grace period: give a just-started server that moment, and never wait past the grace.
    await asyncio.sleep(max(0.0, 0.2 - (loop_time() - started)))
    stopping = asyncio.ensure_future(server.stop(grace))
    await asyncio.wait([stopping, second], timeout=grace + 1,
                       return_when=asyncio.FIRST_COMPLETED)
    if not stopping.done():
        log.warning("%s: cancelling the calls still in flight",
                    "second signal" if second.done() else "grace period over")
        now = asyncio.ensure_future(server.stop(0))
        await asyncio.wait([stopping, now], timeout=1)  # calls that ignore it go with us
    second.cancel()


def run_loop(settings: Settings, stops: StopSignals | None = None) -> int:
    """serve() on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve(settings, stops))
    return uvloop.run(serve(settings, stops))
