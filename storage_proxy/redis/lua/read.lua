-- Entries [from, stop) but no more than max_bytes of them (always at least one), and the
-- journal's length. A stop below 0 means the end. KEYS: log. ARGV: from, stop, max_bytes.
local length = redis.call('LLEN', KEYS[1])
local from, stop, budget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if stop < 0 or stop > length then stop = length end
local out, size = {}, 0
while from < stop do
  local batch = redis.call('LRANGE', KEYS[1], from, math.min(from + 64, stop) - 1)
  if #batch == 0 then break end
  for i = 1, #batch do
    if #out > 0 and size + #batch[i] > budget then return {length, out} end
    out[#out + 1] = batch[i]
    size = size + #batch[i]
  end
  from = from + #batch
end
return {length, out}
