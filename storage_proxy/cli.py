"""`storage-proxy serve`, and the parser of the token and quota commands (admin.py runs them)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import redis

from optuna_grpc_storage.protocol.errors import RequestError
from optuna_grpc_storage.protocol.version import __version__
from storage_proxy.admin import (
    NoProxy,
    cmd_quota_reset,
    cmd_quota_set,
    cmd_quota_show,
    cmd_token_issue,
    cmd_token_list,
    cmd_token_revoke,
)
from storage_proxy.config import Settings, add_serve_arguments, env_name, settings_from_args
from storage_proxy.logs import setup_logging
from storage_proxy.process.port_lock import PortInUse
from storage_proxy.redis.urls import RedisURLError


def cmd_serve(args: argparse.Namespace) -> int:
    from storage_proxy.process.supervisor import run  # grpc/uvloop only needed here

    settings: Settings = settings_from_args(args)
    setup_logging(settings.log_level, settings.log_format)
    return run(settings)


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
                        help=f"Redis of the proxy [env {env_name('--redis-url')}; default: the "
                        "embedded Redis of --data-dir]")
    common.add_argument("--redis-password-file", default=_env("--redis-password-file"),
                        help="file holding the Redis password, instead of one in --redis-url "
                        f"[env {env_name('--redis-password-file')}]")
    common.add_argument("--data-dir", default=_env("--data-dir", Settings.data_dir),
                        help="the data directory of the proxy's embedded Redis, as given to "
                        f"`serve` [env {env_name('--data-dir')}; default: {Settings.data_dir}]")
    common.add_argument("--key-prefix", default=_env("--key-prefix", Settings.key_prefix),
                        help="the proxy's --key-prefix [env "
                        f"{env_name('--key-prefix')}; default: {Settings.key_prefix}]")
    common.add_argument("--no-proxy-check", action="store_true",
                        help="write even though no running proxy uses this Redis and key "
                        "prefix (to prepare a proxy you start later); without it `token "
                        "issue` refuses and the other commands warn")

    issue = tsub.add_parser("issue", parents=[common], help="print a new token (last line)")
    issue.add_argument("--user", required=True, help="the user the token is issued to")
    issue.add_argument("--namespace", help="the namespace its calls act in (default: the "
                       "user's own); give several users the same one to make a team")
    issue.add_argument("--read-only", action="store_true",
                       help="no call that writes: appends, snapshots, heartbeats, deletion")
    issue.add_argument("--journal", help="only journals matching this pattern (* any "
                       "characters, ? one), e.g. cnn or cnn-*")
    issue.add_argument("--expires", help="refused after this long: 30d, 12h, 90m, 2w")
    issue.add_argument("--note", default="", help="shown by `token list`")
    issue.set_defaults(func=cmd_token_issue)
    lst = tsub.add_parser("list", parents=[common], help="list tokens: user, namespace, "
                          "scope, expiry, creation, last use (never the token)")
    lst.add_argument("--json", action="store_true", help="one JSON list instead of a table")
    lst.set_defaults(func=cmd_token_list)
    revoke = tsub.add_parser("revoke", parents=[common], help="revoke tokens (and the tokens "
                             "shared from them)")
    revoke.add_argument("token_ids", nargs="*", help="ids shown by `token list`")
    revoke.add_argument("--user", help="revoke every token of this user")
    revoke.add_argument("--namespace", help="revoke every token of this namespace")
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
    except (PortInUse, NoProxy) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
