-- One node's heartbeat for one room: refreshes the node's presence, frees the seats of
-- dead nodes (recording their participants' departures, so they may resume elsewhere)
-- and this node's stale ones, puts back this node's participants the store forgot (a
-- Redis restart), and returns every member.
-- KEYS[1]: the room's hash. ARGV: node, node key prefix, presence ttl (ms), sequence key,
-- departure key prefix (the room's), resume grace (ms), then id, name ('' for none) of
-- each participant connected to this node.
local room, node, prefix, ttl, seqkey = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local gone, grace = ARGV[5], ARGV[6]
redis.call('SET', prefix .. node, '1', 'PX', ttl)
local mine = {}
for i = 7, #ARGV, 2 do mine[ARGV[i]] = ARGV[i + 1] end
local present = {}
local fields = redis.call('HGETALL', room)
for i = 1, #fields, 2 do
  local id = fields[i]
  local ok, m = pcall(cjson.decode, fields[i + 1])
  local live = ok and type(m) == 'table' and type(m.node) == 'string' and redis.call('EXISTS', prefix .. m.node) == 1
  if not live then redis.call('SET', gone .. id, '1', 'PX', grace) end
  if live and m.node == node and mine[id] == nil then live = false end
  if live then present[id] = true else redis.call('HDEL', room, id) end
end
for id, name in pairs(mine) do
  if not present[id] then
    local member = {id = id, node = node, seq = redis.call('INCR', seqkey)}
    if name ~= '' then member.name = name end
    redis.call('HSET', room, id, cjson.encode(member))
  end
end
return redis.call('HVALS', room)
