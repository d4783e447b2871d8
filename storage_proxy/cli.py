"""`storage-proxy serve`, `storage-proxy token issue|list|revoke` and
`storage-proxy quota set|show|reset`."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import redis

from optuna_grpc_storage.protocol.errors import RequestError
from optuna_grpc_storage.protocol.limits import Limits
from optuna_grpc_storage.protocol.quota import QuotaLimits, format_bytes, parse_bytes
from optuna_grpc_storage.protocol.version import __version__
from storage_proxy.auth import TokenRegistry
from storage_proxy.config import Settings, add_serve_arguments, env_name, settings_from_args
from storage_proxy.logs import setup_logging
from storage_proxy.process.embedded_redis import RedisProcess
from storage_proxy.quotas import QuotaSettings
from storage_proxy.redis.client import connect
from storage_proxy.redis.urls import RedisURLError, read_password_file, with_password


def _token_redis_url(args: argparse.Namespace, stack: ExitStack) -> str:
    """The Redis the token commands talk to: --redis-url, else the embedded Redis of
    --data-dir (started for the duration of the command if no proxy is running on it)."""
    if args.redis_url:
        if args.redis_password_file:
            return with_password(args.redis_url, read_password_file(args.redis_password_file))
        return str(args.redis_url)
    data_dir = Path(args.data_dir)
    url_file = data_dir / "redis.url"
    if url_file.exists():
        url = url_file.read_text().strip()
        try:
            with redis.Redis.from_url(url, socket_connect_timeout=1) as client:
                client.ping()
            return url
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            pass
    embedded = RedisProcess(data_dir, unix_socket=True)
    url = embedded.start()
    stack.callback(embedded.stop)
    print(f"(using the embedded Redis in {data_dir.resolve()})", file=sys.stderr)
    return url


def _with_redis(args: argparse.Namespace, action: Callable[[Any], Awaitable[int]]) -> int:
    with ExitStack() as stack:
        url = _token_redis_url(args, stack)

        async def go() -> int:
            client = connect(url)
            try:
                return await action(client)
            finally:
                await client.aclose()

        return asyncio.run(go())


def _with_registry(args: argparse.Namespace, action: Callable[[TokenRegistry], Awaitable[int]]):
    return _with_redis(args, lambda client: action(TokenRegistry(client, args.key_prefix)))


def cmd_token_issue(args: argparse.Namespace) -> int:
    async def issue(registry: TokenRegistry) -> int:
        token_id, token = await registry.issue(args.user)
        print(f"issued token {token_id} for user {args.user!r}; it is shown only once:",
              file=sys.stderr)
        print(token)
        return 0

    return _with_registry(args, issue)


def cmd_token_list(args: argparse.Namespace) -> int:
    async def show(registry: TokenRegistry) -> int:
        tokens = await registry.list()
        print(f"{'ID':10} {'USER':32} CREATED")
        for t in tokens:
            created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t.created))
            print(f"{t.token_id:10} {t.user:32} {created}")
        return 0

    return _with_registry(args, show)


def cmd_token_revoke(args: argparse.Namespace) -> int:
    if not (args.token_ids or args.user or args.token):
        print("token revoke: give token ids, --user NAME or --token TOKEN", file=sys.stderr)
        return 2

    async def revoke(registry: TokenRegistry) -> int:
        n = await registry.revoke(args.token_ids, user=args.user, token=args.token)
        print(f"revoked {n} token(s)")
        return 0 if n else 1

    return _with_registry(args, revoke)


def cmd_serve(args: argparse.Namespace) -> int:
    from storage_proxy.process.supervisor import run  # grpc/uvloop only needed here

    settings: Settings = settings_from_args(args)
    setup_logging(settings.log_level, settings.log_format)
    return run(settings)


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
            set(overrides) | {t.user for t in await TokenRegistry(client, args.key_prefix)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="storage-proxy", description="gRPC journal storage for Optuna, backed by Redis."
    )
    parser.add_argument("--version", action="version", version=f"storage-proxy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gRPC proxy")
    add_serve_arguments(serve)
    serve.set_defaults(func=cmd_serve)

    token = sub.add_parser("token", help="issue, list and revoke user tokens")
    tsub = token.add_subparsers(dest="token_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--redis-url", default=_env("--redis-url"),
                        help="Redis of the proxy (default: the embedded Redis of --data-dir)")
    common.add_argument("--redis-password-file", default=_env("--redis-password-file"),
                        help="file holding the Redis password (instead of one in --redis-url)")
    common.add_argument("--data-dir", default=_env("--data-dir", Settings.data_dir))
    common.add_argument("--key-prefix", default=_env("--key-prefix", Settings.key_prefix))

    issue = tsub.add_parser("issue", parents=[common], help="print a new token (last line)")
    issue.add_argument("--user", required=True, help="the user (namespace) the token acts for")
    issue.set_defaults(func=cmd_token_issue)
    lst = tsub.add_parser("list", parents=[common], help="list token ids and users")
    lst.set_defaults(func=cmd_token_list)
    revoke = tsub.add_parser("revoke", parents=[common], help="revoke tokens")
    revoke.add_argument("token_ids", nargs="*", help="ids shown by `token list`")
    revoke.add_argument("--user", help="revoke every token of this user")
    revoke.add_argument("--token", help="revoke this plain token")
    revoke.set_defaults(func=cmd_token_revoke)
    _add_quota_commands(sub, common)
    return parser


def _add_quota_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    quota = sub.add_parser("quota", help="set and show what each user may hold")
    qsub = quota.add_subparsers(dest="quota_command", required=True)
    who = argparse.ArgumentParser(add_help=False)
    target = who.add_mutually_exclusive_group(required=True)
    target.add_argument("--user", help="the user (namespace)")
    target.add_argument("--default", action="store_true",
                        help="every user without a value of their own")
    qset = qsub.add_parser("set", parents=[common, who], help="set quotas (sizes like 2GiB)")
    qset.add_argument("--bytes", help="bytes stored: entries, snapshots, heartbeats")
    qset.add_argument("--journals", type=int, help="number of journals")
    qset.add_argument("--snapshot-bytes", help="one snapshot (at most --max-snapshot-bytes)")
    qset.add_argument("--entry-bytes", help="one journal entry (at most --max-entry-bytes)")
    qset.add_argument("--artifact-bytes", help="all artifacts (they rest in the artifact "
                      "store, not in Redis)")
    qset.add_argument("--artifacts", type=int, help="number of artifacts")
    qset.add_argument("--artifact-size", help="one artifact")
    qset.set_defaults(func=cmd_quota_set)
    reset = qsub.add_parser("reset", parents=[common, who], help="forget values set")
    reset.set_defaults(func=cmd_quota_reset)
    show = qsub.add_parser("show", parents=[common], help="limits and use of each user")
    show.add_argument("--user", help="only this user")
    show.set_defaults(func=cmd_quota_show)


def _env(flag: str, default: Any = None) -> Any:
    import os

    return os.environ.get(env_name(flag), default)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RequestError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    except (RedisURLError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (redis.ConnectionError, redis.TimeoutError) as e:
        print(f"error: cannot reach Redis: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
