-- Remove an upload that will not be committed and return its bytes to the journal's quota.
-- KEYS: uploads, usage, snapshot data prefix. ARGV: id.
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then return 0 end
redis.call('UNLINK', KEYS[3] .. ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[2], 'used',
           string.format('%d', -tonumber(string.match(record, '^(%d+) '))))
return 1
