"""Calls to grants: the token in a call's metadata, looked up (tokens.py) and cached, becomes
the Grant (access.py) the call acts with, or the call is refused.

Expiry is checked on every call, cached or not; a revoked token works until its cache entry
ends (--auth-cache-seconds), as before scopes existed.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from typing import Any

import grpc
from cachetools import TTLCache

from optuna_grpc_storage.protocol.errors import RequestError
from optuna_grpc_storage.protocol.scopes import format_time
from storage_proxy import metrics
from storage_proxy.access import Grant
from storage_proxy.tokens import TokenInfo, TokenRegistry, digest


class Authenticator:
    """Maps a call's metadata to a Grant. Lookups are cached for `cache_seconds`, which is
    how long a revoked token can keep working. Valid and unknown tokens are cached apart, each
    bounded in bytes: unknown ones (for one second) can never push a valid one out."""

    def __init__(
        self,
        registry: TokenRegistry | None,
        cache_seconds: float = 5.0,
        local_namespace: str = "local",
        cache_bytes: int = 8 << 20,
    ) -> None:
        self.registry = registry
        self.cache_seconds = cache_seconds
        self.local_namespace = local_namespace
        ttl = max(cache_seconds, 0.001)
        self._valid: TTLCache[str, TokenInfo] = TTLCache(maxsize=cache_bytes, ttl=ttl,
                                                         getsizeof=_entry_size)
        self._unknown: TTLCache[str, None] = TTLCache(maxsize=max(cache_bytes // 8, 1),
                                                      ttl=min(1.0, ttl), getsizeof=_entry_size)

    @property
    def required(self) -> bool:
        return self.registry is not None

    @property
    def cached_bytes(self) -> int:
        return int(self._valid.currsize + self._unknown.currsize)

    async def authorize(self, metadata: Sequence[tuple[str, Any]] | None, method: str,
                        journal: str | None = None) -> Grant:
        """The caller's Grant, checked for `method` (on `journal`): UNAUTHENTICATED for a
        missing, unknown, revoked or expired token, PERMISSION_DENIED beyond its scope."""
        grant = await self.grant(metadata)
        grant.check(method, journal)
        return grant

    async def grant(self, metadata: Sequence[tuple[str, Any]] | None) -> Grant:
        if self.registry is None:
            return Grant(self.local_namespace)
        token = _bearer(metadata)
        key = digest(token)
        info = self._valid.get(key)
        if info is None and key not in self._unknown:
            info = await self.registry.lookup(token)
            with suppress(ValueError):  # larger than the cache (--auth-cache-bytes 0): none
                if info is not None:
                    self._valid[key] = info
                else:
                    self._unknown[key] = None
        if info is None:
            metrics.AUTH_FAILURES.labels("unknown").inc()
            raise RequestError(
                grpc.StatusCode.UNAUTHENTICATED,
                "the token is unknown or revoked; ask your operator for a new one "
                "(storage-proxy token issue --user NAME)",
            )
        if info.scope.expired():
            metrics.AUTH_FAILURES.labels("expired").inc()
            raise RequestError(
                grpc.StatusCode.UNAUTHENTICATED,
                f"the token {info.token_id} of user {info.user!r} expired at "
                f"{format_time(info.scope.expires)}; ask for a new one (your operator, or "
                "whoever shared it with you)")
        return Grant(info.namespace, info.scope, info.user, info.token_id, info.created)


def _entry_size(info: TokenInfo | None) -> int:
    """What one cached token takes: its digest (64 characters), its record's strings, the
    objects' overheads."""
    if info is None:
        return 64 + 100
    return 64 + len(info.user) + len(info.namespace) + len(info.note) + \
        len(info.scope.journal or "") + 800


def _bearer(metadata: Sequence[tuple[str, Any]] | None) -> str:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else str(value)
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            break
    metrics.AUTH_FAILURES.labels("missing").inc()
    raise RequestError(
        grpc.StatusCode.UNAUTHENTICATED,
        "missing token: the call carries no 'authorization: Bearer <token>' metadata",
    )
