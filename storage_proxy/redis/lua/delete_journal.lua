-- The journal's half of deleting it: every key (UNLINK: a large value is freed in the
-- background, not while Redis waits), snapshot data and uploads included, and "D" on its
-- channel so that every proxy drops its cached copy.
-- KEYS: log, lens, snapshot, uploads, heartbeats, usage, snapshot data prefix. ARGV: channel.
-- Returns how many of log, snapshot and heartbeats existed.
local prefix = KEYS[7]
local existed = redis.call('EXISTS', KEYS[1], KEYS[3], KEYS[5])
local id = redis.call('HGET', KEYS[3], 'id')
if id then redis.call('UNLINK', prefix .. id) end
for _, upload in ipairs(redis.call('HKEYS', KEYS[4])) do
  redis.call('UNLINK', prefix .. upload)
end
redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
redis.call('PUBLISH', ARGV[1], 'D')
return existed
