-- due_callbacks.lua: move callbacks whose next attempt is due from the outbox to the callback
-- stream. Each entry is removed and queued in the same script, so two workers never queue the
-- same attempt twice and a crash between the two steps cannot lose it.
--
-- KEYS[1]  callback outbox (ZSET)  {prefix}callbacks:due
-- KEYS[2]  callback stream         {prefix}stream:callback
-- KEYS[3]  stream index (SET)      {prefix}streams
-- ARGV[1]  now (unix ms)
-- ARGV[2]  at most this many
--
-- Returns {count}

local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('XADD', KEYS[2], '*', 'task', id)
end
if #due > 0 then
  redis.call('SADD', KEYS[3], KEYS[2])
end
return {tostring(#due)}
