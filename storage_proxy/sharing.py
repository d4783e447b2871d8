"""ShareToken: a user mints a narrower token of their own namespace (read-only and/or some
journals, always with an expiry), so sharing a study with a colleague or a CI job needs no
operator. The new token never grants more than the caller's: its journals within the
caller's, its expiry no later (a longer one asked for ends with the caller's), read-only if
the caller is. It is the caller's child:
revoking the caller's token revokes it too (tokens.py)."""

from __future__ import annotations

import time

import grpc

from optuna_grpc_storage.protocol.errors import RequestError, invalid, too_large
from optuna_grpc_storage.protocol.scopes import Scope, check_journal_pattern
from optuna_grpc_storage.protocol.v1 import journal_pb2 as pb
from storage_proxy.access import Grant
from storage_proxy.tokens import MAX_SHARED, TokenRegistry, TooManyTokens

MAX_SHARE_SECONDS = 90 * 86400


def _denied(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.PERMISSION_DENIED, message)


def narrowed(grant: Grant, request: pb.ShareTokenRequest, now: float) -> Scope:
    """The scope asked for, checked against the caller's."""
    seconds = request.expires_seconds
    if not 0 < seconds <= MAX_SHARE_SECONDS:
        raise invalid(f"a shared token needs an expiry between 1 second and "
                      f"{MAX_SHARE_SECONDS // 86400} days (expires_seconds), not {seconds}")
    mine = grant.scope
    expires = now + seconds  # no later than the caller's: the answer's scope says when
    if mine.expires is not None:
        expires = min(expires, mine.expires)
    journal = check_journal_pattern(request.journal_pattern) if request.journal_pattern \
        else mine.journal
    scope = Scope(read_only=request.read_only or mine.read_only, journal=journal,
                  expires=expires)
    if not mine.covers(scope):
        raise _denied(f"your token may use only journals matching {mine.journal!r}: share "
                      f"that pattern or one journal it matches, not {journal!r}")
    return scope


async def share(registry: TokenRegistry | None, grant: Grant,
                request: pb.ShareTokenRequest) -> tuple[str, str, Scope]:
    """(token id, token, scope) of a new token shared from the caller's."""
    if registry is None:
        raise RequestError(grpc.StatusCode.FAILED_PRECONDITION,
                           "this proxy runs with --auth none: it has no tokens to share")
    scope = narrowed(grant, request, time.time())
    try:
        token_id, token = await registry.issue(
            grant.user, namespace=grant.namespace, scope=scope, note=request.note,
            parent=grant.token_id)
    except TooManyTokens:
        raise too_large(f"namespace {grant.namespace!r} has {MAX_SHARED} live shared tokens "
                        "already; ask your operator to revoke some, or let them "
                        "expire") from None
    return token_id, token, scope
