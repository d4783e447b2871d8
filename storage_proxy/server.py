"""Run the proxy: Redis (external or embedded), N server processes on one port, health, drain.

With --workers N > 1 a parent process owns the port reservation and the embedded Redis, and
supervises N children that each run a complete grpc.aio server bound to the same port with
SO_REUSEPORT, so the kernel spreads connections over them. Each child has its own cache; they
stay coherent through Redis pub/sub like separate replicas would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import multiprocessing
import os
import signal
import socket
import time
from contextlib import AsyncExitStack, ExitStack, suppress
from pathlib import Path
from typing import Any

from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from optuna_grpc_storage.v1 import journal_pb2, journal_pb2_grpc
from storage_proxy import __version__, metrics
from storage_proxy.auth import Authenticator, TokenRegistry
from storage_proxy.cache import JournalCache
from storage_proxy.config import Settings
from storage_proxy.decoding import add_servicer
from storage_proxy.journals import Journals
from storage_proxy.logs import setup_logging
from storage_proxy.redis_client import (
    connect,
    connect_pubsub,
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


def loop_time() -> float:
    return asyncio.get_running_loop().time()


def available_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2/v1 CPU quota."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quota = None
    try:
        q, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        quota = None if q == "max" else int(q) / int(period)
    except (OSError, ValueError):
        try:
            q = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
            period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
            quota = q / period if q > 0 else None
        except (OSError, ValueError):
            pass
    return max(1, min(count or 1, math.ceil(quota) if quota else count or 1))


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
    its refusals (BEYOND_END...) as answers rather than Redis errors."""
    from storage_proxy import auth, store

    expect_refusals(*store._SCRIPT_ERRORS)
    name_scripts(**{
        name[: -len("_LUA")].lower(): source
        for module in (store, auth)
        for name, source in vars(module).items()
        if name.endswith("_LUA") and isinstance(source, str)
    })


async def serve(settings: Settings) -> int:
    """One server process, until SIGTERM/SIGINT; settings.redis_url must be set."""
    assert settings.redis_url
    async with AsyncExitStack() as stack:
        if settings.metrics_port >= 0:  # with several processes, the supervisor serves them
            port = metrics.start_http_server(settings.host, settings.metrics_port)
            log.info("metrics on http://%s:%d/metrics%s", settings.host, port,
                     " (all processes of " + os.environ[metrics.MULTIPROC_ENV] + ")"
                     if os.environ.get(metrics.MULTIPROC_ENV) else "")
        name_redis_scripts()
        redis = connect(settings.redis_url)
        stack.push_async_callback(redis.aclose)

        if settings.auth == "none":
            auth = Authenticator(None)
            log.warning("--auth none: no token is checked and every caller shares namespace "
                        "%r; use this only on a trusted machine", auth.local_namespace)
        else:
            auth = Authenticator(TokenRegistry(redis, settings.key_prefix),
                                 cache_seconds=settings.auth_cache_seconds)

        subscriber = connect_pubsub(settings.redis_url)
        stack.push_async_callback(subscriber.aclose)
        cache = JournalCache(redis, settings.cache_bytes, subscriber=subscriber)
        journals = Journals(JournalStore(redis, settings.key_prefix), cache, settings.limits)
        server = aio.server(options=server_options(settings))
        service = JournalService(journals, auth)
        add_servicer(journal_pb2_grpc.add_JournalServiceServicer_to_server, service, server)
        health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        # For liveness probes: SERVING while the process serves gRPC, whatever Redis does.
        await health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        port = server.add_insecure_port(f"{settings.host}:{settings.port}")
        await server.start()
        started = loop_time()
        tasks = [asyncio.create_task(watch_redis(redis, health))]
        if settings.cache_bytes > 0:
            tasks.append(asyncio.create_task(cache.run()))
        log.info("storage-proxy %s listening on %s:%d (h2c), auth=%s, pid %d", __version__,
                 settings.host, port, settings.auth, os.getpid())

        signals = asyncio.Queue[int]()
        loop = asyncio.get_running_loop()
        # In a group, the parent forwards the first signal as SIGTERM and later ones as
        # CUT_SHORT: two signals of one number close together can arrive as one.
        for sig in (signal.SIGTERM, CUT_SHORT if _in_group else signal.SIGINT):
            loop.add_signal_handler(sig, signals.put_nowait, sig)
        if _stop_requested_early:
            signals.put_nowait(signal.SIGTERM)
        received = await signals.get()
        await drain(server, health, service, settings, signals, received, started)
        for task in tasks:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        log.info("stopped (pid %d)", os.getpid())
    return 0


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
    await asyncio.wait([stopping, second], timeout=grace + 2,
                       return_when=asyncio.FIRST_COMPLETED)
    if not stopping.done():
        log.warning("%s: cancelling the calls still in flight",
                    "second signal" if second.done() else "grace period over")
        await server.stop(0)
        with suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stopping, 2)
    second.cancel()


def _run_loop(settings: Settings) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve(settings))
    return uvloop.run(serve(settings))


_stop_requested_early = False
_in_group = False
CUT_SHORT = signal.SIGUSR2  # from a group's parent: a second stop signal arrived


def _child(settings: Settings) -> None:
    """A server process of a supervised group (spawned: a fresh interpreter)."""
    global _in_group
    _in_group = True

    def note(signum: int, frame: Any) -> None:  # until serve() installs its own handler
        global _stop_requested_early
        _stop_requested_early = True

    signal.signal(signal.SIGTERM, note)
    signal.signal(CUT_SHORT, note)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent forwards what matters
    setup_logging(settings.log_level, settings.log_format)
    code = _run_loop(settings)
    for sig in (signal.SIGTERM, CUT_SHORT):  # stopped: late stop signals change nothing
        signal.signal(sig, signal.SIG_IGN)
    raise SystemExit(code)


def run(settings: Settings) -> int:
    """Start the embedded Redis if needed, then one server process or a supervised group."""
    with ExitStack() as stack:
        if not settings.redis_url:
            embedded = RedisProcess(settings.data_dir, unix_socket=True,
                                    appendfsync=settings.appendfsync)
            url = embedded.start()
            stack.callback(embedded.stop)
            log.info("embedded Redis %s started (pid %s): data and AOF in %s, url %s; it stops "
                     "with the proxy", embedded.version(), embedded.proc and embedded.proc.pid,
                     Path(settings.data_dir).resolve(), url)
            settings = dataclasses.replace(settings, redis_url=url)
        else:
            log.info("redis: %s", parse_url(settings.redis_url).describe())
        workers = settings.workers or available_cpus()
        if workers == 1:
            return _run_loop(settings)
        return _supervise(settings, workers, stack)


def _supervise(settings: Settings, workers: int, stack: ExitStack) -> int:
    if settings.port == 0:  # every child must bind the same port: choose it now, keep it held
        holder = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind((settings.host, 0))
        stack.callback(holder.close)
        settings = dataclasses.replace(settings, port=holder.getsockname()[1])
    # One /metrics for the group, summed over its processes, which write their values to a
    # shared directory: the operator's PROMETHEUS_MULTIPROC_DIR if set, else a fresh one.
    directory = os.environ.get(metrics.MULTIPROC_ENV) or metrics.prepare_multiprocess_dir()
    if settings.metrics_port >= 0:
        port = metrics.start_http_server(settings.host, settings.metrics_port)
        log.info("metrics on http://%s:%d/metrics (all processes of %s)", settings.host, port,
                 directory)
        settings = dataclasses.replace(settings, metrics_port=-1)
    # Spawned, not forked: each child starts clean of gRPC state and writes its metrics to
    # the shared directory (prometheus_client decides that when it is first imported).
    ctx = multiprocessing.get_context("spawn")
    children: list[Any] = []
    stopping = False

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        send = CUT_SHORT if stopping else signal.SIGTERM
        stopping = True
        for child in children:
            if child.is_alive():
                os.kill(child.pid, send)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    log.info("starting %d server processes on port %d", workers, settings.port)
    for _ in range(workers):
        children.append(ctx.Process(target=_child, args=(settings,)))
        children[-1].start()
    while not stopping:
        time.sleep(0.2)
        for i, child in enumerate(children):
            if not child.is_alive() and not stopping:
                log.warning("server process %d exited with %s: restarting it", child.pid,
                            child.exitcode)
                metrics.mark_process_dead(child.pid)
                children[i] = ctx.Process(target=_child, args=(settings,))
                children[i].start()
    deadline = time.monotonic() + settings.drain_seconds + settings.grace_seconds + 10
    for child in children:
        child.join(max(deadline - time.monotonic(), 0.1))
        if child.is_alive():
            child.kill()
            child.join()
        metrics.mark_process_dead(child.pid)
    codes = [child.exitcode for child in children]
    log.info("all server processes stopped (exit codes %s)", codes)
    # A child ended by our own stop signal (still starting, or already done) stopped cleanly.
    return 0 if all(code in (0, -signal.SIGTERM, -CUT_SHORT) for code in codes) else 1
