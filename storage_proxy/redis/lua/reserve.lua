-- A journal asks its namespace for more bytes (quota). The namespace's keys live on its own
-- shard ({namespace}), apart from its journals ({namespace/journal}), so no script sees both:
-- the namespace grants bytes here, and lua/grant.lua then lets the journal use them. A grant
-- is recorded as g:<journal> = "<id> <bytes granted so far>", with an id that only grows, so
-- grant.lua can apply the newest record and ignore older or repeated ones.
-- Refuses, writing nothing, with QUOTA journals <limit> <count> when this would be a new
-- journal beyond the limit, or QUOTA bytes <limit> <granted> <missing> when the bytes do not
-- fit (with partial=1, what is left of the limit is granted instead, if anything is).
-- Otherwise grants `missing` plus up to `extra` more (what is left of the limit), adds the
-- journal to the namespace's index and returns {id, bytes granted to the journal}.
-- KEYS: quota hash, journals set.
-- ARGV: journal, missing, extra, max_bytes, max_journals, partial.
local quota, index, journal = KEYS[1], KEYS[2], ARGV[1]
local missing, extra = tonumber(ARGV[2]), tonumber(ARGV[3])
local max_bytes, max_journals = tonumber(ARGV[4]), tonumber(ARGV[5])
local function int(x) return string.format('%d', x) end
if redis.call('SISMEMBER', index, journal) == 0 then
  local count = redis.call('SCARD', index)
  if count >= max_journals then
    return redis.error_reply('QUOTA journals ' .. int(max_journals) .. ' ' .. int(count))
  end
end
local total = tonumber(redis.call('HGET', quota, 'total') or '0')
if total + missing > max_bytes and ARGV[6] == '1' and total < max_bytes then
  missing, extra = max_bytes - total, 0
end
if total + missing > max_bytes then
  return redis.error_reply('QUOTA bytes ' .. int(max_bytes) .. ' ' .. int(total) .. ' '
    .. int(missing))
end
local grant = missing + math.max(0, math.min(extra, max_bytes - total - missing))
local record = redis.call('HGET', quota, 'g:' .. journal)
local held = grant + (record and tonumber(string.match(record, ' (%d+)$')) or 0)
local id = redis.call('HINCRBY', quota, 'seq', 1)
redis.call('HSET', quota, 'g:' .. journal, int(id) .. ' ' .. int(held), 'total', int(total + grant))
redis.call('SADD', index, journal)
return {id, held}
