-- Delete tokens' records, id entries, last-use stamps and places among their namespace's
-- shared tokens together. KEYS: token record key prefix, id index, last use, prefix of the
-- namespaces' shared-token sets. ARGV: token ids. Returns how many records were deleted.
local n = 0
for i = 1, #ARGV do
  local digest = redis.call('HGET', KEYS[2], ARGV[i])
  if digest then
    local record = redis.call('GET', KEYS[1] .. digest)
    if record then
      local namespace = cjson.decode(record).namespace
      if type(namespace) == 'string' then
        redis.call('ZREM', KEYS[4] .. namespace, ARGV[i])
      end
    end
    n = n + redis.call('DEL', KEYS[1] .. digest)
    redis.call('HDEL', KEYS[2], ARGV[i])
  end
  redis.call('HDEL', KEYS[3], ARGV[i])
end
return n
