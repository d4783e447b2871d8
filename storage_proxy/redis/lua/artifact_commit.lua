-- Make a finished upload the artifact: its blob is complete in the artifact store and its
-- checksum matched. Atomic: before this call nobody sees the new version, after it everybody
-- does. The lease's bytes become the artifact's (a replaced version's bytes are given back);
-- returns the replaced version (a blob the caller then removes) or false.
-- GONE when the lease ran out first (the upload stalled): nothing changes.
-- KEYS: usage, uploads, records, blobs. ARGV: version, artifact id, size, record (JSON).
local usage, uploads, records, blobs = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local version, id, size = ARGV[1], ARGV[2], tonumber(ARGV[3])
local function int(x) return string.format('%d', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = redis.call('HGET', uploads, version)
local deadline = lease and tonumber(string.match(lease, ' (%d+)$'))
if not lease or deadline < now then
  redis.call('HDEL', uploads, version)
  return redis.error_reply('GONE the upload stalled and its room in the quota was given back; '
    .. 'nothing was stored: upload it again')
end
redis.call('HDEL', uploads, version)
local old, old_version, old_size = redis.call('HGET', records, id), false, 0
if old then
  local record = cjson.decode(old)
  old_version, old_size = record['version'], tonumber(record['size'])
  redis.call('HDEL', blobs, old_version)
else
  redis.call('HINCRBY', usage, 'count', 1)
end
redis.call('HINCRBY', usage, 'bytes', int(size - old_size))
redis.call('HSET', records, id, ARGV[4])
redis.call('HSET', blobs, version, id)
return old_version
