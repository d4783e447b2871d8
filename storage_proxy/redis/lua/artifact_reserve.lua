-- An artifact upload asks for room in its namespace's artifact quota: at least `bytes` in all
-- for this upload (what it has received, or what it announced), up to `more` if the quota has
-- room (the next step of an upload of unknown size), held under a lease that ends `lease_ms`
-- after this call; returns the bytes held. Leases run out when their proxy died mid-upload: they
-- are dropped here first, so their bytes come back without anyone's help.
-- renewal=1: the upload has a lease already; GONE if it ran out (the upload stalled too long;
-- its blob may be swept already, so it must start again).
-- Refuses, changing nothing but the expired leases, with TOO_MANY_UPLOADS <limit>,
-- QUOTA artifacts <limit> <count> (a new id beyond the number allowed) or
-- QUOTA artifact_bytes <limit> <in use> <asked>.
-- KEYS: usage (bytes, count), uploads (version -> "<bytes> <deadline ms>"), records.
-- ARGV: version, bytes, lease_ms, max_bytes, max_count, max_uploads, artifact id, renewal, more.
local usage, uploads, records = KEYS[1], KEYS[2], KEYS[3]
local version, wanted, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local max_bytes, max_count, max_uploads = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local function int(x) return string.format('%d', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held, live, mine = 0, 0, false
local all = redis.call('HGETALL', uploads)
for i = 1, #all, 2 do
  local bytes, deadline = string.match(all[i + 1], '^(%d+) (%d+)$')
  if tonumber(deadline) < now then
    redis.call('HDEL', uploads, all[i])
  elseif all[i] == version then
    mine = true
  else
    held, live = held + tonumber(bytes), live + 1
  end
end
if ARGV[8] == '1' and not mine then
  return redis.error_reply('GONE the upload stalled for more than ' .. int(lease / 1000)
    .. ' s and its room in the quota was given back; nothing was stored: upload it again')
end
if not mine and live >= max_uploads then
  return redis.error_reply('TOO_MANY_UPLOADS ' .. int(max_uploads))
end
local u = redis.call('HMGET', usage, 'bytes', 'count')
local stored, count = tonumber(u[1] or '0'), tonumber(u[2] or '0')
if not mine and redis.call('HEXISTS', records, ARGV[7]) == 0 and count + live >= max_count then
  return redis.error_reply('QUOTA artifacts ' .. int(max_count) .. ' ' .. int(count + live))
end
if stored + held + wanted > max_bytes then
  return redis.error_reply('QUOTA artifact_bytes ' .. int(max_bytes) .. ' ' .. int(stored + held)
    .. ' ' .. int(wanted))
end
local granted = math.max(wanted, math.min(tonumber(ARGV[9]), max_bytes - stored - held))
redis.call('HSET', uploads, version, int(granted) .. ' ' .. int(now + lease))
return granted
