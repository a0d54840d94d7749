-- requeue.lua: queue a task on a stage again without changing its status (re-dispatch after
-- the worker handling it stopped), counting a restart.
--
-- KEYS[1]  task hash              {prefix}task:{id}
-- KEYS[2]  stage stream           {prefix}stream:{stage}[:{node}]
-- KEYS[3]  lease index (ZSET)     {prefix}leases
-- KEYS[4]  stream index (SET)     {prefix}streams
-- ARGV[1]  task id
-- ARGV[2]  unix ms until which a worker must take the task up, or "" for no deadline. With a
--          deadline the task keeps a lease without owner: any worker may claim it, and if none
--          does in time, the diagnose loop finds it again like any expired lease.
--
-- Returns {"ok", entry id} | {"notfound"}

if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'notfound'}
end
if ARGV[2] ~= nil and ARGV[2] ~= '' then
  redis.call('HDEL', KEYS[1], 'owner')
  redis.call('HSET', KEYS[1], 'lease_until', ARGV[2])
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
end
redis.call('HINCRBY', KEYS[1], 'restarts', 1)
local entry = redis.call('XADD', KEYS[2], '*', 'task', ARGV[1])
redis.call('SADD', KEYS[4], KEYS[2])
return {'ok', entry}
