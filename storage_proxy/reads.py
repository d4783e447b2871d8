"""Reads: answered from the cache's window of a journal when it holds the start, from Redis
otherwise (and what was read from Redis up to the end becomes the window)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from optuna_grpc_storage.protocol.errors import RequestError
from optuna_grpc_storage.protocol.limits import Limits
from storage_proxy import metrics
from storage_proxy.cache import ENTRY_OVERHEAD, JournalCache
from storage_proxy.redis.store import JournalRef, JournalStore


def chunks(entries: list[bytes], max_bytes: int) -> list[list[bytes]]:
    """Split entries into runs of at most max_bytes (one oversized entry stands alone)."""
    out: list[list[bytes]] = [[]]
    size = 0
    for e in entries:
        if out[-1] and size + len(e) > max_bytes:
            out.append([])
            size = 0
        out[-1].append(e)
        size += len(e)
    return out


class Tail:
    """Entries collected from a read to become (part of) a window, within the cache's budget:
    with keep_newest, the newest that fit (the oldest go, `start` moves on); without, add()
    returns None once the budget is passed (nothing of it is kept)."""

    def __init__(self, max_bytes: int, start: int = 0, keep_newest: bool = False) -> None:
        self.max_bytes = max_bytes
        self.start = start
        self.keep_newest = keep_newest
        self.entries: list[bytes] = []
        self.size = 0

    def add(self, entries: list[bytes]) -> Tail | None:
        self.entries += entries
        self.size += sum(len(e) + ENTRY_OVERHEAD for e in entries)
        if self.size <= self.max_bytes:
            return self
        if not self.keep_newest:
            return None
        drop = 0
        while self.size > self.max_bytes and drop < len(self.entries):
            self.size -= len(self.entries[drop]) + ENTRY_OVERHEAD
            drop += 1
        del self.entries[:drop]
        self.start += drop
        return self


class Reader:
    def __init__(self, store: JournalStore, cache: JournalCache, limits: Limits) -> None:
        self.store = store
        self.cache = cache
        self.limits = limits

    async def read(self, ref: JournalRef, start: int,
                   stop: int) -> AsyncIterator[tuple[int, int, list[bytes]]]:
        """Yield (position, journal length, entries) chunks of [start, stop), stop < 0 being
        the end; OUT_OF_RANGE when start is past the end."""
        max_bytes = self.limits.max_chunk_bytes
        window = self.cache.lookup(ref, start, stop)
        if window is not None:
            position = start
            if start < window.start:  # history before the window: Redis, then remember it
                older: Tail | None = Tail(self.cache.max_bytes)
                async for position, _, entries in self._from_redis(ref, start, window.start):
                    older = older and older.add(entries)  # None once past the budget
                    metrics.record_read(len(entries), sum(map(len, entries)), source="redis")
                    yield position, window.end, entries
                if older is not None:
                    self.cache.prepend(ref, start, older.entries)
                position = window.start
            end = window.end if stop < 0 else min(stop, window.end)
            for part in chunks(window.slice(position, end), max_bytes):
                if part or position == start:
                    metrics.record_read(len(part), sum(map(len, part)), source="cache")
                    yield position, window.end, part
                position += len(part)
            return
        token = self.cache.token(ref)
        tail = Tail(self.cache.max_bytes, start, keep_newest=True)
        reached_end, length = False, 0
        async for position, length, entries in self._from_redis(ref, start, stop):
            if token is not None:
                tail.add(entries)
            reached_end = position + len(entries) >= length
            metrics.record_read(len(entries), sum(map(len, entries)), source="redis")
            yield position, length, entries
        if token is not None and reached_end:
            self.cache.fill(ref, token, tail.start, tail.entries)
        elif token is None and length > 0:
            self.cache.fill_token(ref)  # a journal someone reads: cache it from the next read

    async def _from_redis(self, ref: JournalRef, start: int,
                          stop: int) -> AsyncIterator[tuple[int, int, list[bytes]]]:
        max_bytes = self.limits.max_chunk_bytes
        length, entries = await self.store.read_chunk(ref, start, stop, max_bytes)
        if start > length:
            raise RequestError(
                grpc.StatusCode.OUT_OF_RANGE,
                f"position {start} is beyond the end of journal {ref.name!r} (length {length})")
        end = length if stop < 0 else min(stop, length)
        yield start, length, entries
        position = start + len(entries)
        while position < end and entries:
            _, entries = await self.store.read_chunk(ref, position, end, max_bytes)
            yield position, length, entries
            position += len(entries)
