-- requeue.lua: queue a task on a stage again without changing its status (re-dispatch after
-- the worker handling it stopped), counting a restart.
--
-- KEYS[1]  task hash              {prefix}task:{id}
-- KEYS[2]  stage stream           {prefix}stream:{stage}[:{node}]
-- ARGV[1]  task id
--
-- Returns {"ok", entry id} | {"notfound"}

if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'notfound'}
end
redis.call('HINCRBY', KEYS[1], 'restarts', 1)
local entry = redis.call('XADD', KEYS[2], '*', 'task', ARGV[1])
return {'ok', entry}
