-- Store a new token's record and its id entry together (one slot, {auth}: works on a Redis
-- Cluster without a cross-node transaction). An id already taken is never overwritten: the
-- answer is 0 and the caller draws another (an overwritten id entry left the older token
-- valid but invisible to `token list` and `token revoke --user`). A token shared by a user
-- (ShareToken) also counts against its namespace's live shared tokens: -1 when that many
-- are live already.
-- KEYS: token record, id index, the namespace's shared tokens (a ZSET: id -> expiry ms).
-- ARGV: record, id, digest, milliseconds the record is kept (0: for ever), now ms,
-- expiry ms (0: none), most live shared tokens (0: not a shared token).
-- Returns 1 when stored, 0 when the id is taken, -1 when too many shared tokens are live.
local max_shared = tonumber(ARGV[7])
if max_shared > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[5])
  if redis.call('ZCARD', KEYS[3]) >= max_shared then
    return -1
  end
end
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then
  return 0
end
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
if max_shared > 0 then
  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[2])
end
return 1
