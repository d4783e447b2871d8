"""`storage-proxy serve`: Redis (external or embedded), then one server process or a group.

The process that owns the port holds its lock for its life (port_lock.py), so a second proxy
on the port refuses to start instead of sharing it. With --workers N > 1 a supervisor owns the
port, its lock and the embedded Redis, and supervises N children that each run a complete
grpc.aio server (serve.py) bound to the same port with SO_REUSEPORT, so the kernel spreads
connections over them. Each child has its own cache; they stay coherent through Redis pub/sub
like separate replicas would. The supervisor forwards stop signals and restarts a child that
dies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from storage_proxy import metrics
from storage_proxy.artifacts.blobs import open_store
from storage_proxy.config import Settings
from storage_proxy.logs import setup_logging
from storage_proxy.process.children import die_with_parent
from storage_proxy.process.cpus import available_cpus
from storage_proxy.process.embedded_redis import RedisProcess
from storage_proxy.process.port_lock import hold_port
from storage_proxy.process.serve import replication_of, run_loop, tls_of
from storage_proxy.process.stopping import (
    CUT_SHORT,
    LAST_SHARE,
    REDIS_SHARE,
    SERVER_SHARE,
    SUPERVISOR_KILLS,
    StopSignals,
)
from storage_proxy.redis.client import connect
from storage_proxy.redis.replication import Replication, check_server, refuse_topology
from storage_proxy.redis.urls import parse_url

log = logging.getLogger("storage_proxy")


def _child(settings: Settings, supervisor: int) -> None:
    """A server process of a supervised group (spawned: a fresh interpreter). It dies with
    its supervisor, however that dies: a group never outlives the process that owns its port
    and its Redis, and a new proxy on the port never shares it with an old generation."""
    die_with_parent(signal.SIGKILL, supervisor)
    stops = StopSignals(second=CUT_SHORT, share=SERVER_SHARE)

    def note(signum: int, frame: Any) -> None:  # until serve() installs its own handler
        stops.early = True

    signal.signal(signal.SIGTERM, note)
    signal.signal(CUT_SHORT, note)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent forwards what matters
    setup_logging(settings.log_level, settings.log_format)
    code = run_loop(settings, stops)
    for sig in (signal.SIGTERM, CUT_SHORT):  # stopped: late stop signals change nothing
        signal.signal(sig, signal.SIG_IGN)
    raise SystemExit(code)


def run(settings: Settings) -> int:
    """Take the port (port_lock.py: no other proxy may share it), start the embedded Redis if
    needed, then one server process or a supervised group."""
    stops = StopSignals(share=LAST_SHARE)
    replication = replication_of(settings)
    tls_of(settings)  # wrong TLS files fail here, at once, before Redis starts
    refuse_topology(replication, parse_url(settings.redis_url).kind if settings.redis_url
                    else "standalone", embedded=not settings.redis_url)
    open_store(settings.artifact_store, settings.key_prefix)  # a wrong one fails here, at once
    with ExitStack() as stack:
        if settings.port:
            lock = hold_port(settings.host, settings.port)
            if lock is not None:
                stack.callback(lock.close)
        if not settings.redis_url:
            embedded = RedisProcess(settings.data_dir, unix_socket=True,
                                    appendfsync=settings.appendfsync)
            url = embedded.start()
            stack.callback(lambda: embedded.stop(max(stops.left(REDIS_SHARE), 0.2)))
            log.info("embedded Redis %s started (pid %s): data and AOF in %s, url %s; it stops "
                     "with the proxy", embedded.version(), embedded.proc and embedded.proc.pid,
                     Path(settings.data_dir).resolve(), url)
            artifacts = settings.artifact_store or str(Path(settings.data_dir) / "artifacts")
            settings = dataclasses.replace(settings, redis_url=url, artifact_store=artifacts)
        else:
            log.info("redis: %s", parse_url(settings.redis_url).describe())
            if replication.wanted:
                asyncio.run(_check(settings.redis_url, replication))
        workers = settings.workers or available_cpus()
        if workers == 1:
            return run_loop(settings, stops)
        return _supervise(settings, workers, stack, stops)


async def _check(url: str, replication: Replication) -> None:
    client = connect(url)
    try:
        await check_server(client, replication)
    finally:
        await client.aclose()


def _supervise(settings: Settings, workers: int, stack: ExitStack, stops: StopSignals) -> int:
    if settings.port == 0:  # every child must bind the same port: choose it now, keep it held
        holder = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind((settings.host, 0))
        stack.callback(holder.close)
        settings = dataclasses.replace(settings, port=holder.getsockname()[1])
        lock = hold_port(settings.host, settings.port, check=False)  # held: it is ours
        if lock is not None:
            stack.callback(lock.close)
    # One /metrics for the group, summed over its processes, which write their values to a
    # shared directory: the operator's PROMETHEUS_MULTIPROC_DIR if set, else a fresh one.
    directory = os.environ.get(metrics.MULTIPROC_ENV) or metrics.prepare_multiprocess_dir()
    if settings.metrics_port >= 0:
        url = metrics.start_http_server(settings.metrics_bind, settings.metrics_port,
                                        tls_of(settings))
        log.info("metrics on %s (all processes of %s)", url, directory)
        settings = dataclasses.replace(settings, metrics_port=-1)
    # Spawned, not forked: each child starts clean of gRPC state and writes its metrics to
    # the shared directory (prometheus_client decides that when it is first imported).
    ctx = multiprocessing.get_context("spawn")
    children: list[Any] = []
    stopping = False
    signalled: set[int] = set()  # children told to stop

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        send = CUT_SHORT if stopping else signal.SIGTERM
        stopping = True
        stops.received(settings.drain_seconds, settings.grace_seconds)
        for child in children:
            if child.is_alive():
                os.kill(child.pid, send)
                signalled.add(child.pid)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    log.info("starting %d server processes on port %d", workers, settings.port)
    for _ in range(workers):
        children.append(ctx.Process(target=_child, args=(settings, os.getpid())))
        children[-1].start()
    while not stopping:
        time.sleep(0.2)
        for i, child in enumerate(children):
            if not child.is_alive() and not stopping:
                log.warning("server process %d exited with %s: restarting it", child.pid,
                            child.exitcode)
                metrics.mark_process_dead(child.pid)
                children[i] = ctx.Process(target=_child, args=(settings, os.getpid()))
                children[i].start()
    for child in children:  # one (re)started as the signal came
        if child.is_alive() and child.pid not in signalled:
            os.kill(child.pid, signal.SIGTERM)
    _join(children, stops)
    return _exit_code(children)


def _join(children: list[Any], stops: StopSignals) -> None:
    """Wait for the server processes until their time is up (stopping.py), then SIGKILL
    those still there: a hung process must not hold the group past its bound."""
    for child in children:
        child.join(stops.left(SUPERVISOR_KILLS))
        if child.is_alive():
            log.warning("server process %d still running %.1fs after the stop signal: killed",
                        child.pid, time.monotonic() - (stops.received_at or 0.0))
            child.kill()
            child.join()
        metrics.mark_process_dead(child.pid)


def _exit_code(children: list[Any]) -> int:
    codes = [child.exitcode for child in children]
    log.info("all server processes stopped (exit codes %s)", codes)
    # A child ended by our own stop signal (still starting, or already done) stopped cleanly.
    return 0 if all(code in (0, -signal.SIGTERM, -CUT_SHORT) for code in codes) else 1
