-- Appends the entries and records the idempotency key with the answer in
-- one atomic step, or returns what the key recorded before (a replay takes
-- nothing from the rate). With a rate (microseconds per unit above 0), the
-- entries are appended only when `cost` units of it were there (gcra.lua).
-- KEYS: record, rate key, then one stream per entry. ARGV: fingerprint,
-- answer, ttl seconds, microseconds per unit (0: no rate), burst, cost,
-- entry field, then one payload per entry.
-- Returns the record (a string) on a replay, else what `take` answered
-- ({1, 0, 0, 0} without a rate).
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
local taken = {1, 0, 0, 0}
local interval = tonumber(ARGV[4])
if interval > 0 then
  taken = take(KEYS[2], interval, tonumber(ARGV[5]), tonumber(ARGV[6]))
  if taken[1] == 0 then return taken end
end
for i = 3, #KEYS do
  redis.call('XADD', KEYS[i], '*', ARGV[7], ARGV[i + 5])
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'EX', tonumber(ARGV[3]))
return taken
