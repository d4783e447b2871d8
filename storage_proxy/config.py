"""Settings of `storage-proxy serve`: every flag also reads STORAGE_PROXY_<FLAG> from the
environment (flag wins), and --help shows both with the default."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import Any

from optuna_grpc_storage.protocol.limits import Limits
from storage_proxy.redis.urls import read_password_file, with_password

ENV_PREFIX = "STORAGE_PROXY_"


@dataclass
class Settings:
    host: str = "127.0.0.1"  # a container says 0.0.0.0 (the image and deploy/ do)
    port: int = 13000
    redis_url: str | None = None
    redis_password_file: str = ""
    data_dir: str = "./storage-proxy-data"
    auth: str = "token"
    key_prefix: str = "ogs"
    auth_cache_seconds: float = 5.0
    grace_seconds: float = 20.0
    drain_seconds: float = 0.0
    appendfsync: str = "everysec"
    log_level: str = "info"
    workers: int = 0
    cache_bytes: int = 256 << 20
    log_format: str = "text"
    metrics_port: int = 9464
    metrics_bind: str = "127.0.0.1"
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    auth_cache_bytes: int = 8 << 20
    cache_idle_seconds: float = 300.0
    heartbeat_ttl_seconds: int = 7 * 86400
    redis_unready_seconds: float = 10.0
    max_user_streams: int = 256
    max_user_calls: int = 64
    max_user_requests_per_second: float = 1000.0
    max_user_inflight_bytes: int = 32 << 20
    min_replicas: int = 0
    replica_timeout_ms: int = 1000
    replica_ack: str = "received"
    artifact_store: str = ""  # "": <data-dir>/artifacts with the embedded Redis, else none
    artifact_lease_seconds: float = 120.0
    artifact_sweep_seconds: float = 600.0
    limits: Limits = field(default_factory=Limits)


def env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def _add(parser: argparse.ArgumentParser, flag: str, help: str, **kw: Any) -> None:
    env = env_name(flag)
    default = kw.pop("default", None)
    if env in os.environ:
        default = kw.get("type", str)(os.environ[env])
    shown = "embedded Redis" if default is None and flag == "--redis-url" else default
    parser.add_argument(flag, default=default, help=f"{help} [env {env}; default: {shown}]", **kw)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    d, lim = Settings(), Limits()
    _add(parser, "--host", "address to listen on (0.0.0.0: every interface, as in a "
         "container)", default=d.host)
    _add(parser, "--port", "gRPC port (plaintext HTTP/2, or TLS with --tls-cert); 0 picks a "
         "free one", type=int, default=d.port)
    _add(parser, "--redis-url", "Redis to use: redis://, rediss://, unix:// (one server), "
         "redis+sentinel://host:26379[,host:port...]/service[/db] (Sentinel), "
         "redis+cluster://host:6379[,host:port...] (Cluster); user:password@ before the hosts; "
         "without it an embedded redis-server is started in --data-dir", default=None)
    _add(parser, "--redis-password-file", "file holding the Redis password (a mounted "
         "Secret), used instead of one in --redis-url, so it is on no command line",
         default=d.redis_password_file)
    _add(parser, "--data-dir", "where the embedded Redis keeps its data and AOF",
         default=d.data_dir)
    _add(parser, "--auth", "'token': every call needs a token issued by `storage-proxy token "
         "issue`; 'none': one shared namespace, for local use only", choices=["token", "none"],
         default=d.auth)
    _add(parser, "--key-prefix", "prefix of every Redis key this proxy uses", default=d.key_prefix)
    _add(parser, "--auth-cache-seconds", "how long a verified token is trusted before it is "
         "checked again (a revoked token stops working within this time)", type=float,
         default=d.auth_cache_seconds)
    _add(parser, "--grace-seconds", "on SIGTERM, how long in-flight calls may take to finish",
         type=float, default=d.grace_seconds)
    _add(parser, "--drain-seconds", "on SIGTERM, how long health reports NOT_SERVING while new "
         "calls are still taken, so load balancers move away first", type=float,
         default=d.drain_seconds)
    _add(parser, "--appendfsync", "fsync policy of the embedded Redis AOF",
         choices=["always", "everysec", "no"], default=d.appendfsync)
    _add(parser, "--log-level", "logging level", default=d.log_level,
         choices=["debug", "info", "warning", "error"])
    _add(parser, "--workers", "server processes sharing the port (SO_REUSEPORT); 0 = one per "
         "CPU this process may use (affinity and cgroup quota)", type=int, default=d.workers)
    _add(parser, "--cache-bytes", "memory each server process may use to keep recent journal "
         "entries, so reads need no Redis round trip; 0 disables the cache", type=int,
         default=d.cache_bytes)
    _add(parser, "--log-format", "'text' lines or one 'json' object per line",
         choices=["text", "json"], default=d.log_format)
    _add(parser, "--metrics-port", "Prometheus /metrics HTTP port (on --metrics-bind); 0 picks "
         "a free one, -1 turns it off", type=int, default=d.metrics_port)
    _add(parser, "--metrics-bind", "address /metrics listens on (0.0.0.0 for a Prometheus "
         "that scrapes the Pod)", default=d.metrics_bind)
    _add_tls_arguments(parser, d)
    _add_replication_arguments(parser, d)
    _add_fairness_arguments(parser, d)
    _add_artifact_arguments(parser, d)
    _add(parser, "--max-entry-bytes", "largest journal entry accepted", type=int,
         default=lim.max_entry_bytes)
    _add(parser, "--max-batch-entries", "most entries in one append", type=int,
         default=lim.max_batch_entries)
    _add(parser, "--max-batch-bytes", "largest append in bytes", type=int,
         default=lim.max_batch_bytes)
    _add(parser, "--max-chunk-bytes", "largest chunk of a streamed read or snapshot", type=int,
         default=lim.max_chunk_bytes)
    _add(parser, "--max-snapshot-bytes", "largest snapshot accepted", type=int,
         default=lim.max_snapshot_bytes)
    _add(parser, "--max-unseen-entries", "most unseen entries an append returns inline",
         type=int, default=lim.max_unseen_entries)


def _add_tls_arguments(parser: argparse.ArgumentParser, d: Settings) -> None:
    """TLS on the gRPC port and /metrics; without these flags both are plaintext (h2c)."""
    _add(parser, "--tls-cert", "PEM certificate (chain) of the server: the gRPC port and "
         "/metrics speak TLS; read again when the file changes (cert-manager rotation)",
         default=d.tls_cert)
    _add(parser, "--tls-key", "PEM private key of --tls-cert", default=d.tls_key)
    _add(parser, "--tls-client-ca", "PEM CA certificates: every client must present a "
         "certificate signed by one of them (mTLS)", default=d.tls_client_ca)


def _add_replication_arguments(parser: argparse.ArgumentParser, d: Settings) -> None:
    """When an append is acknowledged: once the master has it (its AOF policy decides the
    rest), or once N replicas have it too."""
    _add(parser, "--min-replicas", "answer an append OK only once this many replicas have it "
         "(Redis WAIT), so a failover cannot lose it; not confirmed in time: UNAVAILABLE, "
         "which clients retry. 0: once the master has it", type=int, default=d.min_replicas)
    _add(parser, "--replica-timeout-ms", "how long an append waits for --min-replicas "
         "replicas (1-4000)", type=int, default=d.replica_timeout_ms)
    _add(parser, "--replica-ack", "what --min-replicas waits for: 'received' (WAIT: in the "
         "replicas' memory) or 'fsynced' (WAITAOF: in their AOF on disk; Redis >= 7.2, "
         "appendonly on the replicas)", choices=["received", "fsynced"], default=d.replica_ack)


def _add_fairness_arguments(parser: argparse.ArgumentParser, d: Settings) -> None:
    """What keeps one user, one slow Redis or one idle journal from costing the others."""
    _add(parser, "--auth-cache-bytes", "memory for verified tokens (unknown tokens get an "
         "eighth of it apart, so they never push a valid one out)", type=int,
         default=d.auth_cache_bytes)
    _add(parser, "--cache-idle-seconds", "a cached journal (and its pub/sub subscription) "
         "nobody read for this long is dropped", type=float, default=d.cache_idle_seconds)
    _add(parser, "--heartbeat-ttl-seconds", "a journal's trial heartbeats expire this long "
         "after the last one", type=int, default=d.heartbeat_ttl_seconds)
    _add(parser, "--redis-unready-seconds", "health turns NOT_SERVING only once Redis has "
         "been unreachable this long (a slow moment is not an outage)", type=float,
         default=d.redis_unready_seconds)
    _add(parser, "--max-user-streams", "Session streams one user may hold open on each "
         "server process (0: no limit); beyond, their clients use unary calls", type=int,
         default=d.max_user_streams)
    _add(parser, "--max-user-calls", "other calls one user may have in progress on each "
         "server process (0: no limit)", type=int, default=d.max_user_calls)
    _add(parser, "--max-user-requests-per-second", "requests one user may make per second on "
         "each server process, in bursts of twice that (0: no limit)", type=float,
         default=d.max_user_requests_per_second)
    _add(parser, "--max-user-inflight-bytes", "bytes of appends one user may have in progress "
         "on each server process (0: no limit)", type=int, default=d.max_user_inflight_bytes)


def _add_artifact_arguments(parser: argparse.ArgumentParser, d: Settings) -> None:
    """Where artifacts rest (the journals are in Redis; artifacts are files, elsewhere)."""
    _add(parser, "--artifact-store", "where artifacts are kept: a directory (every replica "
         "must see the same one: a ReadWriteMany volume), s3://BUCKET[/PREFIX] (an "
         "S3-compatible bucket; credentials and AWS_ENDPOINT_URL_S3 from the environment), or "
         "none; unset: <data-dir>/artifacts with the embedded Redis, none with --redis-url",
         default=d.artifact_store)
    _add(parser, "--artifact-lease-seconds", "an upload that sends nothing for this long is "
         "given up, and one whose proxy died gives its quota back after this long", type=float,
         default=d.artifact_lease_seconds)
    _add(parser, "--artifact-sweep-seconds", "how often each server process removes blobs no "
         "artifact uses (left by a proxy killed mid-upload); 0: never", type=float,
         default=d.artifact_sweep_seconds)


def settings_from_args(args: argparse.Namespace) -> Settings:
    limits = Limits.from_values(args)
    names = {f for f in Settings.__dataclass_fields__ if f != "limits"}
    settings = Settings(limits=limits, **{k: getattr(args, k) for k in names})
    if settings.redis_url and settings.redis_password_file:
        password = read_password_file(settings.redis_password_file)
        settings.redis_url = with_password(settings.redis_url, password)
    return settings
