-- Takes `cost` units of the producer's rate (gcra.lua) and, when they were
-- there, appends the entries; nothing otherwise. One script: the limit
-- costs no round trip of its own.
-- KEYS: the rate key, then one stream per entry. ARGV: microseconds per
-- unit, burst, cost, entry field, then one payload per entry.
-- Returns what `take` answered.
local taken = take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
if taken[1] == 1 then
  for i = 2, #KEYS do
    redis.call('XADD', KEYS[i], '*', ARGV[4], ARGV[i + 3])
  end
end
return taken
