"""Tokens: issued once, stored hashed in Redis, mapped to a user's namespace on every call.

A token looks like ``ogs_<id>_<secret>``. Redis keeps only SHA-256 of the whole token (the secret
has 256 bits of entropy, so a fast hash is the right tool) and the id, which names the token in
``token list`` and ``token revoke`` without revealing it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import grpc
from cachetools import TTLCache

from optuna_grpc_storage.protocol.errors import RequestError
from optuna_grpc_storage.protocol.names import check_user
from storage_proxy import metrics
from storage_proxy.redis import scripts


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    token_id: str
    user: str
    created: float


class TokenRegistry:
    """Issue, list, revoke and look up tokens in Redis (all keys under the {auth} hash tag)."""

    def __init__(self, redis: Any, prefix: str = "ogs") -> None:
        self.redis = redis
        self._token_key = f"{prefix}:{{auth}}:token:"  # + sha256 -> {"user", "id", "created"}
        self._ids = f"{prefix}:{{auth}}:ids"  # id -> sha256
        self._revoke = scripts.register(redis, "revoke_tokens")
        self._issue = scripts.register(redis, "issue_token")

    async def issue(self, user: str) -> tuple[str, str]:
        """Create a token for user; returns (token_id, token). The token is not stored."""
        check_user(user)
        token_id = secrets.token_hex(4)
        token = f"ogs_{token_id}_{secrets.token_urlsafe(32)}"
        record = json.dumps({"user": user, "id": token_id, "created": time.time()})
        digest = _digest(token)
        await self._issue(keys=[self._token_key + digest, self._ids],
                          args=[record, token_id, digest])
        return token_id, token

    async def user_of(self, token: str) -> str | None:
        record = await self.redis.get(self._token_key + _digest(token))
        return json.loads(record)["user"] if record else None

    async def list(self) -> list[TokenInfo]:
        digests = await self.redis.hgetall(self._ids)
        out = []
        for token_id, digest in digests.items():
            record = await self.redis.get(self._token_key + digest.decode())
            if record:
                r = json.loads(record)
                out.append(TokenInfo(token_id.decode(), r["user"], r["created"]))
        return sorted(out, key=lambda t: (t.user, t.created))

    async def revoke(
        self, token_ids: Sequence[str] = (), user: str | None = None, token: str | None = None
    ) -> int:
        """Revoke by id, by every token of a user, or by the plain token; returns how many."""
        ids = list(token_ids)
        if user is not None:
            ids += [t.token_id for t in await self.list() if t.user == user]
        if token is not None:
            record = await self.redis.get(self._token_key + _digest(token))
            if record:
                ids.append(json.loads(record)["id"])
        if not ids:
            return 0
        return int(await self._revoke(keys=[self._token_key, self._ids], args=ids))


class Authenticator:
    """Maps a call's metadata to a namespace. Lookups are cached for `cache_seconds`, which is
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
        self._valid: TTLCache[str, str] = TTLCache(maxsize=cache_bytes, ttl=ttl,
                                                   getsizeof=_entry_size)
        self._unknown: TTLCache[str, str] = TTLCache(maxsize=max(cache_bytes // 8, 1),
                                                     ttl=min(1.0, ttl), getsizeof=_entry_size)

    @property
    def required(self) -> bool:
        return self.registry is not None

    @property
    def cached_bytes(self) -> int:
        return int(self._valid.currsize + self._unknown.currsize)

    async def namespace(self, metadata: Sequence[tuple[str, Any]] | None) -> str:
        if self.registry is None:
            return self.local_namespace
        token = _bearer(metadata)
        digest = _digest(token)
        user = self._valid.get(digest)
        if user is None and digest not in self._unknown:
            user = await self.registry.user_of(token)
            with suppress(ValueError):  # larger than the cache (--auth-cache-bytes 0): none
                if user:
                    self._valid[digest] = user
                else:
                    self._unknown[digest] = ""
        if not user:
            metrics.AUTH_FAILURES.labels("unknown").inc()
            raise RequestError(
                grpc.StatusCode.UNAUTHENTICATED,
                "the token is unknown or revoked; ask your operator for a new one "
                "(storage-proxy token issue --user NAME)",
            )
        return user


def _entry_size(user: str) -> int:
    """What one cached token takes: its digest (64 characters), the user, dict and str
    overheads."""
    return 64 + len(user) + 200


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
