-- A token's record, by the SHA-256 of the token. Its last use is stamped on the way, at most
-- once a minute (ARGV[2] seconds) per token whatever the number of proxies: a proxy looks a
-- token up only when its cache of it expires, and most lookups write nothing. The stamp may
-- fail (a Redis at maxmemory refuses writes): the lookup still answers.
-- KEYS: record, last use (a hash: id -> epoch seconds). ARGV: now (epoch seconds), interval.
-- Returns the record, or nil.
local record = redis.call('GET', KEYS[1])
if record then
  local id = cjson.decode(record).id
  local last = tonumber(redis.call('HGET', KEYS[2], id) or '0')
  if tonumber(ARGV[1]) - last >= tonumber(ARGV[2]) then
    redis.pcall('HSET', KEYS[2], id, ARGV[1])
  end
end
return record
