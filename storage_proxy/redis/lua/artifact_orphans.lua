-- Which of these blobs of a namespace are garbage: no artifact uses them and no upload with a
-- live lease writes them. One atomic look, so a blob being committed right now is never
-- among them (a commit needs the live lease; a blob without one can never be committed).
-- KEYS: uploads, blobs. ARGV: versions (blob names).
local uploads, blobs = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for _, version in ipairs(ARGV) do
  if redis.call('HEXISTS', blobs, version) == 0 then
    local lease = redis.call('HGET', uploads, version)
    if not lease or tonumber(string.match(lease, ' (%d+)$')) < now then
      table.insert(out, version)
    end
  end
end
return out
