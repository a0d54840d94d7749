-- take_expired.lua: clear a lease that has expired, so that exactly one caller (the diagnose
-- loop of some worker) acts on the task. A task that was still normal (its worker died while
-- loading the page) goes back into the queued index.
--
-- KEYS[1]  task hash              {prefix}task:{id}
-- KEYS[2]  queued index (ZSET)    {prefix}queued
-- KEYS[3]  lease index (ZSET)     {prefix}leases
-- ARGV[1]  task id
-- ARGV[2]  now, unix milliseconds
-- ARGV[3]  the status whose tasks sit in the queued index ("normal")
--
-- Returns {"taken", field1, value1, ...} (the task without secrets, as it was before the lease
--         was cleared: owner is the worker whose lease expired)
--       | {"none"} (lease held and unexpired, or no lease: nothing to do)

local task = KEYS[1]
local id = ARGV[1]
local status = redis.call('HGET', task, 'status')
if not status then
  redis.call('ZREM', KEYS[3], id)
  return {'none'}
end
local lease_until = tonumber(redis.call('HGET', task, 'lease_until') or '')
if not lease_until then
  redis.call('ZREM', KEYS[3], id)
  return {'none'}
end
if lease_until > tonumber(ARGV[2]) then
  return {'none'}
end

-- The task as it was when its lease expired (owner = the worker that stopped).
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
if status == ARGV[3] then
  redis.call('ZADD', KEYS[2], redis.call('HGET', task, 'create_time') or 0, id)
end
return out
