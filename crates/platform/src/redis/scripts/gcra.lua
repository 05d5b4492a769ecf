-- GCRA (generic cell rate algorithm), prepended to the scripts that take
-- from a rate. One key per limited subject holds its theoretical arrival
-- time (TAT) in microseconds of the server's clock. `take` takes `cost`
-- units, or nothing when they are not there; it answers {allowed (1 or 0),
-- units left, retry after (ms), until the whole burst is back (ms)}.
local function take(key, interval, burst, cost)
  local now_parts = redis.call('TIME')
  local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
  local tolerance = interval * burst
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then
    tat = now
  end
  local new_tat = tat + cost * interval
  local ahead = new_tat - now
  if ahead > tolerance then
    return {0, math.floor((tolerance - (tat - now)) / interval),
            math.ceil((ahead - tolerance) / 1000), math.ceil((tat - now) / 1000)}
  end
  redis.call('SET', key, string.format('%.0f', new_tat), 'PX', math.ceil(ahead / 1000) + 1)
  return {1, math.floor((tolerance - ahead) / interval), 0, math.ceil(ahead / 1000)}
end
