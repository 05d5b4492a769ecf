-- Takes units from a subject's rate (gcra.lua).
-- KEYS: the subject's rate key. ARGV: microseconds per unit, burst, cost.
return take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
