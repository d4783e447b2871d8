-- One chunk of the journal's snapshot, if it is still the snapshot `id` (REPLACED otherwise:
-- a newer one was committed during the download). KEYS: snapshot, snapshot data prefix.
-- ARGV: id, index.
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then
  return redis.error_reply('REPLACED the snapshot was replaced by a newer one while it was '
    .. 'read; load it again')
end
return redis.call('LINDEX', KEYS[2] .. ARGV[1], tonumber(ARGV[2]))
