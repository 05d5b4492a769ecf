-- Appends the entries and records the idempotency key with the answer in
-- one atomic step, or returns what the key recorded before.
-- KEYS: record, then one stream per entry. ARGV: fingerprint, answer, ttl
-- seconds, entry field, then one payload per entry.
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
for i = 5, #ARGV do
  redis.call('XADD', KEYS[i - 3], '*', ARGV[4], ARGV[i])
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'EX', tonumber(ARGV[3]))
return false
