-- Delete a token's record and its id entry together. KEYS: token hash key, id index.
local n = 0
for i = 1, #ARGV do
  local digest = redis.call('HGET', KEYS[2], ARGV[i])
  if digest then
    n = n + redis.call('DEL', KEYS[1] .. digest)
    redis.call('HDEL', KEYS[2], ARGV[i])
  end
end
return n
