"""The --redis-url forms, parsed into a RedisTarget that says which topology, where, and with
which credentials.

URL forms (user and password are optional and percent-encoded; the default port is 6379 for
Redis and 26379 for Sentinel):

- ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS), ``unix:///path.sock``:
  one Redis server.
- ``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]
  [?sentinel_password=...&sentinel_username=...]``: the master that Redis Sentinel names
  ``service``; the client asks the sentinels again after a failover. ``user``/``password`` are
  those of the Redis servers, ``sentinel_*`` those of the sentinels (none by default).
  ``rediss+sentinel://`` talks TLS to the Redis servers.
- ``redis+cluster://[[user]:password@]host[:port][,host[:port]...]``: a Redis Cluster; the
  hosts are the seed nodes the slot map is learnt from. ``rediss+cluster://`` for TLS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")

@dataclass(frozen=True)
class RedisTarget:
    """A parsed Redis URL: which topology, where, and with which credentials."""

    kind: str  # "standalone", "sentinel" or "cluster"
    url: str
    hosts: list[tuple[str, int]] = field(default_factory=list)
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    tls: bool = False

    def describe(self) -> str:
        """For logs: the topology and addresses, never a password."""
        where = ",".join(f"{h}:{p}" for h, p in self.hosts)
        if self.kind == "sentinel":
            return f"sentinel service {self.service!r} db {self.db} via {where}"
        if self.kind == "cluster":
            return f"cluster seeded by {where}"
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        return f"{parts.scheme}://{host}{':' + str(parts.port) if parts.port else ''}{parts.path}"


class RedisURLError(ValueError):
    """A --redis-url that cannot be used; the message says the expected form."""


def parse_url(url: str) -> RedisTarget:
    """Parse any supported URL; raises RedisURLError with the expected form when it is wrong."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SENTINEL_SCHEMES + CLUSTER_SCHEMES:
        if scheme not in ("redis", "rediss", "unix"):
            raise RedisURLError(f"unsupported Redis URL scheme {scheme!r}: use redis://, "
                                "rediss://, unix://, redis+sentinel:// or redis+cluster://")
        return RedisTarget("standalone", url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    sentinel = scheme in SENTINEL_SCHEMES
    default_port = 26379 if sentinel else 6379
    hosts = [_host_port(h, default_port, url) for h in hostlist.split(",") if h]
    if not hosts:
        raise RedisURLError(f"no host in Redis URL {_redact(url)}")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    allowed = {"sentinel_username", "sentinel_password"} if sentinel else set()
    unknown = set(query) - allowed
    if unknown:
        raise RedisURLError(f"unknown option(s) {sorted(unknown)} in Redis URL {_redact(url)}")
    path = [unquote(p) for p in parts.path.split("/") if p]
    service, db = "", 0
    if sentinel:
        if not path or len(path) > 2:
            raise RedisURLError(f"Redis URL {_redact(url)}: expected "
                                "redis+sentinel://host:port[,host:port...]/service[/db]")
        service = path[0]
        db = _int(path[1], "db", url) if len(path) == 2 else 0
    elif path:
        raise RedisURLError(f"Redis URL {_redact(url)}: a cluster has no database number; "
                            "expected redis+cluster://host:port[,host:port...]")
    return RedisTarget(
        "sentinel" if sentinel else "cluster", url, hosts, service, db,
        username=unquote(user) or None, password=unquote(password) or None,
        sentinel_username=query.get("sentinel_username"),
        sentinel_password=query.get("sentinel_password"),
        tls=scheme.startswith("rediss"),
    )


def read_password_file(path: str) -> str:
    """The password in a file (a mounted Secret): its text without the final newline."""
    try:
        return Path(path).read_text().rstrip("\r\n")
    except OSError as e:
        raise RedisURLError(f"--redis-password-file {path}: {e.strerror or e}") from None


def with_password(url: str, password: str) -> str:
    """`url` with this password (replacing the one it has), for --redis-password-file."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0] if at else ""
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{hosts}"))


def _host_port(text: str, default: int, url: str) -> tuple[str, int]:
    if text.startswith("["):  # [ipv6]:port
        host, _, rest = text[1:].partition("]")
        return host, _int(rest.lstrip(":"), "port", url) if rest else default
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    return host, _int(port, "port", url) if port else default


def _int(text: str, what: str, url: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise RedisURLError(f"bad {what} {text!r} in Redis URL {_redact(url)}") from None


def _redact(url: str) -> str:
    """The URL without its credentials, for messages."""
    parts = urlsplit(url)
    netloc = "***@" + parts.netloc.rpartition("@")[2] if "@" in parts.netloc else parts.netloc
    query = re.sub(r"(password=)[^&]*", r"\1***", parts.query)
    return urlunsplit(parts._replace(netloc=netloc, query=query))
