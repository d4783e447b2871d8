"""Group commit: appends to one journal that arrive while a batch is in Redis wait and go
together in the next batch.

One script call for many clients cuts Redis round trips and commands per append as load grows,
and costs nothing when there is no load. Each append is answered with where it landed and the
entries its client had not seen (from the cache's window and what the script returned), so
the read Optuna makes after every write needs no call.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc

from optuna_grpc_storage.protocol.errors import RequestError
from optuna_grpc_storage.protocol.limits import Limits
from storage_proxy.cache import JournalCache, Window
from storage_proxy.redis.store import Append, BatchResult, JournalRef, JournalStore

MAX_BATCH_APPENDS = 256


@dataclass(frozen=True)
class Appended:
    first: int
    duplicate: bool
    unseen: list[bytes] | None  # entries [known, first); None: too many, use ReadLogs


@dataclass
class _Waiting:
    append: Append
    future: asyncio.Future[Appended]


class GroupCommit:
    def __init__(self, store: JournalStore, cache: JournalCache, limits: Limits) -> None:
        self.store = store
        self.cache = cache
        self.limits = limits
        self._queues: dict[str, list[_Waiting]] = {}
        self._committers: set[asyncio.Future[None]] = set()
        self.batches = 0  # Redis calls made for appends (a batch may hold many appends)

    async def append(self, ref: JournalRef, append: Append) -> Appended:
        waiting = _Waiting(append, asyncio.get_running_loop().create_future())
        queue = self._queues.get(ref.channel)
        if queue is not None:  # a batch is in Redis: join the next one
            queue.append(waiting)
            return await waiting.future
        # Nobody is committing to this journal: commit this append now, in this task (the
        # common, uncontended case costs no extra task). Appends that arrive meanwhile queue
        # up and are committed by a task of their own, which a cancelled caller cannot stop.
        queue = self._queues[ref.channel] = []
        try:
            await self._commit_batch(ref, [waiting])
        finally:
            if waiting.future.done() and not waiting.future.cancelled():
                waiting.future.exception()  # mark it seen: .result() below re-raises it
            if queue:
                task = asyncio.ensure_future(self._commit_all(ref, queue))
                self._committers.add(task)  # keep a reference until it is done
                task.add_done_callback(self._committers.discard)
            else:
                del self._queues[ref.channel]
        return waiting.future.result()

    async def _commit_all(self, ref: JournalRef, queue: list[_Waiting]) -> None:
        try:
            while queue:
                await self._commit_batch(ref, self._take(queue))
        finally:
            del self._queues[ref.channel]

    async def _commit_batch(self, ref: JournalRef, batch: list[_Waiting]) -> None:
        try:
            self._settle(ref, batch, await self._commit(ref, batch))
        except BaseException as e:  # every waiter hears of it; retrying them is safe
            error = e if isinstance(e, Exception) else RequestError(
                grpc.StatusCode.UNAVAILABLE, "the append was interrupted; retry it")
            for w in batch:
                if not w.future.done():
                    w.future.set_exception(error)
            if not isinstance(e, Exception):
                raise

    def _take(self, queue: list[_Waiting]) -> list[_Waiting]:
        batch, entries, size = [], 0, 0
        while queue and len(batch) < MAX_BATCH_APPENDS:
            a = queue[0].append
            n, b = len(a.entries), sum(map(len, a.entries))
            if batch and (entries + n > self.limits.max_batch_entries
                          or size + b > self.limits.max_batch_bytes):
                break
            batch.append(queue.pop(0))
            entries, size = entries + n, size + b
        return batch

    async def _commit(self, ref: JournalRef, batch: list[_Waiting]) -> tuple[Window | None,
                                                                                  BatchResult]:
        window = self.cache.window(ref)
        lowest = min(w.append.known for w in batch)
        gap_from = window.end if window and window.start <= lowest <= window.end else lowest
        self.batches += 1
        result = await self.store.append_batch(
            ref, [w.append for w in batch], gap_from,
            self.limits.max_unseen_entries, self.limits.max_chunk_bytes)
        return window, result

    def _settle(self, ref: JournalRef, batch: list[_Waiting],
                done: tuple[Window | None, BatchResult]) -> None:
        window, r = done
        added = [e for w, (status, _) in zip(batch, r.outcomes, strict=True) if status == "ok"
                 for e in w.append.entries]

        def known_entries(lo: int, hi: int) -> list[bytes] | None:
            """Entries [lo, hi) from what this batch learnt, or None if some are missing."""
            out: list[bytes] = []
            if lo < r.gap_from:
                if window is None or not window.start <= lo or window.end < min(hi, r.gap_from):
                    return None
                out += window.slice(lo, min(hi, r.gap_from))
                lo = min(hi, r.gap_from)
            if lo < min(hi, r.length):
                out += r.gap[lo - r.gap_from : min(hi, r.length) - r.gap_from]
                lo = min(hi, r.length)
            if lo < hi:
                out += added[lo - r.length : hi - r.length]
            return out

        limit = self.limits.max_unseen_entries
        for w, (status, first) in zip(batch, r.outcomes, strict=True):
            a = w.append
            if w.future.done():
                continue
            if status == "stale":
                w.future.set_exception(RequestError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"sequence {a.sequence} of client {a.client_id!r} is older than its last "
                    f"applied append ({first}): a delayed copy of a request that was already "
                    "answered"))
            elif status == "quota":  # the namespace could not grant its bytes
                w.future.set_exception(r.refusal or RequestError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED, "the journal's quota is used up"))
            elif status == "beyond":
                w.future.set_exception(RequestError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"known_position {a.known} is beyond the end of journal {ref.name!r} "
                    f"(length {r.length}): was the journal deleted? Start a new client"))
            elif r.unconfirmed is not None:  # in Redis, but not on enough replicas yet
                w.future.set_exception(r.unconfirmed)
            else:  # "ok", or "dup": applied before, at `first` (-1 if that was not recorded)
                unseen = None
                if a.known <= first <= a.known + limit:  # -1 (not recorded) fails
                    unseen = known_entries(a.known, first)
                    if unseen is not None and sum(map(len, unseen)) > self.limits.max_chunk_bytes:
                        unseen = None
                w.future.set_result(Appended(first, status == "dup", unseen))
        self.cache.extend(ref, r.gap_from, r.gap, strict=False)
        self.cache.extend(ref, r.length, added, strict=False)
