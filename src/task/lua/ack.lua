-- ack.lua: acknowledge a stage queue entry and delete it from the stream, so a stream only
-- holds work not done yet. (One script rather than a MULTI block: it runs the same on one
-- server and on a cluster.)
--
-- KEYS[1]  stage stream           {prefix}stream:{stage}[:{node}]
-- ARGV[1]  consumer group         ("workers")
-- ARGV[2]  entry id
--
-- Returns {"ok", deleted count}

redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
local deleted = redis.call('XDEL', KEYS[1], ARGV[2])
return {'ok', tostring(deleted)}
