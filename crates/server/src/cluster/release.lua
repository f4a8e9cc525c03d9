-- A participant's connection on this node ended: its seat is freed unless it resumed on
-- another node meanwhile; a dropped connection records its departure so that its resume
-- token works on any node within the grace, a `leave` deletes it.
-- KEYS[1]: the room's hash. ARGV: id, node, departure key prefix (the room's), resume
-- grace (ms), '1' when the connection dropped ('0': it left on purpose).
local room, id, node, gone, grace, dropped = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local held = redis.call('HGET', room, id)
if held then
  local ok, m = pcall(cjson.decode, held)
  if ok and type(m) == 'table' and m.node ~= node then return 0 end
  redis.call('HDEL', room, id)
end
if dropped == '1' then
  redis.call('SET', gone .. id, '1', 'PX', grace)
else
  redis.call('DEL', gone .. id)
end
return 1
