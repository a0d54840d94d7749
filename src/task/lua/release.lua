-- release.lua: give a lease back (worker side) if the worker still holds it.
--
-- KEYS[1]  task hash              {prefix}task:{id}
-- KEYS[2]  lease index (ZSET)     {prefix}leases
-- ARGV[1]  task id
-- ARGV[2]  worker id
-- ARGV[3]  fence the worker got from its claim
--
-- Returns {"ok"} | {"leaselost"} | {"notfound"}

local task = KEYS[1]
if redis.call('EXISTS', task) == 0 then
  return {'notfound'}
end
if redis.call('HGET', task, 'owner') ~= ARGV[2] or redis.call('HGET', task, 'fence') ~= ARGV[3] then
  return {'leaselost'}
end
redis.call('HDEL', task, 'owner', 'lease_until')
redis.call('ZREM', KEYS[2], ARGV[1])
return {'ok'}
