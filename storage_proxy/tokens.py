"""Tokens as Redis keeps them: issued once, stored hashed, listed and revoked by id.

A token looks like ``ogs_<id>_<secret>``. Redis keeps SHA-256 of the whole token (the secret
has 256 bits of entropy, so a fast hash is the right tool) with what the token may do: its
user, its namespace (the user's own, or a team's the operator named), its scope (read-only,
journals, expiry: protocol/scopes.py), a note, and the token it was shared from. The id (64
random bits, checked unique when issued) names the token in ``token list`` and
``token revoke`` without revealing it. Every key shares the ``{auth}`` hash tag.
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

import redis.exceptions
from cachetools import TTLCache

from optuna_grpc_storage.protocol.errors import invalid
from optuna_grpc_storage.protocol.names import check_user
from optuna_grpc_storage.protocol.scopes import FULL, Scope, check_journal_pattern
from storage_proxy.redis import scripts

ID_BYTES = 8  # 16 hex characters; issue retries on the (unlikely) clash with an existing id
ISSUE_ATTEMPTS = 5
EXPIRED_KEPT_SECONDS = 7 * 86400  # an expired token is refused as expired, and listed, so long
LAST_USE_SECONDS = 60  # last use is stamped at most this often per token and process
STAMPED_TOKENS = 100_000  # tokens a process remembers having stamped
MAX_SHARED = 100  # live tokens shared over the API (ShareToken) per namespace
MAX_NOTE_CHARS = 200


class TooManyTokens(Exception):
    """A namespace holds MAX_SHARED live shared tokens already."""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    """What Redis keeps of a token, never the token itself."""

    token_id: str
    user: str
    namespace: str
    created: float
    scope: Scope = FULL
    note: str = ""
    parent: str | None = None  # the id of the token it was shared from
    last_used: float | None = None  # when a proxy last looked it up (cached for a while)

    @classmethod
    def from_record(cls, raw: bytes | str, last_used: float | None = None) -> TokenInfo:
        r = json.loads(raw)
        return cls(token_id=r["id"], user=r["user"], namespace=r.get("namespace") or r["user"],
                   created=float(r["created"]), scope=Scope.from_record(r),
                   note=r.get("note") or "", parent=r.get("parent"), last_used=last_used)

    def to_record(self) -> str:
        return json.dumps({"id": self.token_id, "user": self.user, "namespace": self.namespace,
                           "created": self.created, **self.scope.to_record(), "note": self.note,
                           "parent": self.parent})


class TokenRegistry:
    """Issue, list, revoke and look up tokens in Redis."""

    def __init__(self, redis: Any, prefix: str = "ogs") -> None:
        self.redis = redis
        self._token_key = f"{prefix}:{{auth}}:token:"  # + sha256 -> the JSON record
        self._ids = f"{prefix}:{{auth}}:ids"  # id -> sha256
        self._used = f"{prefix}:{{auth}}:used"  # id -> when it was last looked up
        self._shared = f"{prefix}:{{auth}}:shared:"  # + namespace -> ZSET id -> expiry ms
        self._revoke = scripts.register(redis, "revoke_tokens")
        self._issue = scripts.register(redis, "issue_token")
        # Tokens whose last use this process stamped within the minute (bounded).
        self._stamped: TTLCache[str, float] = TTLCache(maxsize=STAMPED_TOKENS,
                                                       ttl=LAST_USE_SECONDS)

    async def issue(self, user: str, *, namespace: str | None = None, scope: Scope = FULL,
                    note: str = "", parent: str | None = None) -> tuple[str, str]:
        """Create a token; returns (token_id, token). The token itself is not stored. A token
        with a parent (shared over the API) counts against its namespace's MAX_SHARED."""
        check_user(user)
        check_user(namespace or user)
        if len(note) > MAX_NOTE_CHARS or not note.isprintable():
            raise invalid(f"the note must be at most {MAX_NOTE_CHARS} printable characters")
        if scope.journal is not None:
            check_journal_pattern(scope.journal)
        now = time.time()
        if scope.expires is not None and scope.expires <= now:
            raise ValueError("the token would expire before it is issued")
        ttl_ms = 0 if scope.expires is None else \
            int((scope.expires - now + EXPIRED_KEPT_SECONDS) * 1000)
        expires_ms = 0 if scope.expires is None else int(scope.expires * 1000)
        shared_key = self._shared + (namespace or user)
        for _ in range(ISSUE_ATTEMPTS):
            token_id = secrets.token_hex(ID_BYTES)
            token = f"ogs_{token_id}_{secrets.token_urlsafe(32)}"
            info = TokenInfo(token_id, user, namespace or user, now, scope, note, parent)
            done = int(await self._issue(
                keys=[self._token_key + digest(token), self._ids, shared_key],
                args=[info.to_record(), token_id, digest(token), ttl_ms, int(now * 1000),
                      expires_ms, MAX_SHARED if parent else 0]))
            if done == 1:
                return token_id, token
            if done == -1:
                raise TooManyTokens(f"namespace {namespace or user!r} holds {MAX_SHARED} live "
                                    "shared tokens already")
        raise RuntimeError(f"no unused token id after {ISSUE_ATTEMPTS} attempts")

    async def lookup(self, token: str) -> TokenInfo | None:
        """The token's record, or None. Its last use is stamped at most once a minute by this
        process (a proxy looks a token up only when its cache of it expires, and most
        lookups are one GET); a stamp Redis refuses (maxmemory) changes nothing."""
        raw = await self.redis.get(self._token_key + digest(token))
        if not raw:
            return None
        info = TokenInfo.from_record(raw)
        now = time.time()
        if info.token_id not in self._stamped:
            self._stamped[info.token_id] = now
            with suppress(redis.exceptions.ResponseError):
                await self.redis.hset(self._used, info.token_id, f"{now:.0f}")
        return info

    async def list(self) -> list[TokenInfo]:
        """Every token, by user then creation; ids whose record expired are dropped."""
        ids = {k.decode(): v.decode() for k, v in (await self.redis.hgetall(self._ids)).items()}
        used = {k.decode(): float(v) for k, v in (await self.redis.hgetall(self._used)).items()}
        async with self.redis.pipeline(transaction=False) as pipe:
            for token_digest in ids.values():
                pipe.get(self._token_key + token_digest)
            records = await pipe.execute()
        out, gone = [], []
        for token_id, raw in zip(ids, records, strict=True):
            if raw:
                out.append(TokenInfo.from_record(raw, used.get(token_id)))
            else:
                gone.append(token_id)
        if gone:
            await self._delete(gone)
        return sorted(out, key=lambda t: (t.user, t.created))

    async def revoke(self, token_ids: Sequence[str] = (), user: str | None = None,
                     token: str | None = None, namespace: str | None = None) -> int:
        """Revoke by id, every token of a user or of a namespace, or the plain token; the
        tokens shared from a revoked one go with it. Returns how many."""
        tokens = await self.list()
        ids = set(token_ids)
        ids |= {t.token_id for t in tokens if t.user == user or t.namespace == namespace}
        if token is not None:
            found = await self.redis.get(self._token_key + digest(token))
            if found:
                ids.add(TokenInfo.from_record(found).token_id)
        while True:  # and what was shared from them, at any depth
            more = {t.token_id for t in tokens if t.parent in ids} - ids
            if not more:
                break
            ids |= more
        if not ids:
            return 0
        return await self._delete(sorted(ids))

    async def _delete(self, token_ids: Sequence[str]) -> int:
        return int(await self._revoke(keys=[self._token_key, self._ids, self._used,
                                            self._shared], args=list(token_ids)))
