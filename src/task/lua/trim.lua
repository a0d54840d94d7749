-- trim.lua: delete finished tasks whose retention is over, and count them out, in one step (a
-- key expiry would remove a task without the counts knowing). The caller picks the candidates
-- (ZRANGEBYSCORE on the expiry index) and passes their keys; each is checked again here.
--
-- KEYS[1]  expiry index (ZSET)    {prefix}expiry: task id -> when it expires (unix s)
-- KEYS[2]  task counts (HASH)     {prefix}counts
-- KEYS[1+2i], KEYS[2+2i]          task hash and control stream of candidate i ({prefix}task:{id},
--                                 {prefix}ctl:{id})
-- ARGV[i]  id of candidate i
--
-- Returns {number of tasks deleted}

local now = tonumber(redis.call('TIME')[1])
local deleted = 0
for i = 1, #ARGV do
  local id = ARGV[i]
  local due = tonumber(redis.call('ZSCORE', KEYS[1], id) or '')
  if due and due <= now then
    local status = redis.call('HGET', KEYS[1 + 2 * i], 'status')
    if status then
      redis.call('HINCRBY', KEYS[2], status, -1)
      deleted = deleted + 1
    end
    redis.call('DEL', KEYS[1 + 2 * i], KEYS[2 + 2 * i])
    redis.call('ZREM', KEYS[1], id)
  end
end
return {tostring(deleted)}
