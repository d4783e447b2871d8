-- One chunk of a snapshot upload, in pieces, charged to the journal's quota (its bytes +
-- PIECE_COST a piece) before it is stored: NEED_QUOTA <missing> <used> <granted> when it does
-- not fit (nothing is written), TOO_LARGE when the snapshot would pass max_bytes, GONE when
-- the upload was removed. KEYS: uploads, usage, the upload's LIST. ARGV: id, max_bytes, pieces.
local PIECE_COST = 64
local function int(x) return string.format('%d', x) end
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then
  return redis.error_reply('GONE the snapshot upload was abandoned (too slow?); save it again')
end
local charged, size, started = string.match(record, '^(%d+) (%d+) (%d+)$')
local cost = 0
for i = 3, #ARGV do
  size = size + #ARGV[i]
  cost = cost + #ARGV[i] + PIECE_COST
end
if size > tonumber(ARGV[2]) then
  return redis.error_reply('TOO_LARGE the snapshot is over the limit of ' .. ARGV[2]
    .. ' bytes (snapshot_bytes)')
end
local q = redis.call('HMGET', KEYS[2], 'granted', 'used')
local granted, used = tonumber(q[1] or '0'), tonumber(q[2] or '0')
if used + cost > granted then
  return redis.error_reply('NEED_QUOTA ' .. int(used + cost - granted) .. ' ' .. int(used)
    .. ' ' .. int(granted))
end
redis.call('RPUSH', KEYS[3], unpack(ARGV, 3))
redis.call('HINCRBY', KEYS[2], 'used', cost)
redis.call('HSET', KEYS[1], ARGV[1], int(charged + cost) .. ' ' .. int(size) .. ' ' .. started)
return size
