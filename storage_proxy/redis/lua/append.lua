-- Append a batch of appends from many clients in one atomic call (group commit). Each append is
-- applied at most once per (client_id, sequence): a client's last applied sequence and where it
-- landed ("seq:first") live in its own key (expiring after DEDUP_SECONDS), so a retry is
-- answered with the position of the first application.
--
-- Quota: what the new entries cost (bytes + ENTRY_COST each, + CLIENT_COST for a client's first
-- record) must fit the bytes the journal's namespace granted it (usage: granted - used). If it
-- does not, nothing is written and the error NEED_QUOTA <missing> <used> <granted> asks the
-- proxy to reserve more (lua/reserve.lua); with partial=1 (the namespace has no more) the
-- appends that fit are applied in order and the others answered "quota".
--
-- Bounded work: entry sizes come from the lens list, so the gap returned (the newest entries
-- [gap_from, length) that fit max_gap_bytes) is copied exactly, never more; the new entries
-- are published in messages of about PUBLISH_PIECE bytes (one large concatenation costs Lua
-- far more than a few small ones), and a batch larger than PUBLISH_MAX (or max_gap_bytes) is
-- announced as "D" (drop your copy: the next read goes to Redis) instead.
-- Returns the length before the batch, the gap's start, the gap, and each append's status
-- ("ok" | "dup" | "stale" | "beyond" | "quota") with its position (for "stale", the sequence
-- last applied; for "quota", the bytes it needed).
-- KEYS: log, lens, usage, client key prefix. ARGV: channel, gap_from, max_gap_entries,
-- max_gap_bytes, dedup_seconds, partial, max_entry_bytes, n, then n times (client_id,
-- sequence, known_position, count), then the entries.
local log, lens, usage, client_prefix = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ENTRY_COST, CLIENT_COST, PUBLISH_PIECE, PUBLISH_MAX = 16, 64, 65536, 262144
local ttl, partial, max_entry = ARGV[5], ARGV[6] == '1', tonumber(ARGV[7])
local n = tonumber(ARGV[8])
local length = redis.call('LLEN', log)
local covered = redis.call('LLEN', lens)
local q = redis.call('HMGET', usage, 'granted', 'used')
local granted, used = tonumber(q[1] or '0'), tonumber(q[2] or '0')
local room = granted - used
local function int(x) return string.format('%d', x) end

local results, plan, pending = {}, {}, {}
local need, first, e = 0, length, 9 + 4 * n
for i = 1, n do
  local b = 8 + 4 * (i - 1)
  local client, seq = ARGV[b + 1], ARGV[b + 2]
  local known, count = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local status, at, fresh = 'ok', first, false
  if known > length then
    status = 'beyond'
  elseif client ~= '' then
    local old = pending[client]
    if old == nil then
      old = redis.call('GET', client_prefix .. client)
      fresh = not old
    end
    if old then
      local sep = string.find(old, ':', 1, true)
      local old_seq = tonumber(sep and string.sub(old, 1, sep - 1) or old)
      if old_seq >= tonumber(seq) then
        if old_seq == tonumber(seq) then
          status, at = 'dup', tonumber(sep and string.sub(old, sep + 1) or '-1')
        else
          status, at = 'stale', old_seq
        end
      end
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
      if client ~= '' then pending[client] = seq .. ':' .. int(first) end
      plan[i] = {client, e, count}
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

-- Nothing was written so far: from here on, only writes (the first one fails alone if Redis
-- is at maxmemory).
local entries, sizes, total = {}, {}, 0
for i = 1, n do
  local p = plan[i]
  if p then
    if p[1] ~= '' then
      redis.call('SET', client_prefix .. p[1], pending[p[1]], 'EX', ttl)
    end
    for k = p[2], p[2] + p[3] - 1 do
      entries[#entries + 1] = ARGV[k]
      sizes[#sizes + 1] = #ARGV[k]
      total = total + #ARGV[k]
    end
  elseif results[i][1] == 'dup' or results[i][1] == 'stale' then
    redis.call('EXPIRE', client_prefix .. ARGV[8 + 4 * (i - 1) + 1], ttl)
  end
end
if #entries > 0 then
  for k = 1, #entries, 4000 do
    local last = math.min(k + 3999, #entries)
    redis.call('RPUSH', log, unpack(entries, k, last))
    redis.call('RPUSH', lens, unpack(sizes, k, last))
  end
  redis.call('HINCRBY', usage, 'used', need)
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
local from = math.max(tonumber(ARGV[2]), length - tonumber(ARGV[3]), length - covered, 0)
local gap = {}
if from < length then
  local base = length - covered
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
