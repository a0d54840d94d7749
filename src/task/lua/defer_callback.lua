-- defer_callback.lua: a callback attempt failed and more are allowed. Record the delivery state,
-- release the lease and schedule the next attempt in the outbox, all at once, only if the caller
-- still holds the lease of the task in `callback`.
--
-- KEYS[1]  task hash              {prefix}task:{id}
-- KEYS[2]  lease index (ZSET)     {prefix}leases
-- KEYS[3]  callback outbox (ZSET) {prefix}callbacks:due
-- ARGV[1]  task id
-- ARGV[2]  lease owner
-- ARGV[3]  lease fence
-- ARGV[4]  callback delivery JSON
-- ARGV[5]  stats JSON ("" = leave)
-- ARGV[6]  when the next attempt is due (unix ms)
--
-- Returns {"ok"} | {"notfound"} | {"leaselost"} | {"conflict", actual status}

local task = KEYS[1]
local status = redis.call('HGET', task, 'status')
if not status then
  return {'notfound'}
end
if redis.call('HGET', task, 'owner') ~= ARGV[2] or redis.call('HGET', task, 'fence') ~= ARGV[3] then
  return {'leaselost'}
end
if status ~= 'callback' then
  return {'conflict', status}
end
redis.call('HSET', task, 'callback', ARGV[4])
if ARGV[5] ~= '' then redis.call('HSET', task, 'stats', ARGV[5]) end
redis.call('HDEL', task, 'owner', 'lease_until')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[1])
return {'ok'}
