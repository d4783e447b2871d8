-- Append a batch of appends from many clients in one atomic call (group commit). Each append is
-- applied at most once per (client_id, sequence): a client's last applied sequence, where it
-- landed and when it was last used ("seq:first:ms") is the field "c:<client>" of the journal's
-- usage hash, read with the quota in one HMGET and written with it in one HSET, so the
-- commands per batch do not grow with its clients. Once every dedup_seconds a batch also
-- drops the records nobody used for that long and gives their cost back to the quota. A
-- client with no record is looked up under its own key too (client prefix .. id, "seq:first"),
-- where earlier proxies kept it, so a retry that moves to an upgraded proxy is recognised; and
-- with legacy=1 (such a proxy still serves: presence.py) the record is written there as well,
-- so a retry that moves back to one is recognised too.
--
-- Quota: what the new entries cost (bytes + ENTRY_COST each, + CLIENT_COST + the id for a
-- client's first record) must fit the bytes the journal's namespace granted it (usage: granted
-- - used). If it does not, nothing is written and the error NEED_QUOTA <missing> <used>
-- <granted> asks the proxy to reserve more (lua/reserve.lua); with partial=1 (the namespace has
-- no more) the appends that fit are applied in order and the others answered "quota".
--
-- Bounded work: entry sizes come from the lens list, so the gap returned (the newest entries
-- [gap_from, length) that fit max_gap_bytes) is copied exactly, never more; where lens begins
-- is kept in the usage hash ("lens_from": entries before it were written before lens existed).
-- The new entries are published in messages of about PUBLISH_PIECE bytes (one large
-- concatenation costs Lua far more than a few small ones), and a batch larger than PUBLISH_MAX
-- (or max_gap_bytes) is announced as "D" (drop your copy: the next read goes to Redis) instead.
-- Returns the length before the batch, the gap's start, the gap, and each append's status
-- ("ok" | "dup" | "stale" | "beyond" | "quota") with its position (for "stale", the sequence
-- last applied; for "quota", the bytes it needed).
-- KEYS: log, lens, usage, client key prefix. ARGV: channel, gap_from, max_gap_entries,
-- max_gap_bytes, dedup_seconds, partial, max_entry_bytes, now_ms, legacy, n, then n times
-- (client_id, sequence, known_position, count), then the entries.
local log, lens, usage, client_prefix = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ENTRY_COST, CLIENT_COST, PUBLISH_PIECE, PUBLISH_MAX = 16, 64, 65536, 262144
local keep_ms, partial, max_entry = tonumber(ARGV[5]) * 1000, ARGV[6] == '1', tonumber(ARGV[7])
local now, legacy, n = tonumber(ARGV[8]), ARGV[9] == '1', tonumber(ARGV[10])
local function int(x) return string.format('%d', x) end
local function client_of(i) return ARGV[11 + 4 * (i - 1)] end

local length = redis.call('LLEN', log)
local fields, slot = {'granted', 'used', 'swept', 'lens_from'}, {}
for i = 1, n do
  local client = client_of(i)
  if client ~= '' and not slot[client] then
    fields[#fields + 1] = 'c:' .. client
    slot[client] = #fields
  end
end
local q = redis.call('HMGET', usage, unpack(fields))
local granted, used = tonumber(q[1] or '0'), tonumber(q[2] or '0')
local room = granted - used
local writes = {}  -- field, value, ... for the one HSET of the usage hash

-- A client's record: {seq, first} (first -1: not recorded), or nil (fresh: never charged).
local function record_of(client)
  local old = q[slot[client]] or redis.call('GET', client_prefix .. client)
  if not old then return nil end
  local seq, first = string.match(old, '^(%d+):?(%-?%d*)')
  return {tonumber(seq), tonumber(first) or -1}
end

local results, plan, pending, touched = {}, {}, {}, {}
local need, first, e = 0, length, 11 + 4 * n
for i = 1, n do
  local b = 11 + 4 * (i - 1)
  local client, seq = ARGV[b], tonumber(ARGV[b + 1])
  local known, count = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local status, at, fresh = 'ok', first, false
  if known > length then
    status = 'beyond'
  elseif client ~= '' then
    local old = pending[client]
    if old == nil then
      old = record_of(client)
      fresh = not old
      if old then touched[client] = old end  -- used now: keep it another dedup_seconds
    end
    if old and old[1] >= seq then
      status, at = old[1] == seq and 'dup' or 'stale', old[1] == seq and old[2] or old[1]
    end
  end
  if status == 'ok' then
    local cost = fresh and (CLIENT_COST + #client) or 0
    for k = e, e + count - 1 do
      if #ARGV[k] > max_entry then
        return redis.error_reply('TOO_LARGE an entry of ' .. #ARGV[k] .. ' bytes is over '
          .. 'the limit of ' .. max_entry .. ' bytes (entry_bytes)')
      end
      cost = cost + #ARGV[k] + ENTRY_COST
    end
    if partial and need + cost > room then
      status, at = 'quota', cost
    else
      need = need + cost
      if client ~= '' then
        pending[client] = {seq, first}
        touched[client] = pending[client]
      end
      plan[i] = {e, count}
      first = first + count
    end
  end
  results[i] = {status, at}
  e = e + count
end
if need > 0 and need > room then
  return redis.error_reply('NEED_QUOTA ' .. int(need - room) .. ' ' .. int(used) .. ' '
    .. int(granted))
end

-- Records nobody used for dedup_seconds: dropped once every dedup_seconds (after the first
-- write below, so that it alone meets maxmemory), their cost given back.
local stale, refund = {}, 0
if not q[3] or now - tonumber(q[3]) >= keep_ms then
  writes[#writes + 1], writes[#writes + 2] = 'swept', int(now)
  if q[3] then
    local all = redis.call('HGETALL', usage)
    for k = 1, #all, 2 do
      local client = string.match(all[k], '^c:(.*)$')
      if client and not touched[client] and
          now - tonumber(string.match(all[k + 1], ':(%d+)$') or '0') >= keep_ms then
        stale[#stale + 1] = all[k]
        refund = refund + CLIENT_COST + #client
      end
    end
  end
end
local base = tonumber(q[4] or '')
if base == nil or base > length then
  base = length - redis.call('LLEN', lens)
  writes[#writes + 1], writes[#writes + 2] = 'lens_from', int(base)
end
if need > 0 or refund > 0 then
  writes[#writes + 1], writes[#writes + 2] = 'used', int(used + need - refund)
end
for client, r in pairs(touched) do
  writes[#writes + 1] = 'c:' .. client
  writes[#writes + 1] = int(r[1]) .. ':' .. int(r[2]) .. ':' .. int(now)
end

-- Nothing was written so far: from here on, only writes (the first one fails alone if Redis
-- is at maxmemory). A batch that applies nothing and touches no record writes nothing.
if next(touched) == nil and need == 0 then stale = {} else
  redis.call('HSET', usage, unpack(writes))
end
for k = 1, #stale, 4000 do
  redis.call('HDEL', usage, unpack(stale, k, math.min(k + 3999, #stale)))
end
if legacy then
  for client, r in pairs(touched) do
    redis.call('SET', client_prefix .. client, int(r[1]) .. ':' .. int(r[2]), 'EX', ARGV[5])
  end
end
local entries, sizes, total = {}, {}, 0
for i = 1, n do
  local p = plan[i]
  if p then
    for k = p[1], p[1] + p[2] - 1 do
      entries[#entries + 1] = ARGV[k]
      sizes[#sizes + 1] = #ARGV[k]
      total = total + #ARGV[k]
    end
  end
end
if #entries > 0 then
  for k = 1, #entries, 4000 do
    local last = math.min(k + 3999, #entries)
    redis.call('RPUSH', log, unpack(entries, k, last))
    redis.call('RPUSH', lens, unpack(sizes, k, last))
  end
  if total <= math.min(PUBLISH_MAX, tonumber(ARGV[4])) then
    local k, at = 1, length
    while k <= #entries do  -- "<position of the first>\n<entries, one a line>"
      local last, size = k, #entries[k]
      while last < #entries and size + #entries[last + 1] <= PUBLISH_PIECE do
        last = last + 1
        size = size + #entries[last]
      end
      redis.call('PUBLISH', ARGV[1], int(at) .. '\n' .. table.concat(entries, '\n', k, last))
      at, k = at + last - k + 1, last + 1
    end
  else
    redis.call('PUBLISH', ARGV[1], 'D')
  end
end

-- The gap: sizes first (small integers), then exactly the entries that fit. Entries older
-- than the lens list (written before it existed) are left to ReadLogs.
local from = math.max(tonumber(ARGV[2]), length - tonumber(ARGV[3]), base, 0)
local gap = {}
if from < length then
  local sz = redis.call('LRANGE', lens, from - base, length - 1 - base)
  local budget, size, keep = tonumber(ARGV[4]), 0, #sz + 1
  while keep > 1 and size + tonumber(sz[keep - 1]) <= budget do
    keep = keep - 1
    size = size + tonumber(sz[keep])
  end
  from = from + keep - 1
  if from < length then gap = redis.call('LRANGE', log, from, length - 1) end
end
return {length, from, gap, results}
