-- claim_snapshot_callbacks.lua: take the snapshot callbacks whose attempt is due from their
-- outbox. Each one taken stays in the outbox, due again `lease` ms later: a worker that dies
-- while sending it loses nothing (another worker sends it again then, with the same event id),
-- and two workers never send the same attempt at once.
--
-- KEYS[1]  snapshot callback outbox (ZSET, member = event id, score = due unix ms)
--          {prefix}snapcb:due
-- KEYS[2]  the deliveries (HASH, event id -> JSON)  {prefix}snapcb:items
-- ARGV[1]  now (unix ms)
-- ARGV[2]  at most this many
-- ARGV[3]  lease (ms)
--
-- Returns {json, json, ...}: the deliveries taken

local now = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(due) do
  local item = redis.call('HGET', KEYS[2], id)
  if item then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), id)
    out[#out + 1] = item
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
