-- take_orphaned.lua: clear the lease of a task whose worker stopped beating (its liveness ran
-- out, see store/presence.rs) before the lease itself expires, so that exactly one caller (the
-- diagnose loop of some worker) acts on the task. Only while the worker is still silent and
-- still the task's owner: a worker that beat again, or a task another worker took meanwhile,
-- is left alone. The fence stays, so the silent worker, should it come back, finds its lease
-- lost at its next renewal and every fenced write it tries is refused.
--
-- KEYS[1]  task hash              {prefix}task:{id}
-- KEYS[2]  queued index (ZSET)    {prefix}queued
-- KEYS[3]  lease index (ZSET)     {prefix}leases
-- KEYS[4]  worker liveness (ZSET) {prefix}workers
-- ARGV[1]  task id
-- ARGV[2]  worker id (the silent one)
-- ARGV[3]  now, unix milliseconds
-- ARGV[4]  the status whose tasks sit in the queued index ("normal")
-- ARGV[5]  "1" when the worker is known to be dead (its process is gone: a worker of its
--          machine took its lock file), so its silence is not required
--
-- Returns {"taken", field1, value1, ...} (the task without secrets, as it was before its lease
--         was cleared) | {"none"}

local task = KEYS[1]
local id = ARGV[1]
if ARGV[5] ~= '1' then
  local alive_until = tonumber(redis.call('ZSCORE', KEYS[4], ARGV[2]) or '')
  if not alive_until or alive_until > tonumber(ARGV[3]) then
    return {'none'}
  end
end
local status = redis.call('HGET', task, 'status')
if not status then
  return {'none'}
end
if redis.call('HGET', task, 'owner') ~= ARGV[2] or not redis.call('HGET', task, 'lease_until') then
  return {'none'}
end

local out = {'taken'}
local all = redis.call('HGETALL', task)
for i = 1, #all, 2 do
  if all[i] ~= 'secrets' then
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  end
end

redis.call('HDEL', task, 'owner', 'lease_until')
redis.call('ZREM', KEYS[3], id)
if status == ARGV[4] then
  redis.call('ZADD', KEYS[2], redis.call('HGET', task, 'create_time') or 0, id)
end
return out
