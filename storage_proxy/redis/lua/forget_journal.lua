-- The namespace's half of deleting a journal (it runs first): the journal leaves the index
-- and the bytes granted to it go back to the namespace. KEYS: quota hash, journals set.
-- ARGV: journal. Returns {bytes returned, 1 if the journal was in the index}.
local field = 'g:' .. ARGV[1]
local record = redis.call('HGET', KEYS[1], field)
local held = record and tonumber(string.match(record, ' (%d+)$')) or 0
if record then
  redis.call('HDEL', KEYS[1], field)
  redis.call('HINCRBY', KEYS[1], 'total', string.format('%d', -held))
end
return {held, redis.call('SREM', KEYS[2], ARGV[1])}
