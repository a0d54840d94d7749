-- claim.lua: take a task's lease (worker side) if its status is one of the expected ones and
-- nobody holds an unexpired lease. Every claim increments the fencing token.
--
-- KEYS[1]  task hash              {prefix}task:{id}
-- KEYS[2]  queued index (ZSET)    {prefix}queued
-- KEYS[3]  lease index (ZSET)     {prefix}leases
-- ARGV[1]  task id
-- ARGV[2]  worker id
-- ARGV[3]  now, unix milliseconds
-- ARGV[4]  new lease_until, unix milliseconds (now + lease length)
-- ARGV[5]  the status whose tasks sit in the queued index ("normal")
-- ARGV[6..] expected statuses
--
-- Returns {"acquired", fence, field1, value1, ...} (the task without secrets)
--       | {"busy"} | {"notclaimable", status} | {"notfound"}

local task = KEYS[1]
local id = ARGV[1]
local status = redis.call('HGET', task, 'status')
if not status then
  return {'notfound'}
end
local expected = false
for i = 6, #ARGV do
  if ARGV[i] == status then
    expected = true
    break
  end
end
if not expected then
  return {'notclaimable', status}
end
local owner = redis.call('HGET', task, 'owner')
local lease_until = tonumber(redis.call('HGET', task, 'lease_until') or '')
if owner and owner ~= '' and lease_until and lease_until > tonumber(ARGV[3]) then
  return {'busy'}
end

local fence = redis.call('HINCRBY', task, 'fence', 1)
redis.call('HSET', task, 'owner', ARGV[2], 'lease_until', ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[4], id)
if status == ARGV[5] then
  redis.call('ZREM', KEYS[2], id)
end

local out = {'acquired', tostring(fence)}
local all = redis.call('HGETALL', task)
for i = 1, #all, 2 do
  if all[i] ~= 'secrets' then
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  end
end
return out
