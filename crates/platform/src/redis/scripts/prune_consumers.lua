-- Deletes the group's consumers that hold no pending entry and were idle at
-- least ARGV[2] ms; with more ARGV, only the consumers named there. One
-- script, so an entry cannot be read by a consumer between the check and
-- the delete (XGROUP DELCONSUMER drops a consumer's pending entries).
-- KEYS: the stream. ARGV: group, min idle ms, names... Returns the names deleted.
local only = {}
for i = 3, #ARGV do only[ARGV[i]] = true end
local deleted = {}
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if info['pending'] == 0 and info['idle'] >= tonumber(ARGV[2])
     and (#ARGV < 3 or only[info['name']]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    deleted[#deleted + 1] = info['name']
  end
end
return deleted
