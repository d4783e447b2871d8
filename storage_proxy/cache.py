"""The proxy's memory of recent journal entries, so that reads need no Redis round trip.

Each cached journal is a *window*: its entries [start, end), where end is the journal's end as
far as this process knows. A window is only ever created from a Redis read made after this
process's subscription to the journal's pub/sub channel was confirmed, and every append after
that read arrives as a message (the append script PUBLISHes `<first>\\n<entries...>`). So a window
is at most one message delivery behind Redis. Anything that could break that chain (a gap
between messages, a lost pub/sub connection, a failed check) drops the window; the next read
goes to Redis and builds a new one. As a safety net, every `verify_seconds` the windows' ends
are compared with the journals' lengths in Redis.

The total size of all windows is bounded by `max_bytes` (least recently used journals go
first; a single journal larger than the budget keeps only its newest entries). Messages that
arrive before a window exists are bounded too (EARLY_SHARE of the budget), a journal is only
subscribed to once a read found entries in it (a read of a journal that does not exist leaves
nothing behind), at most `max_channels` at once, and a journal nobody read for `idle_seconds`
is dropped with its subscription.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import OrderedDict
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from storage_proxy import metrics
from storage_proxy.redis.store import DELETED, JournalRef

log = logging.getLogger("storage_proxy.cache")

ENTRY_OVERHEAD = sys.getsizeof(b"") + 8  # bytes object header + one list slot
EARLY_SHARE = 4  # messages waiting for a window: at most 1/4 of the budget in all
MAX_CHANNELS = 10_000


@dataclass
class Window:
    ref: JournalRef
    start: int
    entries: list[bytes] = field(default_factory=list)
    nbytes: int = 0

    @property
    def end(self) -> int:
        return self.start + len(self.entries)

    def slice(self, lo: int, hi: int) -> list[bytes]:
        return self.entries[lo - self.start : hi - self.start]


def _cost(entries: list[bytes]) -> int:
    return sum(len(e) for e in entries) + ENTRY_OVERHEAD * len(entries)


class JournalCache:
    def __init__(self, redis: Any, max_bytes: int, verify_seconds: float = 5.0,
                 subscriber: Any = None, idle_seconds: float = 300.0,
                 max_channels: int = MAX_CHANNELS) -> None:
        self.redis = redis
        # A plain client to SUBSCRIBE with (a cluster client cannot): redis_client.connect_pubsub
        self.subscriber = subscriber if subscriber is not None else redis
        self.max_bytes = max_bytes
        self.verify_seconds = verify_seconds
        self.idle_seconds = idle_seconds
        self.max_channels = max_channels
        self.size = 0
        self.early_bytes = 0  # in _early
        self.hits = 0
        self.misses = 0
        self._windows: OrderedDict[str, Window] = OrderedDict()  # by channel
        self._confirmed: set[str] = set()  # channels whose SUBSCRIBE Redis has acknowledged
        self._requested: set[str] = set()  # SUBSCRIBE sent, not yet acknowledged
        self._early: dict[str, list[bytes]] = {}  # messages of confirmed channels, no window yet
        self._used: dict[str, float] = {}  # channel -> when a read or an append last used it
        self._epochs: dict[str, int] = {}  # channel -> which confirmation this is
        self._epoch = 0
        self._pubsub: Any = None
        self._tasks: set[asyncio.Future[None]] = set()

    # -- windows -------------------------------------------------------------------------------

    @property
    def subscriptions(self) -> int:
        return len(self._confirmed) + len(self._requested)

    def window(self, ref: JournalRef) -> Window | None:
        w = self._windows.get(ref.channel)
        if w is not None:
            self._windows.move_to_end(ref.channel)
            self._used[ref.channel] = time.monotonic()
        return w

    def lookup(self, ref: JournalRef, start: int, stop: int) -> Window | None:
        """The window to answer a read of [start, stop) from (stop < 0: the end), or None
        when the read must go to Redis: nothing cached, or all of it before the window, or a
        start past its end. Counted as a hit or a miss."""
        window = self.window(ref)
        if window is not None and start < window.start and (0 <= stop <= window.start):
            window = None  # wholly before the window: a plain Redis read
        if window is not None and start > window.end:
            window = None
        hit = window is not None
        if hit:
            self.hits += 1
        else:
            self.misses += 1
        metrics.record_cache_lookup(hit)
        return window

    def token(self, ref: JournalRef) -> int | None:
        """A token if a Redis read starting now may become a window (pass it to fill())."""
        if ref.channel in self._confirmed:
            self._used[ref.channel] = time.monotonic()
            return self._epochs[ref.channel]
        return None

    def fill_token(self, ref: JournalRef) -> int | None:
        """token(); and if there is none, ask for the subscription that will make one (call it
        only for a journal that exists: subscriptions are for journals someone reads)."""
        found = self.token(ref)
        if found is not None or self.max_bytes <= 0:
            return found
        if (ref.channel not in self._requested and self._pubsub is not None
                and self.subscriptions < self.max_channels):
            self._requested.add(ref.channel)
            self._used[ref.channel] = time.monotonic()
            self._spawn(self._command(self._pubsub.subscribe, ref.channel))
        return None

    def fill(self, ref: JournalRef, token: int, start: int, entries: list[bytes]) -> None:
        """Entries [start, end of the journal) read from Redis after fill_token() gave token."""
        if self._epochs.get(ref.channel) != token or ref.channel not in self._confirmed:
            return  # the subscription changed during the read: messages may be missing
        end = start + len(entries)
        current = self._windows.get(ref.channel)
        if current is not None and start <= current.end and end >= current.start:
            lo = min(start, current.start)
            merged = (entries[: current.start - start] if start < current.start else [])
            merged += current.entries + (entries[current.end - start :] if end > current.end
                                         else [])
            self._replace(ref, lo, merged)
        else:
            self._replace(ref, start, list(entries))
        for message in self._pop_early(ref.channel):
            self._on_message(ref.channel, message)

    def prepend(self, ref: JournalRef, start: int, entries: list[bytes]) -> None:
        """Older entries [start, window start) read from Redis: history never changes."""
        w = self._windows.get(ref.channel)
        if w is not None and start + len(entries) == w.start and entries:
            self._replace(ref, start, entries + w.entries)

    def extend(self, ref: JournalRef, first: int, entries: list[bytes],
               strict: bool = True) -> None:
        """Entries [first, first + len) are in the journal: add what the window lacks. With
        strict (the entries come from the journal's message stream), a hole before first means
        a message was lost, and the window is dropped."""
        w = self._windows.get(ref.channel)
        if w is None:
            return
        if first > w.end:
            if strict:
                self.drop(ref.channel)
        elif first + len(entries) > w.end:
            new = entries[w.end - first :]
            w.entries.extend(new)
            cost = _cost(new)
            w.nbytes += cost
            self.size += cost
            self._evict()

    def drop(self, channel: str) -> None:
        w = self._windows.pop(channel, None)
        if w is not None:
            self.size -= w.nbytes

    def clear(self) -> None:
        self._windows.clear()
        self._early.clear()
        self._used.clear()
        self.size = self.early_bytes = 0

    def _pop_early(self, channel: str) -> list[bytes]:
        early = self._early.pop(channel, [])
        self.early_bytes -= sum(map(len, early))
        return early

    def _replace(self, ref: JournalRef, start: int, entries: list[bytes]) -> None:
        """A new window object, so that one captured before an await stays intact."""
        self.drop(ref.channel)
        w = Window(ref, start, entries, _cost(entries))
        self._windows[ref.channel] = w
        self.size += w.nbytes
        self._evict()

    def _evict(self) -> None:
        while self.size > self.max_bytes and len(self._windows) > 1:
            channel, _ = next(iter(self._windows.items()))
            self.drop(channel)
            self._unsubscribe(channel)
            metrics.record_cache_evictions()
        if self.size > self.max_bytes and self._windows:
            w = next(iter(self._windows.values()))
            keep, budget = len(w.entries), self.max_bytes * 3 // 4
            total = 0
            while keep > 0 and total + len(w.entries[keep - 1]) + ENTRY_OVERHEAD <= budget:
                keep -= 1
                total += len(w.entries[keep]) + ENTRY_OVERHEAD
            self._replace(w.ref, w.start + keep, w.entries[keep:])

    # -- pub/sub -------------------------------------------------------------------------------

    def _unsubscribe(self, channel: str) -> None:
        self._confirmed.discard(channel)
        self._epochs.pop(channel, None)
        self._pop_early(channel)
        self._used.pop(channel, None)
        if self._pubsub is not None and channel not in self._requested:
            self._spawn(self._command(self._pubsub.unsubscribe, channel))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)  # a task nobody references may be collected before it runs
        task.add_done_callback(self._tasks.discard)

    async def _command(self, method: Any, channel: str) -> None:
        try:
            await method(channel)
        except Exception as e:  # the listener notices a broken connection and starts over
            log.debug("pub/sub command failed: %s", e)
            self._requested.discard(channel)

    def _on_message(self, channel: str, data: bytes) -> None:
        if data == DELETED:
            self.drop(channel)
            return
        w = self._windows.get(channel)
        if w is None:
            early = self._early.setdefault(channel, [])
            early.append(data)
            self.early_bytes += len(data)
            if self.early_bytes > self.max_bytes // EARLY_SHARE or len(early) > 10_000:
                self._unsubscribe(channel)  # a fill that never came: forget the channel
            return
        head, _, body = data.partition(b"\n")
        self.extend(w.ref, int(head), body.split(b"\n"))

    async def run(self) -> None:
        """Listen for appends forever; on any pub/sub failure forget everything and start over."""
        while True:
            pubsub = self.subscriber.pubsub()
            verifier = asyncio.create_task(self._verify_forever())
            try:
                await pubsub.subscribe(self._control_channel())
                # Only now may reads ask for subscriptions: one sent while the listener still
                # connects could open a second connection whose answers nobody reads.
                self._pubsub = pubsub
                async for message in pubsub.listen():
                    kind, channel = message["type"], message["channel"].decode()
                    if kind == "subscribe":
                        if channel in self._requested:
                            self._requested.discard(channel)
                            self._confirmed.add(channel)
                            self._epoch += 1
                            self._epochs[channel] = self._epoch
                    elif kind == "unsubscribe":
                        if channel not in self._requested:
                            self._confirmed.discard(channel)
                    elif kind == "message" and channel in self._confirmed:
                        self._on_message(channel, message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("pub/sub connection lost (%s): cache cleared", type(e).__name__)
            finally:
                verifier.cancel()
                self.clear()
                self._confirmed.clear()
                self._epochs.clear()
                self._requested.clear()
                self._pubsub = None
                with suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(0.5)

    def _control_channel(self) -> str:
        return "ogs:proxy:control"  # keeps the connection subscribed when no journal is cached

    def drop_idle(self) -> None:
        """Drop the journals (windows and subscriptions) nobody used for idle_seconds."""
        quiet = time.monotonic() - self.idle_seconds
        for channel in [c for c in self._confirmed if self._used.get(c, quiet) <= quiet]:
            self.drop(channel)
            self._unsubscribe(channel)

    async def _verify_forever(self) -> None:
        while True:
            await asyncio.sleep(self.verify_seconds)
            self.drop_idle()
            windows = list(self._windows.values())
            metrics.set_cache_size(sum(len(w.entries) for w in windows), self.size, len(windows))
            metrics.CACHE_SUBSCRIPTIONS.set(self.subscriptions)
            if not windows:
                continue
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for w in windows:
                        pipe.llen(w.ref.log)
                    lengths = await pipe.execute()
            except Exception as e:
                log.debug("cache check failed: %s", e)
                continue
            for w, length in zip(windows, lengths, strict=True):
                if self._windows.get(w.ref.channel) is w and int(length) > w.end:
                    # Entries the messages should have brought: give them one more moment.
                    end = w.end
                    await asyncio.sleep(0.5)
                    if self._windows.get(w.ref.channel) is w and w.end <= end:
                        log.warning("cached journal %s fell behind Redis: dropped", w.ref.name)
                        self.drop(w.ref.channel)
