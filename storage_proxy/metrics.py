"""Prometheus metrics of the proxy, and the HTTP endpoint that serves them.

Every label takes its values from a small fixed set (method names, status codes, Redis command
names, a few reasons): never a token, a user, a namespace or a journal name, so the number of
series stays bounded however many users there are.

Several server processes (``--workers``) share one view through prometheus-client's
multiprocess mode: when ``PROMETHEUS_MULTIPROC_DIR`` is set *before this module is imported*,
every process writes its values to files in that directory and the process that serves
``/metrics`` adds them up. A supervisor calls :func:`prepare_multiprocess_dir` before it starts
its workers (they must be spawned or exec'd, not forked from a process that imported this
module), serves ``/metrics`` itself with :func:`start_http_server`, and calls
:func:`mark_process_dead` when a worker exits so its live gauges stop counting.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, values

from optuna_grpc_storage.protocol.version import __version__
from storage_proxy.tls import CertificateFiles

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
if os.environ.get(MULTIPROC_ENV):  # the first metric below creates a file there
    Path(os.environ[MULTIPROC_ENV]).mkdir(parents=True, exist_ok=True)

prometheus_client.disable_created_metrics()  # no *_created series: they only add noise

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    5.0, 10.0, 30.0, 60.0)
_REDIS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                  0.5, 1.0, 2.5, 5.0)

# --- gRPC calls (labels: method = an RPC name of JournalService, code = a grpc.StatusCode name)
CALLS = Counter("storage_proxy_calls", "gRPC calls finished, by method and status code",
                ["method", "code"])
CALL_SECONDS = Histogram("storage_proxy_call_duration_seconds",
                         "time from the start of a call to its last message, by method",
                         ["method"], buckets=_LATENCY_BUCKETS)
INFLIGHT = Gauge("storage_proxy_inflight_calls", "calls being handled now, by method",
                 ["method"], multiprocess_mode="livesum")
ACTIVE_STREAMS = Gauge("storage_proxy_active_streams",
                       "streaming calls open now (ReadLogs, LoadSnapshot, SaveSnapshot)",
                       ["method"], multiprocess_mode="livesum")
AUTH_FAILURES = Counter("storage_proxy_auth_failures",
                        "calls refused UNAUTHENTICATED, by reason (missing, unknown)", ["reason"])

# --- journal traffic
ENTRIES_APPENDED = Counter("storage_proxy_entries_appended", "journal entries appended")
BYTES_APPENDED = Counter("storage_proxy_bytes_appended", "bytes of journal entries appended")
DUPLICATE_APPENDS = Counter("storage_proxy_duplicate_appends",
                            "appends recognised as retries of an applied append (not re-applied)")
ENTRIES_READ = Counter("storage_proxy_entries_read",
                       "journal entries sent to clients, by where they came from (redis, cache)",
                       ["source"])
BYTES_READ = Counter("storage_proxy_bytes_read",
                     "bytes of journal entries sent to clients, by source (redis, cache)",
                     ["source"])
SNAPSHOT_BYTES = Counter("storage_proxy_snapshot_bytes",
                         "snapshot bytes stored or sent, by direction (saved, loaded)",
                         ["direction"])
ARTIFACT_BYTES = Counter("storage_proxy_artifact_bytes",
                         "artifact bytes stored or sent, by direction (uploaded, downloaded)",
                         ["direction"])
ARTIFACT_GARBAGE = Counter("storage_proxy_artifact_blobs_swept",
                           "blobs removed from the artifact store by the sweep (left by uploads "
                           "that died with their proxy, or by replaced versions)")

# --- the journal cache (fed by the proxy's cache code)
CACHE_REQUESTS = Counter("storage_proxy_cache_requests",
                         "reads looked up in the journal cache, by result (hit, miss)",
                         ["result"])
CACHE_ENTRIES = Gauge("storage_proxy_cache_entries", "journal entries held in the cache",
                      multiprocess_mode="livesum")
CACHE_BYTES = Gauge("storage_proxy_cache_bytes", "bytes of journal entries held in the cache",
                    multiprocess_mode="livesum")
CACHE_JOURNALS = Gauge("storage_proxy_cache_journals", "journals held in the cache",
                       multiprocess_mode="livesum")
CACHE_EVICTIONS = Counter("storage_proxy_cache_evictions",
                          "journals dropped from the cache to stay within its bound")
CACHE_SUBSCRIPTIONS = Gauge("storage_proxy_cache_subscriptions",
                            "journal channels subscribed to (cached or about to be)",
                            multiprocess_mode="livesum")

# --- limits per user (labels: a quota or limit name)
QUOTA_REFUSALS = Counter("storage_proxy_quota_refusals",
                         "writes refused by a user's quota, by quota (bytes, journals)",
                         ["quota"])
FAIRNESS_REFUSALS = Counter("storage_proxy_fairness_refusals",
                            "requests refused by a per-user limit, by limit (rate, streams, "
                            "calls); the client retries after the hint", ["limit"])

# --- Redis (label command = a Redis command name, or the name of one of our Lua scripts)
REDIS_COMMANDS = Counter("storage_proxy_redis_commands",
                         "Redis round trips, by command or script name", ["command"])
REDIS_SECONDS = Histogram("storage_proxy_redis_command_duration_seconds",
                          "time of one Redis round trip, by command or script name",
                          ["command"], buckets=_REDIS_BUCKETS)
REDIS_ERRORS = Counter("storage_proxy_redis_errors",
                       "Redis round trips that failed, by command and error class",
                       ["command", "error"])
REDIS_UP = Gauge("storage_proxy_redis_up",
                 "1 while Redis answers PING (gRPC health SERVING), else 0; the minimum over "
                 "the live processes", multiprocess_mode="livemin")
DRAINING = Gauge("storage_proxy_draining", "1 once SIGTERM was received and the proxy drains",
                 multiprocess_mode="livemax")
BUILD_INFO = Gauge("storage_proxy_build_info", "always 1; the label says the version",
                   ["version"], multiprocess_mode="livemax")
BUILD_INFO.labels(__version__).set(1)

STREAMING_METHODS = frozenset({"ReadLogs", "LoadSnapshot", "SaveSnapshot", "Session",
                               "UploadArtifact", "DownloadArtifact", "ListArtifacts"})


# --- small API for code that feeds the metrics. Label children are looked up once and kept
# (labels() costs more than the update itself; every label set here is small and fixed).

_child = functools.cache(lambda metric, *labels: metric.labels(*labels))


def call_finished(method: str, code: str, seconds: float) -> None:
    _child(CALLS, method, code).inc()
    _child(CALL_SECONDS, method).observe(seconds)


def redis_round_trip(command: str, seconds: float, error: str | None = None) -> None:
    _child(REDIS_COMMANDS, command).inc()
    _child(REDIS_SECONDS, command).observe(seconds)
    if error is not None:
        _child(REDIS_ERRORS, command, error).inc()


def record_appended(entries: int, nbytes: int) -> None:
    ENTRIES_APPENDED.inc(entries)
    BYTES_APPENDED.inc(nbytes)


def record_read(entries: int, nbytes: int, source: str = "redis") -> None:
    """Entries sent to a client; source is 'redis' or 'cache'."""
    _child(ENTRIES_READ, source).inc(entries)
    _child(BYTES_READ, source).inc(nbytes)


def record_cache_lookup(hit: bool) -> None:
    _child(CACHE_REQUESTS, "hit" if hit else "miss").inc()


def set_cache_size(entries: int, nbytes: int, journals: int) -> None:
    """The cache's current size in this process (summed over live processes on /metrics)."""
    CACHE_ENTRIES.set(entries)
    CACHE_BYTES.set(nbytes)
    CACHE_JOURNALS.set(journals)


def record_quota_refusal(quota: str) -> None:
    _child(QUOTA_REFUSALS, quota).inc()


def record_fairness_refusal(limit: str) -> None:
    _child(FAIRNESS_REFUSALS, limit).inc()


def record_cache_evictions(journals: int = 1) -> None:
    CACHE_EVICTIONS.inc(journals)


@contextmanager
def call_in_flight(method: str) -> Iterator[None]:
    """Counts a call as in flight (and as an open stream for streaming methods)."""
    gauges = [_child(INFLIGHT, method)]
    if method in STREAMING_METHODS:
        gauges.append(_child(ACTIVE_STREAMS, method))
    for g in gauges:
        g.inc()
    try:
        yield
    finally:
        for g in gauges:
            g.dec()


# --- multiprocess mode and the HTTP endpoint

def multiprocess_enabled() -> bool:
    """True when values go to PROMETHEUS_MULTIPROC_DIR files (decided at import time)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def prepare_multiprocess_dir(path: str | os.PathLike[str] | None = None) -> str:
    """For a supervisor, before it starts workers: an empty directory for the workers' value
    files, exported as PROMETHEUS_MULTIPROC_DIR so that spawned workers inherit it."""
    directory = Path(path) if path else Path(tempfile.mkdtemp(prefix="storage-proxy-metrics-"))
    if directory.exists():
        for child in directory.iterdir():  # values of a previous run would be added in
            if child.is_file() and child.suffix == ".db":
                child.unlink()
            elif child.is_dir():
                shutil.rmtree(child)
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    return str(directory)


def mark_process_dead(pid: int) -> None:
    """Forget the live gauges of a worker that exited (its counters keep counting)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)


def registry() -> CollectorRegistry:
    """What /metrics shows: this process, or every process writing to PROMETHEUS_MULTIPROC_DIR."""
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return prometheus_client.REGISTRY
    reg = CollectorRegistry()
    multiprocess.MultiProcessCollector(reg, path=directory)
    return reg


def start_http_server(host: str, port: int, tls: CertificateFiles | None = None) -> str:
    """Serve /metrics on host:port (0: a free port) in a daemon thread; returns its URL.
    With TLS it is HTTPS with the gRPC port's certificate (reloaded when it changes) and, with
    a client CA, asks for a client certificate signed by it, as the gRPC port does."""
    if tls is None:
        server, _thread = prometheus_client.start_http_server(port, addr=host,
                                                              registry=registry())
    else:
        server, _thread = prometheus_client.start_http_server(
            port, addr=host, registry=registry(), certfile=tls.cert, keyfile=tls.key,
            client_cafile=tls.client_ca, client_auth_required=tls.client_ca is not None)
        tls.watch_context(server.socket.context, threading.Event())
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{server.server_port}/metrics"
