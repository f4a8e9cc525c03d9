-- A room's media lease, read by a node each heartbeat: a node running the room's media
-- renews it (if nobody else holds it); a node whose participants use the room's media
-- elsewhere reads who holds it. A holder whose presence lapsed holds nothing.
-- KEYS[1]: the room's media lease. ARGV: node, node key prefix, lease ttl (ms), '1' to renew.
-- Returns the holder ('' for none).
local lease, node, prefix, ttl, renew = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local holder = redis.call('GET', lease)
if holder and holder ~= node and redis.call('EXISTS', prefix .. holder) == 0 then
  redis.call('DEL', lease)
  holder = false
end
if renew == '1' and (not holder or holder == node) then
  redis.call('SET', lease, node, 'PX', ttl)
  return node
end
return holder or ''
