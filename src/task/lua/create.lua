-- create.lua: create a task and queue it on the record stage, and reserve the places its result
-- will occupy, atomically.
--
-- KEYS[1]  task hash              {prefix}task:{id}
-- KEYS[2]  queued index (ZSET)    {prefix}queued
-- KEYS[3]  record stage stream    {prefix}stream:record
-- KEYS[4]  task counts (HASH)     {prefix}counts: status -> number of tasks
-- KEYS[5]  stream index (SET)     {prefix}streams: the stage streams ever used (for queue depths)
-- KEYS[6 .. 5+n]     result places ({prefix}result:{hash}): the first ARGV[7] are reserved for
--                    this task, the others must only be free
-- KEYS[6+n .. 5+2n]  the task hash of each place's holder as the caller read it (any key when
--                    the place was free)
-- ARGV[1]  task id
-- ARGV[2]  initial status         ("normal")
-- ARGV[3]  spec (JSON)
-- ARGV[4]  secrets (JSON)
-- ARGV[5]  create time, unix seconds (also the queued score)
-- ARGV[6]  max queued tasks
-- ARGV[7]  number of places to reserve
-- ARGV[8 .. 7+n]  holder of each place as the caller read it ("" = free)
-- ARGV[8+n], ARGV[9+n]  the statuses in which a holder no longer writes ("callback", "finished")
--
-- A place is free when nobody holds it, or when its holder no longer writes (its hash is gone,
-- or it is in one of those statuses): a reservation a task could not release is taken over.
--
-- Returns {"ok", entry id} | {"exists"} | {"full"}
--       | {"inuse", i} (place i, from 1, is held by a task in progress)
--       | {"changed"} (a place's holder is not the one the caller read: read again and retry)

if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'exists'}
end
local n = (#KEYS - 5) / 2
local done1, done2 = ARGV[8 + n], ARGV[9 + n]
for i = 1, n do
  local holder = redis.call('GET', KEYS[5 + i]) or ''
  if holder ~= ARGV[7 + i] then
    return {'changed'}
  end
  if holder ~= '' and holder ~= ARGV[1] then
    local status = redis.call('HGET', KEYS[5 + n + i], 'status')
    if status and status ~= done1 and status ~= done2 then
      return {'inuse', tostring(i)}
    end
  end
end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) then
  return {'full'}
end
local reserved = {}
for i = 1, tonumber(ARGV[7]) do
  redis.call('SET', KEYS[5 + i], ARGV[1])
  reserved[#reserved + 1] = KEYS[5 + i]
end
redis.call('HSET', KEYS[1],
  'status', ARGV[2],
  'create_time', ARGV[5],
  'spec', ARGV[3],
  'secrets', ARGV[4],
  'fence', '0',
  'restarts', '0')
if #reserved > 0 then
  redis.call('HSET', KEYS[1], 'places', table.concat(reserved, ' '))
end
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
redis.call('HINCRBY', KEYS[4], ARGV[2], 1)
local entry = redis.call('XADD', KEYS[3], '*', 'task', ARGV[1])
redis.call('SADD', KEYS[5], KEYS[3])
return {'ok', entry}
