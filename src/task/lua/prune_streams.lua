-- prune_streams.lua: forget the queues of nodes that are gone. The caller picks the candidates
-- (node queues of nodes without a live worker); each is dropped here only if it is empty, in the
-- same step, so no entry is lost. A node that comes back queues again: the scripts that add to
-- a stream add it to the index then.
--
-- KEYS[1]  stream index (SET)     {prefix}streams
-- KEYS[1+i]                       candidate stream i ({prefix}stream:{stage}:{node})
--
-- Returns {number of streams dropped}

local dropped = 0
for i = 2, #KEYS do
  if redis.call('XLEN', KEYS[i]) == 0 then
    redis.call('SREM', KEYS[1], KEYS[i])
    redis.call('DEL', KEYS[i])
    dropped = dropped + 1
  end
end
return {tostring(dropped)}
