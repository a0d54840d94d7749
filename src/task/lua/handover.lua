-- handover.lua: a worker that is shutting down gives a task it holds back to a queue, for
-- another worker to continue, without changing its status: the lease is given up and a queue
-- entry added in one step, so the task is never both unowned and unqueued. A handover is not a
-- restart (`restarts` counts workers that stopped); the worker counts it in its stats.
--
-- KEYS[1]  task hash              {prefix}task:{id}
-- KEYS[2]  lease index (ZSET)     {prefix}leases
-- KEYS[3]  queued index (ZSET)    {prefix}queued
-- KEYS[4]  stage stream           {prefix}stream:record[:{node}]
-- KEYS[5]  stream index (SET)     {prefix}streams
-- ARGV[1]  task id
-- ARGV[2]  worker id
-- ARGV[3]  fence the worker got from its claim
-- ARGV[4]  stats (JSON; empty = unchanged)
-- ARGV[5]  the status whose tasks sit in the queued index ("normal")
-- ARGV[6]  unix ms until which a worker must take a started task over; the lease stays in the
--          lease index with this deadline but without an owner, so any worker may claim it, and
--          if none does in time, the diagnose loop finds it like any expired lease (a task still
--          "normal" simply waits in the queue again, without a deadline)
--
-- Returns {"ok", status} | {"leaselost"} | {"notfound"}

local task = KEYS[1]
if redis.call('EXISTS', task) == 0 then
  return {'notfound'}
end
if redis.call('HGET', task, 'owner') ~= ARGV[2] or redis.call('HGET', task, 'fence') ~= ARGV[3] then
  return {'leaselost'}
end
if ARGV[4] ~= '' then
  redis.call('HSET', task, 'stats', ARGV[4])
end
local status = redis.call('HGET', task, 'status')
if status == ARGV[5] then
  -- Not started yet: an ordinary queued task again, waiting as long as it takes.
  redis.call('HDEL', task, 'owner', 'lease_until')
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZADD', KEYS[3], tonumber(redis.call('HGET', task, 'create_time') or '0'), ARGV[1])
else
  redis.call('HDEL', task, 'owner')
  redis.call('HSET', task, 'lease_until', ARGV[6])
  redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
end
redis.call('XADD', KEYS[4], '*', 'task', ARGV[1])
redis.call('SADD', KEYS[5], KEYS[4])
return {'ok', status}
