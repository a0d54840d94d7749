-- set_callback.lua: store a task's callback delivery (event id, attempts) before an attempt is
-- sent, if the worker still holds the lease, so a worker that takes the delivery over after this
-- one died sends the same event id.
--
-- KEYS[1]  task hash              {prefix}task:{id}
-- ARGV[1]  worker id
-- ARGV[2]  fence the worker got from its claim
-- ARGV[3]  callback delivery (JSON)
--
-- Returns {"ok"} | {"leaselost"} | {"notfound"}

local task = KEYS[1]
if redis.call('EXISTS', task) == 0 then
  return {'notfound'}
end
if redis.call('HGET', task, 'owner') ~= ARGV[1] or redis.call('HGET', task, 'fence') ~= ARGV[2] then
  return {'leaselost'}
end
redis.call('HSET', task, 'callback', ARGV[3])
return {'ok'}
