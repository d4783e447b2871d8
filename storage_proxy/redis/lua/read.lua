-- Entries [from, stop) but no more than max_bytes of them (always at least one), and the
-- journal's length. A stop below 0 means the end. KEYS: log, lens. ARGV: from, stop, max_bytes.
-- Bounded work: the sizes come from the lens list, so exactly the entries returned are copied
-- (at most MAX_ENTRIES of them). Entries written before the lens list existed are read in
-- slices of LEGACY_SLICE, which may copy that many entries past the budget.
local MAX_ENTRIES, LEGACY_SLICE = 2048, 8
local length = redis.call('LLEN', KEYS[1])
local from, stop, budget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if stop < 0 or stop > length then stop = length end
local base = length - redis.call('LLEN', KEYS[2])  -- the first position lens covers
local out, size = {}, 0
while from < math.min(stop, base) do
  local batch = redis.call('LRANGE', KEYS[1], from, math.min(from + LEGACY_SLICE, stop, base) - 1)
  if #batch == 0 then return {length, out} end
  for i = 1, #batch do
    if #out > 0 and size + #batch[i] > budget then return {length, out} end
    out[#out + 1] = batch[i]
    size = size + #batch[i]
  end
  from = from + #batch
end
if from < stop then
  local sz = redis.call('LRANGE', KEYS[2], from - base,
                        math.min(stop, from + MAX_ENTRIES - #out) - 1 - base)
  local take = 0
  for i = 1, #sz do
    local s = tonumber(sz[i])
    if #out + take > 0 and size + s > budget then break end
    take = take + 1
    size = size + s
  end
  if take > 0 then
    local got = redis.call('LRANGE', KEYS[1], from, from + take - 1)
    for i = 1, #got do out[#out + 1] = got[i] end
  end
end
return {length, out}
