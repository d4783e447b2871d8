-- Stamp trials with the Redis clock, shared by every proxy replica. KEYS: heartbeats.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
for i = 1, #ARGV do redis.call('HSET', KEYS[1], ARGV[i], now) end
return now
