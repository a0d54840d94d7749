-- remember.lua: a Pause or Resume given before a task's recording began. The task stays where
-- it is; whether it should start paused is kept in the hash (read by the worker that records
-- it), and the message goes to the control stream for a worker already holding the task.
--
-- KEYS[1]  task hash              {prefix}task:{id}
-- KEYS[2]  control stream         {prefix}ctl:{id}
-- ARGV[1]  the status the task must have ("normal")
-- ARGV[2]  "1" = start paused, "0" = start recording
-- ARGV[3]  control message ("pause" or "resume")
-- ARGV[4]  control stream approximate max length
--
-- Returns {"ok"} | {"notfound"} | {"conflict", actual status}
-- The stream gets the task's remaining time to live, if the task has one.

local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return {'notfound'}
end
if status ~= ARGV[1] then
  return {'conflict', status}
end
redis.call('HSET', KEYS[1], 'start_paused', ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'msg', ARGV[3])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return {'ok'}
