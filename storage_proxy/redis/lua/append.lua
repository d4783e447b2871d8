-- Append a batch of appends from many clients in one atomic call (group commit). Each append is
-- applied at most once per (client_id, sequence): a client's last applied sequence and where it
-- landed ("seq:first") live in its own key (expiring after DEDUP_SECONDS), read and written by
-- one SET ... GET, so a retry is answered with the position of the first application. Returns
-- the length before the batch, each append's status and position (for "stale", the sequence
-- last applied), and the entries [gap_from, length) the proxy does not hold (the newest that fit
-- the byte budget).
-- KEYS: log, client key prefix. ARGV: channel, gap_from, max_gap_entries, max_gap_bytes,
-- dedup_seconds, n, then n times (client_id, sequence, known_position, count), then the entries.
local log, client_prefix = KEYS[1], KEYS[2]
local n, ttl = tonumber(ARGV[6]), ARGV[5]
local length = redis.call('LLEN', log)
local results, entries, first = {}, {}, length
local e = 6 + 4 * n + 1
for i = 1, n do
  local b = 6 + 4 * (i - 1)
  local client, seq = ARGV[b + 1], ARGV[b + 2]
  local known, count = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local status, at = 'ok', first
  if known > length then
    status = 'beyond'
  elseif client ~= '' then
    local key = client_prefix .. client
    local old = redis.call('SET', key, seq .. ':' .. string.format('%d', first), 'EX', ttl, 'GET')
    if old then
      local sep = string.find(old, ':', 1, true)
      local old_seq = tonumber(sep and string.sub(old, 1, sep - 1) or old)
      if old_seq >= tonumber(seq) then
        redis.call('SET', key, old, 'KEEPTTL')
        if old_seq == tonumber(seq) then
          status, at = 'dup', tonumber(sep and string.sub(old, sep + 1) or '-1')
        else
          status, at = 'stale', old_seq
        end
      end
    end
  end
  if status == 'ok' then
    for k = e, e + count - 1 do entries[#entries + 1] = ARGV[k] end
    first = first + count
  end
  results[i] = {status, at}
  e = e + count
end
if #entries > 0 then
  for k = 1, #entries, 4000 do
    redis.call('RPUSH', log, unpack(entries, k, math.min(k + 3999, #entries)))
  end
  redis.call('PUBLISH', ARGV[1],
             string.format('%d', length) .. '\n' .. table.concat(entries, '\n'))
end
local from = math.max(tonumber(ARGV[2]), length - tonumber(ARGV[3]), 0)
local gap = {}
if from < length then
  gap = redis.call('LRANGE', log, from, length - 1)
  local size, keep = 0, #gap + 1
  while keep > 1 and size + #gap[keep - 1] <= tonumber(ARGV[4]) do
    keep = keep - 1
    size = size + #gap[keep]
  end
  if keep > 1 then
    from = from + keep - 1
    gap = {unpack(gap, keep)}
  end
end
return {length, from, gap, results}
