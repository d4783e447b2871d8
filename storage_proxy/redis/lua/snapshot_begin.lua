-- Start a snapshot upload: its chunks go to their own LIST (snapshot:<id>) and only
-- lua/save_snapshot.lua makes it the journal's snapshot, so a partial upload is never seen.
-- Uploads older than stale_ms (their proxy died) are removed first and their bytes returned.
-- KEYS: uploads, usage, snapshot data prefix. ARGV: id, stale_ms, max_uploads.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local uploads = redis.call('HGETALL', KEYS[1])
for i = 1, #uploads, 2 do
  local charged, _, started = string.match(uploads[i + 1], '^(%d+) (%d+) (%d+)$')
  if now - tonumber(started) > tonumber(ARGV[2]) then
    redis.call('UNLINK', KEYS[3] .. uploads[i])
    redis.call('HDEL', KEYS[1], uploads[i])
    redis.call('HINCRBY', KEYS[2], 'used', string.format('%d', -tonumber(charged)))
  end
end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return redis.error_reply('TOO_MANY_UPLOADS ' .. ARGV[3] .. ' snapshot uploads of this '
    .. 'journal are in progress already; save the snapshot later')
end
redis.call('HSET', KEYS[1], ARGV[1], '0 0 ' .. string.format('%d', now))
return now
