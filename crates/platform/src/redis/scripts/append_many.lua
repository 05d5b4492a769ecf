-- Appends entries. KEYS: one stream per entry. ARGV: entry field, then one
-- payload per entry. Returns the entry ids in order.
local ids = {}
for i = 1, #KEYS do
  ids[i] = redis.call('XADD', KEYS[i], '*', ARGV[1], ARGV[i + 1])
end
return ids
