"""Journals in Redis: one LIST per journal, appended and read by Lua scripts.

Every key of one journal carries the hash tag ``{namespace/journal}``, so a journal lives on one
Redis Cluster shard and each script touches one slot. Positions are LIST indexes: the log only
ever grows (until the whole journal is deleted), so an index never changes meaning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from storage_proxy.errors import RequestError

# Append a batch of appends from many clients in one atomic call (group commit). Each append is
# applied at most once per (client_id, sequence): a client's last applied sequence and where it
# landed ("seq:first") live in its own key (expiring after DEDUP_SECONDS), read and written by
# one SET ... GET, so a retry is answered with the position of the first application. Returns
# the length before the batch, each append's status and position (for "stale", the sequence
# last applied), and the entries [gap_from, length) the proxy does not hold (the newest that fit
# the byte budget).
# KEYS: log, client key prefix. ARGV: channel, gap_from, max_gap_entries, max_gap_bytes,
# dedup_seconds, n, then n times (client_id, sequence, known_position, count), then the entries.
APPEND_LUA = """
local log, client_prefix = KEYS[1], KEYS[2]
local n, ttl = tonumber(ARGV[6]), ARGV[5]
local length = redis.call('LLEN', log)
local results, entries, first = {}, {}, length
local e = 6 + 4 * n + 1
for i = 1, n do
  local b = 6 + 4 * (i - 1)
  local client, seq = ARGV[b + 1], ARGV[b + 2]
  local known, count = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local status, at = 'ok', first
  if known > length then
    status = 'beyond'
  elseif client ~= '' then
    local key = client_prefix .. client
    local old = redis.call('SET', key, seq .. ':' .. string.format('%d', first), 'EX', ttl, 'GET')
    if old then
      local sep = string.find(old, ':', 1, true)
      local old_seq = tonumber(sep and string.sub(old, 1, sep - 1) or old)
      if old_seq >= tonumber(seq) then
        redis.call('SET', key, old, 'KEEPTTL')
        if old_seq == tonumber(seq) then
          status, at = 'dup', tonumber(sep and string.sub(old, sep + 1) or '-1')
        else
          status, at = 'stale', old_seq
        end
      end
    end
  end
  if status == 'ok' then
    for k = e, e + count - 1 do entries[#entries + 1] = ARGV[k] end
    first = first + count
  end
  results[i] = {status, at}
  e = e + count
end
if #entries > 0 then
  for k = 1, #entries, 4000 do
    redis.call('RPUSH', log, unpack(entries, k, math.min(k + 3999, #entries)))
  end
  redis.call('PUBLISH', ARGV[1],
             string.format('%d', length) .. '\\n' .. table.concat(entries, '\\n'))
end
local from = math.max(tonumber(ARGV[2]), length - tonumber(ARGV[3]), 0)
local gap = {}
if from < length then
  gap = redis.call('LRANGE', log, from, length - 1)
  local size, keep = 0, #gap + 1
  while keep > 1 and size + #gap[keep - 1] <= tonumber(ARGV[4]) do
    keep = keep - 1
    size = size + #gap[keep]
  end
  if keep > 1 then
    from = from + keep - 1
    gap = {unpack(gap, keep)}
  end
end
return {length, from, gap, results}
"""
DEDUP_SECONDS = 3600  # how long a retried append is recognised as one

# Entries [from, stop) but no more than max_bytes of them (always at least one), and the
# journal's length. A stop below 0 means the end. KEYS: log. ARGV: from, stop, max_bytes.
READ_LUA = """
local length = redis.call('LLEN', KEYS[1])
local from, stop, budget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if stop < 0 or stop > length then stop = length end
local out, size = {}, 0
while from < stop do
  local batch = redis.call('LRANGE', KEYS[1], from, math.min(from + 64, stop) - 1)
  if #batch == 0 then break end
  for i = 1, #batch do
    if #out > 0 and size + #batch[i] > budget then return {length, out} end
    out[#out + 1] = batch[i]
    size = size + #batch[i]
  end
  from = from + #batch
end
return {length, out}
"""

# Replace the snapshot only with a newer one that does not run past the end of the log.
# KEYS: snapshot, log. ARGV: position, data.
SAVE_SNAPSHOT_LUA = """
local position = tonumber(ARGV[1])
if position > redis.call('LLEN', KEYS[2]) then
  return redis.error_reply('BEYOND_END snapshot position ' .. position .. ' is beyond the end '
    .. 'of the journal')
end
local held = tonumber(redis.call('HGET', KEYS[1], 'position') or '-1')
if position <= held then return {0, held} end
redis.call('HSET', KEYS[1], 'position', position, 'data', ARGV[2])
return {1, position}
"""

# Stamp trials with the Redis clock, shared by every proxy replica. KEYS: heartbeats.
HEARTBEAT_LUA = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
for i = 1, #ARGV do redis.call('HSET', KEYS[1], ARGV[i], now) end
return now
"""

# Heartbeat timestamps of some trials, with the Redis clock. KEYS: heartbeats.
# (One HGET per trial: unpack() of thousands of ids would overflow Lua's C stack.)
GET_HEARTBEATS_LUA = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local stamps = {}
for i = 1, #ARGV do stamps[i] = redis.call('HGET', KEYS[1], ARGV[i]) end
return {now, stamps}
"""

_SCRIPT_ERRORS = {"BEYOND_END": grpc.StatusCode.FAILED_PRECONDITION}
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


def _script_error(e: Exception) -> RequestError | None:
    text = str(e)
    for tag, code in _SCRIPT_ERRORS.items():
        if tag in text:
            return RequestError(code, text[text.index(tag) + len(tag) :].strip())
    return None


class JournalStore:
    """The journal operations on Redis, each one round trip where it matters."""

    def __init__(self, redis: Any, prefix: str = "ogs") -> None:
        self.redis = redis
        self.prefix = prefix
        self._append = redis.register_script(APPEND_LUA)
        self._read = redis.register_script(READ_LUA)
        self._save_snapshot = redis.register_script(SAVE_SNAPSHOT_LUA)
        self._heartbeat = redis.register_script(HEARTBEAT_LUA)
        self._get_heartbeats = redis.register_script(GET_HEARTBEATS_LUA)
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

    async def length(self, ref: JournalRef) -> int:
        return int(await self.redis.llen(ref.log))

    async def save_snapshot(self, ref: JournalRef, position: int, data: bytes) -> tuple[bool, int]:
        await self._register(ref)
        try:
            stored, held = await self._save_snapshot(
                keys=[ref.snapshot, ref.log], args=[position, data]
            )
        except Exception as e:
            raise _script_error(e) or e from None
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
