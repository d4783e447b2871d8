"""Quotas: how much one namespace may hold, enforced inside the Lua scripts that write.

Every write script (append, snapshot chunk, heartbeat) charges what it stores to its journal's
`usage` hash (bytes granted, bytes used), on the journal's shard, and writes nothing when it
does not fit. On a Redis Cluster a namespace's journals live on different shards (one hash tag
per journal), so no script sees the namespace's total. A journal short of bytes therefore asks
its namespace for what it misses plus a reserve of 1/8 of what it holds (64 KiB to 8 MiB):
lua/reserve.lua, on the namespace's shard, grants only what fits the limit (and refuses a
journal beyond the journal limit); lua/grant.lua then lets the journal use it.

Overshoot: none. The bytes granted never pass the quota and a journal never stores more than
it was granted. The price is bytes granted and not yet written (at most one reserve per
journal, returned when the journal is deleted), which count as used: a namespace may be
refused while up to max(64 KiB, min(8 MiB, 1/8 of the journal's bytes)) per journal is
reserved but empty. Failures: a proxy that dies between reserve and grant leaves bytes counted
that no journal uses (the next grant carries them: a grant holds the total, newest id wins).
Deleting a journal returns its bytes first and removes its keys second; a proxy that dies
between the two leaves that journal's keys uncounted until the delete is retried (clients
retry it) or the journal is written again (it is then charged again): one way past the
quota, by at most one journal's bytes per interrupted delete. The other is a failover with
asynchronous replication that loses the namespace's last grant but not the journal's (they
may live on different shards): at most that grant (a write plus its reserve) per journal.

Limits come from the operator (`storage-proxy quota set`): per-user overrides and a default,
stored under the {quota} hash tag; without a default, a user may hold a quarter of the
smallest Redis `maxmemory` (1 GiB when Redis has none), so one user at their quota leaves the
others room, and is refused by the proxy long before Redis refuses everyone.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import grpc
from cachetools import TTLCache

from optuna_grpc_storage.protocol.errors import RequestError
from optuna_grpc_storage.protocol.limits import Limits
from optuna_grpc_storage.protocol.quota import QuotaLimits, QuotaStatus, format_bytes
from storage_proxy import metrics
from storage_proxy.redis import scripts
from storage_proxy.redis.client import maxmemory
from storage_proxy.redis.keys import JournalRef, NamespaceKeys, quota_settings

DEFAULT_SHARE = 4  # without a stored default, a user may hold 1/4 of Redis' maxmemory
FALLBACK_BYTES = 1 << 30  # ... or this, when Redis has no maxmemory
DEFAULT_JOURNALS = 1000
MIN_RESERVE, MAX_RESERVE = 64 << 10, 8 << 20
MAXMEMORY_SECONDS = 60.0  # how long Redis' maxmemory is remembered
CACHE_BYTES = 4 << 20  # limits remembered per namespace, for cache_seconds
_ENTRY_COST = 200  # what one cached namespace's limits take, roughly


class QuotaSettings:
    """The operator's quotas in Redis: a default and per-user overrides (`quota set`)."""

    def __init__(self, redis: Any, prefix: str = "ogs", server: Limits | None = None) -> None:
        self.redis = redis
        self.prefix = prefix
        self.server = server or Limits()
        self._users, self._default = quota_settings(prefix)
        self._maxmemory: tuple[float, int] | None = None

    async def maxmemory(self) -> int:
        now = time.monotonic()
        if self._maxmemory is None or now - self._maxmemory[0] > MAXMEMORY_SECONDS:
            self._maxmemory = (now, await maxmemory(self.redis))
        return self._maxmemory[1]

    async def builtin(self) -> QuotaLimits:
        """The default when the operator stored none."""
        memory = await self.maxmemory()
        return QuotaLimits(bytes=memory // DEFAULT_SHARE if memory else FALLBACK_BYTES,
                           journals=DEFAULT_JOURNALS,
                           snapshot_bytes=self.server.max_snapshot_bytes,
                           entry_bytes=self.server.max_entry_bytes)

    async def stored(self, user: str | None) -> dict[str, int]:
        """The values set for one user (None: the default)."""
        raw = await (self.redis.get(self._default) if user is None
                     else self.redis.hget(self._users, user))
        return json.loads(raw) if raw else {}

    async def effective(self, user: str) -> QuotaLimits:
        """A user's limits: their overrides, else the stored default, else the built-in one;
        entry and snapshot sizes never above the server's own --max-* limits."""
        values = dataclasses.asdict(await self.builtin())
        values.update(await self.stored(None))
        values.update(await self.stored(user))
        values["entry_bytes"] = min(values["entry_bytes"], self.server.max_entry_bytes)
        values["snapshot_bytes"] = min(values["snapshot_bytes"], self.server.max_snapshot_bytes)
        return QuotaLimits(**values)

    async def set(self, user: str | None, values: dict[str, int]) -> None:
        unknown = set(values) - set(QuotaLimits.names())
        if unknown or any(v < 0 for v in values.values()):
            raise ValueError(f"quota values must be >= 0 and among {QuotaLimits.names()}")
        merged = {**await self.stored(user), **values}
        text = json.dumps(merged, sort_keys=True)
        if user is None:
            await self.redis.set(self._default, text)
        else:
            await self.redis.hset(self._users, user, text)

    async def reset(self, user: str | None) -> bool:
        """Forget a user's overrides (None: the stored default)."""
        if user is None:
            return bool(await self.redis.delete(self._default))
        return bool(await self.redis.hdel(self._users, user))

    async def overridden(self) -> dict[str, dict[str, int]]:
        raw = await self.redis.hgetall(self._users)
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    async def status(self, user: str, limits: QuotaLimits | None = None) -> QuotaStatus:
        """A user's limits and what their namespace holds (bytes reserved, journals)."""
        keys = NamespaceKeys(self.prefix, user)
        total = await self.redis.hget(keys.quota, "total")
        journals = await self.redis.scard(keys.journals)
        stored, count = await self.redis.hmget(keys.artifact_usage, ["bytes", "count"])
        leases = [v.split() for v in await self.redis.hvals(keys.artifact_uploads)]
        if leases:  # uploads in progress; those whose lease ran out hold nothing
            seconds, micros = await self.redis.time()
            now = int(seconds) * 1000 + int(micros) // 1000
            leases = [lease for lease in leases if int(lease[1]) >= now]
        uploading = sum(int(lease[0]) for lease in leases)
        return QuotaStatus(limits or await self.effective(user), int(total or 0),
                           int(journals), int(stored or 0) + uploading, int(count or 0))


class Quotas:
    """The proxy's side: each namespace's limits (remembered for cache_seconds, so every
    replica follows a change within that time), and more bytes for a journal that needs them."""

    def __init__(self, redis: Any, prefix: str = "ogs", server: Limits | None = None,
                 cache_seconds: float = 5.0) -> None:
        self.settings = QuotaSettings(redis, prefix, server)
        self.prefix = prefix
        self._limits: TTLCache[str, tuple[int, QuotaLimits]] = TTLCache(
            maxsize=CACHE_BYTES, ttl=max(cache_seconds, 0.001), getsizeof=lambda v: v[0])
        self._reserve = scripts.register(redis, "reserve")
        self._grant = scripts.register(redis, "grant")

    async def limits(self, namespace: str) -> QuotaLimits:
        hit = self._limits.get(namespace)
        if hit is not None:
            return hit[1]
        limits = await self.settings.effective(namespace)
        self._limits[namespace] = (_ENTRY_COST + len(namespace), limits)
        return limits

    async def status(self, namespace: str) -> QuotaStatus:
        return await self.settings.status(namespace, await self.limits(namespace))

    async def reserve(self, ref: JournalRef, missing: int, used: int,
                      partial: bool = False) -> None:
        """Grant the journal `missing` more bytes (and a reserve) from its namespace, or raise
        RESOURCE_EXHAUSTED naming the quota, its value and the current use. With partial, what
        is left of the limit when that is less (it raises only when nothing is left)."""
        limits = await self.limits(ref.namespace)
        keys = NamespaceKeys(self.prefix, ref.namespace)
        extra = max(MIN_RESERVE, min(MAX_RESERVE, used // 8))
        try:
            grant_id, held = await self._reserve(
                keys=[keys.quota, keys.journals],
                args=[ref.name, missing, extra, limits.bytes, limits.journals, int(partial)])
        except Exception as e:
            raise _refusal(e, ref) or scripts.refusal(e) or e from None
        await self._grant(keys=[ref.usage, ref.log, ref.snapshot], args=[grant_id, held])


def _refusal(e: Exception, ref: JournalRef) -> RequestError | None:
    text = str(e)
    if not text.startswith("QUOTA "):
        return None
    user, fix = ref.namespace, "ask your operator to raise it (storage-proxy quota set --user"
    kind, *numbers = text.split()[1:]
    metrics.record_quota_refusal(kind)
    if kind == "journals":
        limit, count = map(int, numbers)
        return RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, (
            f"quota 'journals' of user {user!r} reached: limit {limit}, in use {count}; "
            f"journal {ref.name!r} was not created and nothing was written. Delete journals "
            f"you no longer need (optuna-grpc-storage delete-journal NAME) or {fix} {user} "
            "--journals N)"))
    limit, total, missing = map(int, numbers)
    return RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, (
        f"quota 'bytes' of user {user!r} exceeded: limit {format_bytes(limit)} ({limit} "
        f"bytes), in use {format_bytes(total)} ({total} bytes), this write to journal "
        f"{ref.name!r} needs {missing} more; nothing was written. Delete finished journals "
        f"(optuna-grpc-storage delete-journal NAME) or {fix} {user} --bytes SIZE)"))


def need_of(e: Exception) -> tuple[int, int] | None:
    """(missing bytes, bytes used) of a script's NEED_QUOTA answer, or None."""
    text = str(e)
    if not text.startswith("NEED_QUOTA "):
        return None
    missing, used, _ = map(int, text.split()[1:4])
    return missing, used
