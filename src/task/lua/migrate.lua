-- migrate.lua: once per deployment, when a version that keeps counts meets tasks stored by one
-- that did not: count the stored tasks by status, list the stage streams, and move finished
-- tasks from key expiry (their TTL) to the expiry index. Walks the keyspace (SCAN), so it runs
-- only while the schema key is older than ARGV[2]; atomic, so the counts match what is stored
-- at that instant and scripts that run after it keep them right. Standalone and sentinel
-- deployments only (a cluster deployment has no earlier data: cluster mode is new with the
-- counts).
--
-- KEYS[1]  schema version (STRING) {prefix}schema
-- KEYS[2]  task counts (HASH)      {prefix}counts
-- KEYS[3]  stream index (SET)      {prefix}streams
-- KEYS[4]  expiry index (ZSET)     {prefix}expiry
-- ARGV[1]  the key prefix
-- ARGV[2]  the schema version this code keeps ("2")
--
-- Returns {"current"} (nothing to do) | {"migrated", tasks counted, expiries moved, streams}

if (tonumber(redis.call('GET', KEYS[1]) or '0') or 0) >= tonumber(ARGV[2]) then
  return {'current'}
end
local prefix = ARGV[1]
-- SCAN patterns treat these as special; the prefix is matched literally.
local pattern = string.gsub(prefix, '([%*%?%[%]\\])', '\\%1')
local now = tonumber(redis.call('TIME')[1])
local counts = {}
local tasks, moved, streams = 0, 0, 0
local cursor = '0'
repeat
  local r = redis.call('SCAN', cursor, 'MATCH', pattern .. 'task:*', 'COUNT', 1000)
  cursor = r[1]
  for _, key in ipairs(r[2]) do
    local status = redis.call('HGET', key, 'status')
    if status then
      counts[status] = (counts[status] or 0) + 1
      tasks = tasks + 1
      local ttl = redis.call('TTL', key)
      if ttl > 0 then
        local id = string.sub(key, #prefix + 6)
        redis.call('ZADD', KEYS[4], now + ttl, id)
        redis.call('PERSIST', key)
        redis.call('PERSIST', prefix .. 'ctl:' .. id)
        moved = moved + 1
      end
    end
  end
until cursor == '0'
redis.call('DEL', KEYS[2])
for status, n in pairs(counts) do
  redis.call('HSET', KEYS[2], status, n)
end
cursor = '0'
repeat
  local r = redis.call('SCAN', cursor, 'MATCH', pattern .. 'stream:*', 'COUNT', 1000, 'TYPE', 'stream')
  cursor = r[1]
  for _, key in ipairs(r[2]) do
    redis.call('SADD', KEYS[3], key)
    streams = streams + 1
  end
until cursor == '0'
redis.call('SET', KEYS[1], ARGV[2])
return {'migrated', tostring(tasks), tostring(moved), tostring(streams)}
