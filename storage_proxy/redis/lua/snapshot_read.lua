-- `count` pieces of the journal's snapshot from `index`, if it is still the snapshot `id`
-- (REPLACED otherwise: a newer one was committed during the download).
-- KEYS: snapshot, snapshot data prefix. ARGV: id, index, count.
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then
  return redis.error_reply('REPLACED the snapshot was replaced by a newer one while it was '
    .. 'read; load it again')
end
local index = tonumber(ARGV[2])
return redis.call('LRANGE', KEYS[2] .. ARGV[1], index, index + tonumber(ARGV[3]) - 1)
