"""Journals in Redis: one LIST per journal, appended and read by Lua scripts.

Every key of one journal carries the hash tag ``{namespace/journal}``, so a journal lives on one
Redis Cluster shard and each script touches one slot. Positions are LIST indexes: the log only
ever grows (until the whole journal is deleted), so an index never changes meaning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from storage_proxy.redis import scripts

DEDUP_SECONDS = 3600  # how long a retried append is recognised as one (lua/append.lua)
DELETED = b"D"  # published on a journal's channel when the journal is deleted


@dataclass(frozen=True)
class JournalRef:
    """Names the Redis keys of one journal of one namespace."""

    prefix: str
    namespace: str
    name: str

    @property
    def _base(self) -> str:
        return f"{self.prefix}:j:{{{self.namespace}/{self.name}}}"

    @property
    def log(self) -> str:
        return self._base + ":log"

    @property
    def client_prefix(self) -> str:
        """Prefix of the per-client deduplication keys (same hash tag as the log)."""
        return self._base + ":client:"

    @property
    def snapshot(self) -> str:
        return self._base + ":snapshot"

    @property
    def heartbeats(self) -> str:
        return self._base + ":heartbeats"

    @property
    def channel(self) -> str:
        return self._base + ":appended"

    @property
    def all_keys(self) -> list[str]:
        return [self.log, self.snapshot, self.heartbeats]


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
    outcomes: list[tuple[str, int]]  # per append: ("ok" | "dup" | "stale" | "beyond", first)


class JournalStore:
    """The journal operations on Redis, each one round trip where it matters."""

    def __init__(self, redis: Any, prefix: str = "ogs") -> None:
        self.redis = redis
        self.prefix = prefix
        self._append = scripts.register(redis, "append")
        self._read = scripts.register(redis, "read")
        self._save_snapshot = scripts.register(redis, "save_snapshot")
        self._heartbeat = scripts.register(redis, "heartbeat")
        self._get_heartbeats = scripts.register(redis, "get_heartbeats")
        self._registered: set[tuple[str, str]] = set()

    def ref(self, namespace: str, journal: str) -> JournalRef:
        return JournalRef(self.prefix, namespace, journal)

    def _index(self, namespace: str) -> str:
        return f"{self.prefix}:ns:{{{namespace}}}:journals"

    async def _register(self, ref: JournalRef) -> None:
        """Add the journal to its namespace's index once per process (idempotent)."""
        if (ref.namespace, ref.name) not in self._registered:
            await self.redis.sadd(self._index(ref.namespace), ref.name)
            self._registered.add((ref.namespace, ref.name))

    async def append_batch(
        self, ref: JournalRef, appends: Sequence[Append], gap_from: int,
        max_gap_entries: int, max_gap_bytes: int,
    ) -> BatchResult:
        await self._register(ref)
        args: list[Any] = [ref.channel, gap_from, max_gap_entries, max_gap_bytes,
                           DEDUP_SECONDS, len(appends)]
        for a in appends:
            args += [a.client_id, a.sequence, a.known, len(a.entries)]
        for a in appends:
            args += a.entries
        length, start, gap, outcomes = await self._append(keys=[ref.log, ref.client_prefix],
                                                          args=args)
        return BatchResult(int(length), int(start), list(gap),
                           [(status.decode(), int(first)) for status, first in outcomes])

    async def read_chunk(
        self, ref: JournalRef, start: int, stop: int, max_bytes: int
    ) -> tuple[int, list[bytes]]:
        """Entries [start, stop) up to max_bytes (stop < 0: to the end), and the log length."""
        length, entries = await self._read(keys=[ref.log], args=[start, stop, max_bytes])
        return int(length), list(entries)

    async def save_snapshot(self, ref: JournalRef, position: int, data: bytes) -> tuple[bool, int]:
        await self._register(ref)
        try:
            stored, held = await self._save_snapshot(
                keys=[ref.snapshot, ref.log], args=[position, data]
            )
        except Exception as e:
            raise scripts.refusal(e) or e from None
        return bool(stored), int(held)

    async def load_snapshot(self, ref: JournalRef) -> tuple[int, bytes] | None:
        position, data = await self.redis.hmget(ref.snapshot, ["position", "data"])
        if position is None or data is None:
            return None
        return int(position), bytes(data)

    async def list_journals(self, namespace: str) -> list[tuple[str, int, int, int]]:
        """(name, length, snapshot position or -1, snapshot bytes) of each journal."""
        names = sorted(n.decode() for n in await self.redis.smembers(self._index(namespace)))
        out = []
        for name in names:
            ref = self.ref(namespace, name)
            length = await self.redis.llen(ref.log)
            position = await self.redis.hget(ref.snapshot, "position")
            size = await self.redis.hstrlen(ref.snapshot, "data")
            out.append((name, int(length), int(position) if position else -1, int(size)))
        return out

    async def delete_journal(self, ref: JournalRef) -> bool:
        """Delete every key of the journal and tell every proxy to forget its cached copy."""
        deleted = await self.redis.delete(*ref.all_keys)
        removed = await self.redis.srem(self._index(ref.namespace), ref.name)
        await self.redis.publish(ref.channel, DELETED)
        self._registered.discard((ref.namespace, ref.name))
        return bool(deleted or removed)

    async def record_heartbeats(self, ref: JournalRef, trial_ids: Sequence[int]) -> int:
        return int(await self._heartbeat(keys=[ref.heartbeats], args=list(trial_ids)))

    async def get_heartbeats(
        self, ref: JournalRef, trial_ids: Sequence[int]
    ) -> tuple[int, dict[int, int]]:
        """Server time in ms and, for each trial that has one, its last heartbeat in ms."""
        if not trial_ids:
            t = await self.redis.time()
            return int(t[0]) * 1000 + int(t[1]) // 1000, {}
        now, stamps = await self._get_heartbeats(keys=[ref.heartbeats], args=list(trial_ids))
        pairs = zip(trial_ids, stamps, strict=True)
        return int(now), {t: int(s) for t, s in pairs if s is not None}
