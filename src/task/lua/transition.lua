-- transition.lua: move a task from one status to another (compare-and-set), with its side
-- effects, atomically. Legality was decided by the caller (can_transition); this script only
-- checks that the task is still where the caller saw it and that the caller still holds the
-- lease when it says it does.
--
-- KEYS[1]  task hash              {prefix}task:{id}
-- KEYS[2]  queued index (ZSET)    {prefix}queued
-- KEYS[3]  lease index (ZSET)     {prefix}leases
-- KEYS[4]  control stream         {prefix}ctl:{id}
-- KEYS[5]  task counts (HASH)     {prefix}counts: status -> number of tasks
-- KEYS[6]  stream index (SET)     {prefix}streams: the stage streams ever used
-- KEYS[7]  expiry index (ZSET)    {prefix}expiry: finished tasks, score = when they expire
--                                 (unix s); trim.lua deletes them then
-- KEYS[8]  stage stream to enqueue on (only present when enqueueing)
-- KEYS[#KEYS - ARGV[23] + 1 .. #KEYS]  result places the task holds, to release (see create.lua)
-- ARGV[1]  task id
-- ARGV[2]  expected current status
-- ARGV[3]  new status
-- ARGV[4]  lease owner to check ("" = no lease check)
-- ARGV[5]  lease fence to check
-- ARGV[6]  start_time  ("" = leave; set only if absent)
-- ARGV[7]  cancel_time ("" = leave; set only if absent)
-- ARGV[8]  stop_time   ("" = leave; overwrites)
-- ARGV[9]  finish_time ("" = leave; overwrites)
-- ARGV[10] result JSON ("" = leave)
-- ARGV[11] stats JSON  ("" = leave)
-- ARGV[12] node        ("" = leave)
-- ARGV[13] control message to append to the control stream ("" = none)
-- ARGV[14] "1" = release the lease (clear owner and lease_until, drop from the lease index)
-- ARGV[15] "1" = increment restarts
-- ARGV[16] "1" = the new status is final: default finish_time, release the lease, drop from
--          the queued index, delete the task's secrets (its HLS key: nothing needs it any
--          more), enter the task in the expiry index
-- ARGV[17] "1" = drop from the queued index (leaving normal)
-- ARGV[18] "1" = add to the queued index (back to normal)
-- ARGV[19] retention seconds (how long a finished task is kept)
-- ARGV[20] control stream approximate max length
-- ARGV[21] callback delivery JSON ("" = leave)
-- ARGV[22] stop time in unix milliseconds ("" = leave; overwrites, set with stop_time)
-- ARGV[23] number of result places passed at the end of KEYS: each is released (deleted) if this
--          task still holds it ("" = none)
--
-- Returns {"ok"} | {"notfound"} | {"leaselost"} | {"conflict", actual status}

local task = KEYS[1]
local id = ARGV[1]
local status = redis.call('HGET', task, 'status')
if not status then
  return {'notfound'}
end
if ARGV[4] ~= '' then
  local owner = redis.call('HGET', task, 'owner')
  local fence = redis.call('HGET', task, 'fence')
  if owner ~= ARGV[4] or fence ~= ARGV[5] then
    return {'leaselost'}
  end
end
if status ~= ARGV[2] then
  return {'conflict', status}
end

redis.call('HSET', task, 'status', ARGV[3])
-- The counts change in the same step as the status.
if ARGV[2] ~= ARGV[3] then
  redis.call('HINCRBY', KEYS[5], ARGV[2], -1)
  redis.call('HINCRBY', KEYS[5], ARGV[3], 1)
end
if ARGV[6] ~= '' then redis.call('HSETNX', task, 'start_time', ARGV[6]) end
if ARGV[7] ~= '' then redis.call('HSETNX', task, 'cancel_time', ARGV[7]) end
if ARGV[8] ~= '' then redis.call('HSET', task, 'stop_time', ARGV[8]) end
if ARGV[22] and ARGV[22] ~= '' then redis.call('HSET', task, 'stop_ms', ARGV[22]) end
if ARGV[9] ~= '' then redis.call('HSET', task, 'finish_time', ARGV[9]) end
if ARGV[10] ~= '' then redis.call('HSET', task, 'result', ARGV[10]) end
if ARGV[11] ~= '' then redis.call('HSET', task, 'stats', ARGV[11]) end
if ARGV[12] ~= '' then redis.call('HSET', task, 'node', ARGV[12]) end
if ARGV[21] and ARGV[21] ~= '' then redis.call('HSET', task, 'callback', ARGV[21]) end
if ARGV[15] == '1' then redis.call('HINCRBY', task, 'restarts', 1) end

local final = ARGV[16] == '1'
if ARGV[14] == '1' or final then
  redis.call('HDEL', task, 'owner', 'lease_until')
  redis.call('ZREM', KEYS[3], id)
end
if ARGV[17] == '1' or final then
  redis.call('ZREM', KEYS[2], id)
elseif ARGV[18] == '1' then
  redis.call('ZADD', KEYS[2], redis.call('HGET', task, 'create_time') or 0, id)
end
if ARGV[13] ~= '' then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[20], '*', 'msg', ARGV[13])
end
local places = tonumber(ARGV[23] or '') or 0
if #KEYS - places >= 8 then
  redis.call('XADD', KEYS[8], '*', 'task', id)
  redis.call('SADD', KEYS[6], KEYS[8])
end
for i = #KEYS - places + 1, #KEYS do
  if redis.call('GET', KEYS[i]) == id then
    redis.call('DEL', KEYS[i])
  end
end
if final then
  redis.call('HDEL', task, 'secrets')
  local now = tonumber(redis.call('TIME')[1])
  redis.call('HSETNX', task, 'finish_time', tostring(now))
  -- Kept for the retention period, then deleted by trim.lua, which also counts it out (a key
  -- expiry would remove it without the counts knowing).
  redis.call('ZADD', KEYS[7], now + tonumber(ARGV[19]), id)
end
return {'ok'}
