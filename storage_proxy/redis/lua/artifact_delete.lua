-- Forget an artifact: its record goes, its bytes come back to the quota. Returns its version
-- (the blob the caller then removes from the artifact store), or false if there is none.
-- KEYS: usage, records, blobs. ARGV: artifact id.
local usage, records, blobs = KEYS[1], KEYS[2], KEYS[3]
local old = redis.call('HGET', records, ARGV[1])
if not old then
  return false
end
local record = cjson.decode(old)
redis.call('HDEL', records, ARGV[1])
redis.call('HDEL', blobs, record['version'])
redis.call('HINCRBY', usage, 'bytes', string.format('%d', -tonumber(record['size'])))
redis.call('HINCRBY', usage, 'count', -1)
return record['version']
