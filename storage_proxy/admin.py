"""The operator's `storage-proxy token issue|list|revoke` and `quota set|show|reset`:
they write to the Redis a running proxy uses (presence.py tells which), never to another."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import redis

from optuna_grpc_storage.protocol.limits import Limits
from optuna_grpc_storage.protocol.names import check_user
from optuna_grpc_storage.protocol.quota import QuotaLimits, format_bytes, parse_bytes
from optuna_grpc_storage.protocol.scopes import (
    Scope,
    check_journal_pattern,
    format_time,
    parse_duration,
)
from storage_proxy import presence
from storage_proxy.config import env_name
from storage_proxy.process.embedded_redis import RedisProcess
from storage_proxy.quotas import QuotaSettings
from storage_proxy.redis.client import connect
from storage_proxy.redis.urls import parse_url, read_password_file, with_password
from storage_proxy.tokens import TokenInfo, TokenRegistry

PROXY_WAIT_STEPS = 6  # half seconds `token issue` waits for a proxy that is just starting


class NoProxy(Exception):
    """No running proxy uses the Redis (and key prefix) a command would write to."""


def _token_redis_url(args: argparse.Namespace, stack: ExitStack) -> tuple[str, str]:
    """(URL, what it is) of the Redis the token and quota commands talk to: --redis-url, else
    the embedded Redis of --data-dir, which runs while its proxy does. With --no-proxy-check
    a stopped one is started for the duration of the command."""
    if args.redis_url:
        where = f"Redis {parse_url(args.redis_url).describe()}"
        if args.redis_password_file:  # a mounted Secret, not a password on a command line
            password = read_password_file(args.redis_password_file)
            return with_password(args.redis_url, password), where
        return str(args.redis_url), where
    data_dir = Path(args.data_dir).resolve()
    where = f"the embedded Redis of --data-dir {data_dir}"
    url_file = data_dir / "redis.url"
    if url_file.exists():
        url = url_file.read_text().strip()
        try:
            with redis.Redis.from_url(url, socket_connect_timeout=1) as client:
                client.ping()
            return url, where
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            pass
    if not args.no_proxy_check:
        raise NoProxy(f"no storage-proxy is running with --data-dir {data_dir} (its embedded "
                      "Redis is not running): run this command in the directory where "
                      "`storage-proxy serve` runs, or give its --data-dir (or its "
                      "--redis-url); add --no-proxy-check to use that directory anyway, for "
                      "a proxy you start there later")
    embedded = RedisProcess(data_dir, unix_socket=True)
    url = embedded.start()
    stack.callback(embedded.stop)
    print(f"warning: no proxy is running on {data_dir}: started its embedded Redis for this "
          "command", file=sys.stderr)
    return url, where


async def _check_proxies(client: Any, args: argparse.Namespace, where: str,
                         required: bool) -> None:
    """Refuse (`required`) or warn when no running proxy uses this Redis with this key
    prefix (presence.py): what is written there would reach none of the user's proxies."""
    if args.no_proxy_check:
        return
    found = await presence.running(client, args.key_prefix)
    for _ in range(PROXY_WAIT_STEPS if required and not found else 0):  # one just starting
        await asyncio.sleep(0.5)
        found = await presence.running(client, args.key_prefix)
    if found:
        if all(p.endswith("auth none") for p in found):
            print("warning: every proxy on this Redis runs with --auth none: none checks "
                  "tokens", file=sys.stderr)
        return
    problem = (f"no running storage-proxy uses {where} with key prefix {args.key_prefix!r}, "
               "so no proxy would read what this command writes")
    if required:
        raise NoProxy(f"{problem}: run it where `storage-proxy serve` runs, with that proxy's "
                      "--data-dir, or its --redis-url and --key-prefix; add --no-proxy-check "
                      "to write anyway, for a proxy you start later")
    print(f"warning: {problem} (is this the Redis and --key-prefix of your proxy?)",
          file=sys.stderr)


def _with_redis(args: argparse.Namespace, action: Callable[[Any], Awaitable[int]],
                needs_proxy: bool = False) -> int:
    with ExitStack() as stack:
        url, where = _token_redis_url(args, stack)

        async def go() -> int:
            client = connect(url)
            try:
                await _check_proxies(client, args, where, needs_proxy)
                return await action(client)
            finally:
                await client.aclose()

        return asyncio.run(go())


def _with_registry(args: argparse.Namespace, action: Callable[[TokenRegistry], Awaitable[int]],
                   needs_proxy: bool = False) -> int:
    return _with_redis(args, lambda client: action(TokenRegistry(client, args.key_prefix)),
                       needs_proxy)


def cmd_token_issue(args: argparse.Namespace) -> int:
    check_user(args.user)  # a bad name is refused before any Redis is looked for
    scope = Scope(read_only=args.read_only,
                  journal=check_journal_pattern(args.journal) if args.journal else None,
                  expires=time.time() + parse_duration(args.expires) if args.expires else None)

    async def issue(registry: TokenRegistry) -> int:
        token_id, token = await registry.issue(args.user, namespace=args.namespace,
                                               scope=scope, note=args.note)
        print(f"issued token {token_id} for user {args.user!r} in namespace "
              f"{args.namespace or args.user!r} ({scope.describe()}); it is shown only once:",
              file=sys.stderr)
        print(token)
        return 0

    return _with_registry(args, issue, needs_proxy=True)


def cmd_token_list(args: argparse.Namespace) -> int:
    async def show(registry: TokenRegistry) -> int:
        tokens = await registry.list()
        if args.json:
            print(json.dumps([token_row(t) for t in tokens]))
            return 0
        print(f"{'ID':16} {'USER':20} {'NAMESPACE':20} {'SCOPE':28} {'EXPIRES':20} "
              f"{'CREATED':20} {'LAST USED':20} NOTE")
        now = time.time()
        for t in tokens:
            scope = t.scope.describe().rsplit(", until", 1)[0]
            expires = format_time(t.scope.expires) + (" (expired)" if t.scope.expired(now)
                                                      else "")
            note = t.note + (f" [shared from {t.parent}]" if t.parent else "")
            print(f"{t.token_id:16} {t.user:20} {t.namespace:20} {scope:28} {expires:20} "
                  f"{format_time(t.created):20} {format_time(t.last_used):20} {note}")
        return 0

    return _with_registry(args, show)


def token_row(t: TokenInfo) -> dict[str, Any]:
    """One token as `token list --json` shows it (never the token itself)."""
    return {"id": t.token_id, "user": t.user, "namespace": t.namespace,
            "read_only": t.scope.read_only, "journal": t.scope.journal,
            "expires": t.scope.expires, "expired": t.scope.expired(), "created": t.created,
            "last_used": t.last_used, "note": t.note, "parent": t.parent}


def cmd_token_revoke(args: argparse.Namespace) -> int:
    if not (args.token_ids or args.user or args.token or args.namespace):
        print("token revoke: give token ids, --user NAME, --namespace NAME or --token TOKEN",
              file=sys.stderr)
        return 2

    async def revoke(registry: TokenRegistry) -> int:
        n = await registry.revoke(args.token_ids, user=args.user, token=args.token,
                                  namespace=args.namespace)
        print(f"revoked {n} token(s)")
        return 0 if n else 1

    return _with_registry(args, revoke)


def _quota_values(args: argparse.Namespace) -> dict[str, int]:
    values = {}
    for name in QuotaLimits.names():
        given = getattr(args, name)
        if given is not None:
            values[name] = int(given) if name in ("journals", "artifacts") \
                else parse_bytes(given)
    return values


def cmd_quota_set(args: argparse.Namespace) -> int:
    values = _quota_values(args)
    if not values:
        print("quota set: give --bytes, --journals, --snapshot-bytes, --entry-bytes, "
              "--artifact-bytes, --artifacts or --artifact-size", file=sys.stderr)
        return 2

    async def update(client: Any) -> int:
        settings = QuotaSettings(client, args.key_prefix, _server_limits())
        await settings.set(args.user, values)
        who = f"user {args.user!r}" if args.user else "the default"
        print(f"quota of {who}: " + ", ".join(f"{k} {v}" for k, v in values.items())
              + " (proxies follow within --auth-cache-seconds)")
        return 0

    return _with_redis(args, update)


def cmd_quota_reset(args: argparse.Namespace) -> int:
    async def reset(client: Any) -> int:
        done = await QuotaSettings(client, args.key_prefix, _server_limits()).reset(args.user)
        who = f"user {args.user!r}" if args.user else "the stored default"
        print(f"{who}: " + ("back to the default" if done else "had nothing set"))
        return 0

    return _with_redis(args, reset)


def cmd_quota_show(args: argparse.Namespace) -> int:
    async def show(client: Any) -> int:
        settings = QuotaSettings(client, args.key_prefix, _server_limits())
        overrides = await settings.overridden()
        users = [args.user] if args.user else sorted(
            set(overrides) | {t.namespace for t in await TokenRegistry(client, args.key_prefix)
                              .list()})
        builtin, stored = await settings.builtin(), await settings.stored(None)
        memory = await settings.maxmemory()
        origin = [] if "bytes" in stored else [
            f"bytes: 1/4 of Redis maxmemory {format_bytes(memory)}" if memory
            else f"bytes: {format_bytes(builtin.bytes)} (Redis has no maxmemory)"]
        if stored:
            origin.append("set by `quota set --default`: " + ", ".join(sorted(stored)))
        print(f"default: {_limits_text({**vars(builtin), **stored})} ({'; '.join(origin)})")
        print(f"{'USER':24} {'BYTES USED / LIMIT':28} {'JOURNALS':12} {'SNAPSHOT':>10} "
              f"{'ENTRY':>10}  SET FOR THE USER")
        for user in users:
            q = await settings.status(user)
            lim = q.limits
            used = f"{format_bytes(q.bytes_used)} / {format_bytes(lim.bytes)}"
            print(f"{user:24} {used:28} {f'{q.journals} / {lim.journals}':12} "
                  f"{format_bytes(lim.snapshot_bytes):>10} {format_bytes(lim.entry_bytes):>10}"
                  f"  {', '.join(sorted(overrides.get(user, {}))) or '-'}")
        return 0

    return _with_redis(args, show)


def _limits_text(values: dict[str, int]) -> str:
    return (f"bytes {format_bytes(values['bytes'])}, journals {values['journals']}, "
            f"snapshot {format_bytes(values['snapshot_bytes'])}, "
            f"entry {format_bytes(values['entry_bytes'])}, "
            f"artifacts {format_bytes(values['artifact_bytes'])} in at most "
            f"{values['artifacts']}, one up to {format_bytes(values['artifact_size'])}")


def _server_limits() -> Limits:
    """The proxy's own --max-* limits, as its environment sets them (they cap the quotas)."""
    import os

    values = {n: int(os.environ[env_name("--" + n.replace("_", "-"))])
              for n in Limits.names() if env_name("--" + n.replace("_", "-")) in os.environ}
    return Limits(**values)
