-- Heartbeat timestamps of some trials, with the Redis clock. KEYS: heartbeats.
-- (One HGET per trial: unpack() of thousands of ids would overflow Lua's C stack.)
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local stamps = {}
for i = 1, #ARGV do stamps[i] = redis.call('HGET', KEYS[1], ARGV[i]) end
return {now, stamps}
