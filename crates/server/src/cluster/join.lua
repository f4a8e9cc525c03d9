-- A seat for one participant, atomically over every node (Redis runs a script alone).
-- KEYS[1]: the room's hash (participant id -> member JSON {id, name?, node, seq}).
-- ARGV: id, node, name ('' for none), capacity, node key prefix, presence ttl (ms), sequence key.
-- Returns {'ok', member JSON...} (the members before, live nodes only), {'full'} or {'taken'}.
local room, id, node, name = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local capacity, prefix, ttl, seqkey = tonumber(ARGV[4]), ARGV[5], ARGV[6], ARGV[7]
redis.call('SET', prefix .. node, '1', 'PX', ttl)
local members = {}
local fields = redis.call('HGETALL', room)
for i = 1, #fields, 2 do
  local ok, m = pcall(cjson.decode, fields[i + 1])
  if ok and type(m) == 'table' and type(m.node) == 'string' and redis.call('EXISTS', prefix .. m.node) == 1 then
    members[#members + 1] = fields[i + 1]
  else
    -- Its node stopped refreshing its presence: the seat is free.
    redis.call('HDEL', room, fields[i])
  end
end
if redis.call('HEXISTS', room, id) == 1 then return {'taken'} end
if #members >= capacity then return {'full'} end
local member = {id = id, node = node, seq = redis.call('INCR', seqkey)}
if name ~= '' then member.name = name end
redis.call('HSET', room, id, cjson.encode(member))
table.insert(members, 1, 'ok')
return members
