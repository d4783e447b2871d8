-- Replace the snapshot only with a newer one that does not run past the end of the log.
-- KEYS: snapshot, log. ARGV: position, data.
local position = tonumber(ARGV[1])
if position > redis.call('LLEN', KEYS[2]) then
  return redis.error_reply('BEYOND_END snapshot position ' .. position .. ' is beyond the end '
    .. 'of the journal')
end
local held = tonumber(redis.call('HGET', KEYS[1], 'position') or '-1')
if position <= held then return {0, held} end
redis.call('HSET', KEYS[1], 'position', position, 'data', ARGV[2])
return {1, position}
