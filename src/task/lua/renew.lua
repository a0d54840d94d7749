-- renew.lua: extend a lease (worker heartbeat) if the worker still holds it.
--
-- KEYS[1]  task hash              {prefix}task:{id}
-- KEYS[2]  lease index (ZSET)     {prefix}leases
-- ARGV[1]  task id
-- ARGV[2]  worker id
-- ARGV[3]  fence the worker got from its claim
-- ARGV[4]  new lease_until, unix milliseconds
--
-- Returns {"ok", current status} | {"leaselost"} | {"notfound"}

local task = KEYS[1]
local status = redis.call('HGET', task, 'status')
if not status then
  return {'notfound'}
end
if redis.call('HGET', task, 'owner') ~= ARGV[2] or redis.call('HGET', task, 'fence') ~= ARGV[3] then
  return {'leaselost'}
end
redis.call('HSET', task, 'lease_until', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return {'ok', status}
