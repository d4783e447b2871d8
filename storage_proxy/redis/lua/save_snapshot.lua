-- Commit an upload as the journal's snapshot, only if it is newer than the one held and does
-- not run past the end of the log; otherwise remove it. The old snapshot's data is freed and
-- its bytes returned to the journal's quota.
-- KEYS: snapshot, log, uploads, usage, snapshot data prefix. ARGV: id, position.
local snapshot, uploads, usage, prefix = KEYS[1], KEYS[3], KEYS[4], KEYS[5]
local id, position = ARGV[1], tonumber(ARGV[2])
local record = redis.call('HGET', uploads, id)
if not record then
  return redis.error_reply('GONE the snapshot upload was abandoned (too slow?); save it again')
end
local charged, size = string.match(record, '^(%d+) (%d+) ')
local function drop_upload()
  redis.call('UNLINK', prefix .. id)
  redis.call('HDEL', uploads, id)
  redis.call('HINCRBY', usage, 'used', string.format('%d', -tonumber(charged)))
end
if position > redis.call('LLEN', KEYS[2]) then
  drop_upload()
  return redis.error_reply('BEYOND_END snapshot position ' .. position .. ' is beyond the end '
    .. 'of the journal')
end
local held = tonumber(redis.call('HGET', snapshot, 'position') or '-1')
if position <= held then
  drop_upload()
  return {0, held}
end
local old = redis.call('HMGET', snapshot, 'id', 'charged')
local refund = tonumber(old[2] or '0') + redis.call('HSTRLEN', snapshot, 'data')
if old[1] then redis.call('UNLINK', prefix .. old[1]) end
redis.call('HDEL', snapshot, 'data')  -- a snapshot stored whole by an older proxy
redis.call('HSET', snapshot, 'position', position, 'size', size, 'id', id, 'charged', charged,
           'chunks', redis.call('LLEN', prefix .. id))  -- pieces
redis.call('HDEL', uploads, id)
redis.call('HINCRBY', usage, 'used', string.format('%d', -refund))
return {1, position}
