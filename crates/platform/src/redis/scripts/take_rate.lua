-- GCRA (generic cell rate algorithm): one key per limited subject holds its
-- theoretical arrival time (TAT) in microseconds of the server's clock.
-- KEYS: the subject's key. ARGV: microseconds per unit, burst, cost.
-- Returns {allowed (1 or 0), remaining units, retry after (ms), reset (ms)}.
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local new_tat = tat + cost * interval
local ahead = new_tat - now
if ahead > tolerance then
  return {0, math.floor((tolerance - (tat - now)) / interval),
          math.ceil((ahead - tolerance) / 1000), math.ceil((tat - now) / 1000)}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil(ahead / 1000) + 1)
return {1, math.floor((tolerance - ahead) / interval), 0, math.ceil(ahead / 1000)}
