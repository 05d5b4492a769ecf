-- Adds to how many sockets notifications were written to, and sets when
-- their hash expires.
-- KEYS: the hash of one shard and minute (KeySpace::sockets_written).
-- ARGV: when it expires (Unix seconds), then pairs of a notification id
-- (16 bytes) and how many more sockets it was written to.
for i = 2, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIREAT', KEYS[1], ARGV[1])
return 0
