-- A seat for one participant, atomically over every node (Redis runs a script alone).
-- KEYS[1]: the room's hash (participant id -> member JSON {id, name?, node, seq}).
-- ARGV: id (fresh), node, name ('' for none), capacity, node key prefix, presence ttl (ms),
-- sequence key, departure key prefix (the room's), resume grace (ms), resume id ('' for none;
-- its token was checked by the node).
-- The resume id is given instead of the fresh one when another live node holds its seat
-- (that connection is stale: the seat moves here) or its departure is recorded (its
-- connection dropped, on any node, within the grace).
-- Returns {'ok', id, previous node or '', member JSON of the others...} (live nodes only),
-- {'full'} or {'taken'}.
local room, id, node, name = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local capacity, prefix, ttl, seqkey = tonumber(ARGV[4]), ARGV[5], ARGV[6], ARGV[7]
local gone, grace, resume = ARGV[8], ARGV[9], ARGV[10]
redis.call('SET', prefix .. node, '1', 'PX', ttl)
local live, raw, count = {}, {}, 0
local fields = redis.call('HGETALL', room)
for i = 1, #fields, 2 do
  local ok, m = pcall(cjson.decode, fields[i + 1])
  if ok and type(m) == 'table' and type(m.node) == 'string' and redis.call('EXISTS', prefix .. m.node) == 1 then
    live[fields[i]], raw[fields[i]], count = m, fields[i + 1], count + 1
  else
    -- Its node stopped refreshing its presence: the seat is free, and its participant
    -- may resume elsewhere within the grace.
    redis.call('HDEL', room, fields[i])
    redis.call('SET', gone .. fields[i], '1', 'PX', grace)
  end
end
local moved, member = '', nil
local held = resume ~= '' and live[resume] or nil
if held and held.node ~= node then
  id, moved, member = resume, held.node, held
  member.node = node
else
  if resume ~= '' and not held and redis.call('EXISTS', gone .. resume) == 1 then id = resume end
  if live[id] then return {'taken'} end
  if count >= capacity then return {'full'} end
  redis.call('DEL', gone .. id)
  member = {id = id, node = node, seq = redis.call('INCR', seqkey)}
end
if name ~= '' then member.name = name else member.name = nil end
redis.call('HSET', room, id, cjson.encode(member))
local out = {'ok', id, moved}
for other, json in pairs(raw) do
  if other ~= id then out[#out + 1] = json end
end
return out
