-- create.lua: create a task and queue it on the record stage, atomically.
--
-- KEYS[1]  task hash              {prefix}task:{id}
-- KEYS[2]  queued index (ZSET)    {prefix}queued
-- KEYS[3]  record stage stream    {prefix}stream:record
-- ARGV[1]  task id
-- ARGV[2]  initial status         ("normal")
-- ARGV[3]  spec (JSON)
-- ARGV[4]  secrets (JSON)
-- ARGV[5]  create time, unix seconds (also the queued score)
-- ARGV[6]  max queued tasks
--
-- Returns {"ok", entry id} | {"exists"} | {"full"}

if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'exists'}
end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) then
  return {'full'}
end
redis.call('HSET', KEYS[1],
  'status', ARGV[2],
  'create_time', ARGV[5],
  'spec', ARGV[3],
  'secrets', ARGV[4],
  'fence', '0',
  'restarts', '0')
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
local entry = redis.call('XADD', KEYS[3], '*', 'task', ARGV[1])
return {'ok', entry}
