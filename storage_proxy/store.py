"""Journals in Redis: one LIST per journal, appended and read by Lua scripts.

Every key of one journal carries the hash tag ``{namespace/journal}``, so a journal lives on one
Redis Cluster shard and each script touches one slot. Positions are LIST indexes: the log only
ever grows (until the whole journal is deleted), so an index never changes meaning.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from storage_proxy.errors import RequestError

# Append a batch atomically, at most once per (client_id, sequence), and return the entries the
# caller has not seen yet. KEYS: log, clients. ARGV: client_id, sequence, known_position,
# max_unseen_entries, max_unseen_bytes, channel, entries...
APPEND_LUA = """
local log, clients = KEYS[1], KEYS[2]
local client, seq, known = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local length = redis.call('LLEN', log)
local first, duplicate = nil, 0
if client ~= '' then
  local last = redis.call('HGET', clients, client)
  if last then
    local last_seq, last_first = string.match(last, '^(%d+):(%d+)$')
    last_seq = tonumber(last_seq)
    if seq == last_seq then
      first, duplicate = tonumber(last_first), 1
    elseif seq < last_seq then
      return redis.error_reply('STALE_SEQUENCE sequence ' .. seq .. ' of this client is older '
        .. 'than its last applied append (' .. last_seq .. ')')
    end
  end
end
if known > (first or length) then
  return redis.error_reply('BEYOND_END known_position ' .. known .. ' is beyond the end of the '
    .. 'journal (length ' .. length .. ')')
end
if not first then
  first = length
  for i = 7, #ARGV, 4000 do
    redis.call('RPUSH', log, unpack(ARGV, i, math.min(i + 3999, #ARGV)))
  end
  if client ~= '' then redis.call('HSET', clients, client, seq .. ':' .. first) end
  redis.call('PUBLISH', ARGV[6], first .. '\\n' .. table.concat(ARGV, '\\n', 7))
end
local unseen, complete = {}, 0
if first - known <= tonumber(ARGV[4]) then
  if first > known then unseen = redis.call('LRANGE', log, known, first - 1) end
  complete = 1
  local size = 0
  for i = 1, #unseen do size = size + #unseen[i] end
  if size > tonumber(ARGV[5]) then unseen, complete = {}, 0 end
end
return {first, duplicate, complete, unseen}
"""

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

_SCRIPT_ERRORS = {
    "STALE_SEQUENCE": grpc.StatusCode.FAILED_PRECONDITION,
    "BEYOND_END": grpc.StatusCode.FAILED_PRECONDITION,
}


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
    def clients(self) -> str:
        return self._base + ":clients"

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
        return [self.log, self.clients, self.snapshot, self.heartbeats]


@dataclass(frozen=True)
class Appended:
    first: int
    duplicate: bool
    unseen: list[bytes] | None  # None: too many to return inline


def _script_error(e: Exception) -> RequestError | None:
    text = str(e)
    for tag, code in _SCRIPT_ERRORS.items():
        if tag in text:
            return RequestError(code, text[text.index(tag) + len(tag) :].strip())
    return None


class JournalStore:
    """The journal operations, each a single Redis round trip where it matters."""

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

    async def append(
        self,
        ref: JournalRef,
        entries: Sequence[bytes],
        client_id: str,
        sequence: int,
        known: int,
        max_unseen_entries: int,
        max_unseen_bytes: int,
    ) -> Appended:
        await self._register(ref)
        args = [client_id, sequence, known, max_unseen_entries, max_unseen_bytes, ref.channel]
        try:
            first, dup, complete, unseen = await self._append(
                keys=[ref.log, ref.clients], args=[*args, *entries]
            )
        except Exception as e:
            raise _script_error(e) or e from None
        return Appended(int(first), bool(dup), list(unseen) if complete else None)

    async def read_chunk(
        self, ref: JournalRef, start: int, stop: int, max_bytes: int
    ) -> tuple[int, list[bytes]]:
        """Entries [start, stop) up to max_bytes (stop < 0: to the end), and the log length."""
        length, entries = await self._read(keys=[ref.log], args=[start, stop, max_bytes])
        return int(length), list(entries)

    async def read(
        self, ref: JournalRef, start: int, stop: int, max_bytes: int
    ) -> AsyncIterator[tuple[int, int, list[bytes]]]:
        """Yield (position, length, entries) chunks covering [start, stop); stop < 0: the end
        as it is when the read starts. Raises OUT_OF_RANGE when start is past the end."""
        length, entries = await self.read_chunk(ref, start, stop, max_bytes)
        if start > length:
            raise RequestError(
                grpc.StatusCode.OUT_OF_RANGE,
                f"position {start} is beyond the end of journal {ref.name!r} (length {length})",
            )
        end = length if stop < 0 else min(stop, length)
        yield start, length, entries
        position = start + len(entries)
        while position < end and entries:
            _, entries = await self.read_chunk(ref, position, end, max_bytes)
            yield position, length, entries
            position += len(entries)

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
        deleted = await self.redis.delete(*ref.all_keys)
        removed = await self.redis.srem(self._index(ref.namespace), ref.name)
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
