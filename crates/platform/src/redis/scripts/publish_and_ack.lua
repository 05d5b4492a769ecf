-- Publishes frames, then acknowledges entries. KEYS: the streams
-- acknowledged in (one shard's). ARGV: group, publish command (PUBLISH, or
-- SPUBLISH for sharded channels, which then share the streams' slot),
-- frame count F, F pairs of channel and frame, then for each stream its id
-- count and ids. A refused publish does not stop the acknowledgement;
-- returns how many were refused.
local group, publish, at, refused = ARGV[1], ARGV[2], 4 + 2 * tonumber(ARGV[3]), 0
for i = 4, at - 1, 2 do
  local reply = redis.pcall(publish, ARGV[i], ARGV[i + 1])
  if type(reply) == 'table' and reply.err then refused = refused + 1 end
end
for k = 1, #KEYS do
  local last = at + tonumber(ARGV[at])
  -- at most 1,000 ids per XACK: unpack is bounded by Lua's stack
  for first = at + 1, last, 1000 do
    redis.call('XACK', KEYS[k], group, unpack(ARGV, first, math.min(first + 999, last)))
  end
  at = last + 1
end
return refused
