-- Where a room's media runs: the holder of its lease while that node is alive; else the
-- least loaded live node with a media leg (ties go to the asking node), which gets the
-- lease. Atomic, so two nodes placing one room at once agree.
-- KEYS[1]: the room's media lease. ARGV: asking node, node key prefix, load hash key
-- (node -> media sessions it runs, written by each media node's heartbeat), lease ttl (ms).
-- Returns the media node, or '' when no live node has a media leg.
local lease, node, prefix, loads, ttl = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local holder = redis.call('GET', lease)
if holder and redis.call('EXISTS', prefix .. holder) == 1 then return holder end
local best, best_load = '', nil
local fields = redis.call('HGETALL', loads)
for i = 1, #fields, 2 do
  local n, l = fields[i], tonumber(fields[i + 1]) or 0
  if redis.call('EXISTS', prefix .. n) == 1 then
    if best_load == nil or l < best_load or (l == best_load and n == node) then best, best_load = n, l end
  else
    redis.call('HDEL', loads, n)
  end
end
if best ~= '' then redis.call('SET', lease, best, 'PX', ttl) end
return best
