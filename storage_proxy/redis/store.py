"""Journals in Redis: one LIST per journal, appended and read by Lua scripts.

Every key of one journal carries the hash tag ``{namespace/journal}`` (keys.py), so a journal
lives on one Redis Cluster shard and each script touches one slot. Positions are LIST indexes:
the log only ever grows (until the whole journal is deleted), so an index never changes
meaning. Every write is charged to the namespace's quota inside its script (quotas.py).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import redis.exceptions

from optuna_grpc_storage.protocol.errors import RequestError
from storage_proxy.quotas import Quotas, need_of
from storage_proxy.redis import scripts
from storage_proxy.redis.client import lean
from storage_proxy.redis.keys import JournalRef, NamespaceKeys
from storage_proxy.redis.replication import Replication, not_confirmed, script_then_wait
from storage_proxy.redis.snapshots import Snapshots

__all__ = ["DELETED", "Append", "BatchResult", "JournalRef", "JournalStore"]

# How long a retried append is recognised as one, at least (lua/append.lua; measured by each
# proxy's clock, so replicas' clocks should agree to well within this).
DEDUP_SECONDS = 3600
HEARTBEAT_SECONDS = 7 * 86400  # a journal's heartbeats expire this long after the last one
DELETED = b"D"  # on a journal's channel: drop your copy (deleted, or a batch too big to publish)
QUOTA_ROUNDS = 4  # reservations one write may need (a journal written before quotas: 2)
MAX_REFS = 10_000  # journal refs kept for reuse
HEARTBEAT_IDS = 1_000  # trials per heartbeat script call: about a millisecond of Redis
T = TypeVar("T")


@dataclass(frozen=True)
class Append:
    """One client's append, as it goes into a batch."""

    entries: list[bytes]
    client_id: str
    sequence: int
    known: int


@dataclass(frozen=True)
class BatchResult:
    length: int  # journal length before the batch
    gap_from: int
    gap: list[bytes]  # entries [gap_from, length)
    # per append: ("ok" | "dup" | "stale" | "beyond" | "quota", first)
    outcomes: list[tuple[str, int]]
    refusal: RequestError | None = None  # why the "quota" appends were refused
    # why the "ok" and "dup" appends must not be answered OK: too few replicas confirmed them
    unconfirmed: RequestError | None = None


def _unsettled() -> RequestError:
    return RequestError(grpc.StatusCode.UNAVAILABLE,
                        "the write's quota reservation did not settle; retry it")


class JournalStore:
    """The journal operations on Redis, each one round trip where it matters."""

    def __init__(self, redis: Any, prefix: str = "ogs", quotas: Quotas | None = None,
                 heartbeat_seconds: int = HEARTBEAT_SECONDS,
                 replication: Replication | None = None) -> None:
        self.redis = redis
        self.prefix = prefix
        self.replication = replication or Replication()
        self.quotas = quotas or Quotas(redis, prefix)
        self.heartbeat_seconds = heartbeat_seconds
        self.snapshots = Snapshots(redis, self.charged)
        self._refs: dict[tuple[str, str], JournalRef] = {}
        self._append = lean(redis, scripts.register(redis, "append"))  # the hot ones
        self._read = lean(redis, scripts.register(redis, "read"))
        self._heartbeat = scripts.register(redis, "heartbeat")
        self._get_heartbeats = scripts.register(redis, "get_heartbeats")
        self._forget = scripts.register(redis, "forget_journal")
        self._delete = scripts.register(redis, "delete_journal")
        # Also keep each client's record under its own key, for replicas that read only
        # those: until told that none of them serves (serve.py follows presence.py).
        self.legacy_records = True

    def keep_legacy_records(self, needed: bool) -> None:
        """Whether a replica of the earlier layout serves this Redis (lua/append.lua)."""
        self.legacy_records = needed

    def ref(self, namespace: str, journal: str) -> JournalRef:
        """The journal's keys, the same object for the journals in use (MAX_REFS at most)."""
        key = (namespace, journal)
        ref = self._refs.get(key)
        if ref is None:
            if len(self._refs) >= MAX_REFS:
                self._refs.clear()
            ref = self._refs[key] = JournalRef(self.prefix, namespace, journal)
        return ref

    async def charged(self, ref: JournalRef, call: Callable[[], Awaitable[T]]) -> T:
        """call() (a write script) until it fits the journal's quota: each NEED_QUOTA answer
        reserves what it misses from the namespace (or raises RESOURCE_EXHAUSTED)."""
        for _ in range(QUOTA_ROUNDS):
            try:
                return await call()
            except redis.exceptions.ResponseError as e:
                need = need_of(e)
                if need is None:
                    raise scripts.refusal(e) or e from None
            await self.quotas.reserve(ref, *need)
        raise _unsettled()

    async def append_batch(
        self, ref: JournalRef, appends: Sequence[Append], gap_from: int,
        max_gap_entries: int, max_gap_bytes: int,
    ) -> BatchResult:
        """One script call for the batch. When the namespace cannot grant what it needs, the
        appends that fit go in (in order) and the others are answered "quota"."""
        entry_bytes = (await self.quotas.limits(ref.namespace)).entry_bytes
        head: list[Any] = []
        entries: list[Any] = []
        for a in appends:
            head += [a.client_id, a.sequence, a.known, len(a.entries)]
            entries += a.entries
        refused: RequestError | None = None
        for _ in range(QUOTA_ROUNDS):
            args = [ref.channel, gap_from, max_gap_entries, max_gap_bytes, DEDUP_SECONDS,
                    int(refused is not None), entry_bytes, int(time.time() * 1000),
                    int(self.legacy_records), len(appends), *head, *entries]
            keys = [ref.log, ref.lens, ref.usage, ref.client_prefix]
            unconfirmed = None
            try:
                if self.replication.wanted:  # the script and WAIT on one connection
                    (length, start, gap, outcomes), reached = await script_then_wait(
                        self.redis, self._append, keys, args, self.replication)
                    if reached < self.replication.replicas:
                        unconfirmed = not_confirmed(self.replication, reached)
                else:
                    length, start, gap, outcomes = await self._append(keys=keys, args=args)
            except redis.exceptions.ResponseError as e:
                need = need_of(e)
                if need is None:
                    raise scripts.refusal(e) or e from None
                try:
                    await self.quotas.reserve(ref, *need)
                except RequestError as r:
                    if r.code != grpc.StatusCode.RESOURCE_EXHAUSTED:
                        raise
                    refused = r  # what is left goes to the appends that fit, in order
                    with suppress(RequestError):
                        await self.quotas.reserve(ref, *need, partial=True)
                continue
            return BatchResult(int(length), int(start), list(gap),
                               [(status.decode(), int(first)) for status, first in outcomes],
                               refused, unconfirmed)
        raise _unsettled()

    async def read_chunk(
        self, ref: JournalRef, start: int, stop: int, max_bytes: int
    ) -> tuple[int, list[bytes]]:
        """Entries [start, stop) up to max_bytes (stop < 0: to the end), and the log length."""
        length, entries = await self._read(keys=[ref.log, ref.lens],
                                           args=[start, stop, max_bytes])
        return int(length), list(entries)

    async def list_journals(self, namespace: str) -> list[tuple[str, int, int, int, int]]:
        """(name, length, snapshot position or -1, snapshot bytes, bytes charged) of each
        journal, in one pipelined round trip."""
        keys = NamespaceKeys(self.prefix, namespace)
        names = sorted(n.decode() for n in await self.redis.smembers(keys.journals))
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                ref = self.ref(namespace, name)
                pipe.llen(ref.log)
                pipe.hmget(ref.snapshot, ["position", "size"])
                pipe.hstrlen(ref.snapshot, "data")
                pipe.hget(ref.usage, "used")
            answers = await pipe.execute()
        out = []
        for i, name in enumerate(names):
            length, (position, size), whole, used = answers[4 * i : 4 * i + 4]
            out.append((name, int(length), int(position) if position else -1,
                        int(size or whole or 0), int(used or 0)))
        return out

    async def delete_journal(self, ref: JournalRef) -> bool:
        """Delete every key of the journal and tell every proxy to forget its cached copy:
        first the namespace's half (the index, the bytes granted), then the journal's."""
        keys = NamespaceKeys(self.prefix, ref.namespace)
        _, removed = await self._forget(keys=[keys.quota, keys.journals], args=[ref.name])
        journal_keys = [ref.log, ref.lens, ref.snapshot, ref.uploads, ref.heartbeats, ref.usage,
                 ref.snapshot_prefix]
        if not self.replication.wanted:
            existed = await self._delete(keys=journal_keys, args=[ref.channel])
            return bool(existed or removed)
        # A deletion is rare and a journal that comes back after a failover surprises: it is
        # confirmed like an append (the WAIT covers the forget_journal call before it too).
        existed, reached = await script_then_wait(self.redis, self._delete, journal_keys,
                                                  [ref.channel], self.replication)
        if reached < self.replication.replicas:
            raise not_confirmed(self.replication, reached)
        return bool(existed or removed)

    async def record_heartbeats(self, ref: JournalRef, trial_ids: Sequence[int]) -> int:
        """Stamp trials with the Redis clock, HEARTBEAT_IDS trials per script call."""
        now = 0
        for i in range(0, len(trial_ids), HEARTBEAT_IDS):
            ids = trial_ids[i : i + HEARTBEAT_IDS]
            now = int(await self.charged(ref, lambda ids=ids: self._heartbeat(
                keys=[ref.heartbeats, ref.log, ref.usage],
                args=[self.heartbeat_seconds, *ids])))
        return now

    async def get_heartbeats(
        self, ref: JournalRef, trial_ids: Sequence[int]
    ) -> tuple[int, dict[int, int]]:
        """Server time in ms and, for each trial that has one, its last heartbeat in ms."""
        if not trial_ids:
            t = await self.redis.time()
            return int(t[0]) * 1000 + int(t[1]) // 1000, {}
        now, stamps = 0, {}
        for i in range(0, len(trial_ids), HEARTBEAT_IDS):
            ids = list(trial_ids[i : i + HEARTBEAT_IDS])
            now, found = await self._get_heartbeats(keys=[ref.heartbeats], args=ids)
            stamps.update({t: int(s) for t, s in zip(ids, found, strict=True) if s is not None})
        return int(now), stamps
