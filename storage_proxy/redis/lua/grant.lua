-- Let a journal use the bytes its namespace granted it (lua/reserve.lua): the newest grant
-- wins, a repeated or older one changes nothing. A journal written before quotas existed is
-- charged, on its first grant, what Redis says its log and snapshot take.
-- KEYS: usage, log, snapshot. ARGV: grant id, bytes granted. Returns the bytes granted now.
local usage = KEYS[1]
local id, held = tonumber(ARGV[1]), ARGV[2]
local q = redis.call('HMGET', usage, 'gid', 'granted')
if q[1] == false then
  local used = 0
  if redis.call('EXISTS', KEYS[2]) == 1 then
    local m = redis.pcall('MEMORY', 'USAGE', KEYS[2])
    if type(m) == 'number' then used = used + m end
  end
  used = used + redis.call('HSTRLEN', KEYS[3], 'data')
  redis.call('HSET', usage, 'used', used)
end
if id > tonumber(q[1] or '0') then
  redis.call('HSET', usage, 'gid', id, 'granted', held)
  return tonumber(held)
end
return tonumber(q[2] or '0')
