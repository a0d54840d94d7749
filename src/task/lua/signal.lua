-- signal.lua: append a control message to a task's control stream without touching its status.
--
-- KEYS[1]  task hash              {prefix}task:{id}
-- KEYS[2]  control stream         {prefix}ctl:{id}
-- ARGV[1]  control message ("pause", "resume", "refresh", "stop")
-- ARGV[2]  control stream approximate max length
--
-- Returns {"ok", entry id} | {"notfound"}
-- The stream gets the task's remaining time to live, if the task has one.

if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'notfound'}
end
local entry = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'msg', ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return {'ok', entry}
