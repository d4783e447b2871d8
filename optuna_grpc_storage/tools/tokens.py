"""`optuna-grpc-storage token share|show`: what a user does with tokens without an operator.

    optuna-grpc-storage token share --journal cnn --read-only --expires 7d --note "for bob"
    optuna-grpc-storage token show

`share` prints a new, narrower token of your namespace once (stdout; the rest goes to stderr,
so `TOKEN=$(optuna-grpc-storage token share ...)` keeps only the token); `show` says what the
token in use may do.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from optuna_grpc_storage.protocol.scopes import Scope, parse_duration
from optuna_grpc_storage.storage.client import JournalClient
from optuna_grpc_storage.storage.connection import Connection


def _client(args: argparse.Namespace) -> JournalClient:
    return JournalClient(Connection(args.endpoint, args.token), use_stream=False)


def cmd_share(args: argparse.Namespace) -> int:
    seconds = parse_duration(args.expires)
    client = _client(args)
    try:
        answer = client.share_token(seconds, args.journal, args.read_only, args.note)
    finally:
        client.close()
    scope = Scope.from_proto(answer.scope)
    print(f"shared token {answer.token_id} ({scope.describe()}); it is shown only once, give "
          "it to its user through OPTUNA_GRPC_STORAGE_TOKEN:", file=sys.stderr)
    print(answer.token)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    client = _client(args)
    try:
        who = client.who_am_i()
    finally:
        client.close()
    scope = Scope.from_proto(who.scope)
    if args.json:
        print(json.dumps({"namespace": who.namespace, "user": who.user, "id": who.token_id,
                          "read_only": scope.read_only, "journal": scope.journal,
                          "expires": scope.expires}))
        return 0
    if not who.auth_required:
        print(f"this proxy checks no token (--auth none): namespace {who.namespace!r}, "
              "every call allowed")
        return 0
    print(f"token {who.token_id} of user {who.user!r}, namespace {who.namespace!r}: "
          f"{scope.describe()}")
    return 0


def add_token_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    token = sub.add_parser("token", help="share a narrower token; show what yours may do")
    tsub = token.add_subparsers(dest="token_command", required=True)
    p = tsub.add_parser("share", parents=[common],
                        help="print a new token of your namespace that grants no more than "
                        "yours (for a colleague or a CI job)")
    p.add_argument("--journal", help="only this journal, or journals matching a pattern "
                   "(* any characters, ? one) within yours (default: the same as yours)")
    p.add_argument("--read-only", action="store_true", help="no call that writes")
    p.add_argument("--expires", required=True,
                   help="how long it works: 7d, 12h, 90m (at most 90d, and no later than "
                   "yours)")
    p.add_argument("--note", default="", help="shown to the operator by `token list`")
    p.set_defaults(func=cmd_share)
    p = tsub.add_parser("show", parents=[common], help="what your token may do")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    p.set_defaults(func=cmd_show)
