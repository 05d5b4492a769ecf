-- GCRA (generic cell rate algorithm): one key per limited subject holds its
-- theoretical arrival time (TAT) in microseconds of the server's clock.
-- Grants between `min` and `max` units at once: as many as the rate has
-- now, up to `max`, or none when it has fewer than `min` (a process takes
-- a lease of several units and spends them without asking again).
-- KEYS: the subject's key. ARGV: microseconds per unit, burst, min, max.
-- Returns {granted (0: refused), units left after it, retry after (ms:
-- until `min` are there), until the whole burst is back (ms)}.
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local min = tonumber(ARGV[3])
local max = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local available = math.floor((tolerance - (tat - now)) / interval)
if available < min then
  return {0, math.max(available, 0),
          math.ceil((tat - now + min * interval - tolerance) / 1000), math.ceil((tat - now) / 1000)}
end
local granted = math.min(max, available)
local new_tat = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {granted, available - granted, 0, math.ceil((new_tat - now) / 1000)}
