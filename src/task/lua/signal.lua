-- signal.lua: append a control message to a task's control stream without touching its status.
--
-- KEYS[1]  task hash              {prefix}task:{id}
-- KEYS[2]  control stream         {prefix}ctl:{id}
-- ARGV[1]  control message ("pause", "resume", "refresh", "stop")
-- ARGV[2]  control stream approximate max length
--
-- Returns {"ok", entry id} | {"notfound"}
-- (A finished task's control stream is deleted with it, by trim.lua.)

if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'notfound'}
end
local entry = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'msg', ARGV[1])
return {'ok', entry}
