-- Stamp trials with the Redis clock, shared by every proxy replica, for an existing journal
-- only (NO_JOURNAL otherwise: nothing is created). A trial's first heartbeat costs HB_COST
-- bytes of the journal's quota (NEED_QUOTA <missing> <used> <granted> when it does not fit).
-- The key expires ttl seconds after the last heartbeat; what an expired key was charged is
-- returned to the quota at the next heartbeat.
-- KEYS: heartbeats, log, usage. ARGV: ttl, then trial ids.
local HB_COST = 48
local hb, usage = KEYS[1], KEYS[3]
local function int(x) return string.format('%d', x) end
if redis.call('EXISTS', KEYS[2]) == 0 then
  return redis.error_reply('NO_JOURNAL heartbeats are kept for trials of an existing journal; '
    .. 'this one has no entries')
end
local q = redis.call('HMGET', usage, 'granted', 'used', 'hb')
local granted, used, charged = tonumber(q[1] or '0'), tonumber(q[2] or '0'), tonumber(q[3] or '0')
if charged > 0 and redis.call('EXISTS', hb) == 0 then
  redis.call('HINCRBY', usage, 'used', int(-charged))
  redis.call('HSET', usage, 'hb', 0)
  used, charged = used - charged, 0
end
local new, seen = 0, {}
for i = 2, #ARGV do
  if not seen[ARGV[i]] and redis.call('HEXISTS', hb, ARGV[i]) == 0 then new = new + 1 end
  seen[ARGV[i]] = true
end
local cost = new * HB_COST
if cost > 0 and used + cost > granted then
  return redis.error_reply('NEED_QUOTA ' .. int(used + cost - granted) .. ' ' .. int(used)
    .. ' ' .. int(granted))
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
for i = 2, #ARGV do redis.call('HSET', hb, ARGV[i], now) end
redis.call('EXPIRE', hb, ARGV[1])
if cost > 0 then
  redis.call('HINCRBY', usage, 'used', cost)
  redis.call('HINCRBY', usage, 'hb', cost)
end
return now
