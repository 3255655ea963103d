-- Adds a task, as client-go's workqueue does: a task that is pending already is not added again
-- (the dirty set), and a task that is being processed is marked to run once more afterwards. On
-- behalf of a request, the request id replaces the task's (the latest of coalesced requests
-- wins), even when the task was pending already, so that the task's run is logged with it.
--
-- KEYS[1] pending: list of the task ids waiting to be taken
-- KEYS[2] dirty: set of the task ids added and not taken since
-- KEYS[3] active: sorted set of the task ids taken, by the time their lease ends
-- KEYS[4] delayed: sorted set of the task ids waiting for a time (a retry, a check), by that time
-- KEYS[5] wake: list of wake-up tokens idle workers block on
-- KEYS[6] request ids: hash of task id -> the latest request that asked for it
-- ARGV[1] the task id
-- ARGV[2] the request id, or '' when no request asked for it (a resync, a pod event)
--
-- Returns 1 when the task is now pending, 0 when it was pending already, 2 when it is being
-- processed (it runs again once that run ends).

local pending, dirty, active, delayed, wake, requestIds = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, requestId = ARGV[1], ARGV[2]

if requestId ~= '' then redis.call('HSET', requestIds, id, requestId) end
if redis.call('SADD', dirty, id) == 0 then return 0 end
if redis.call('ZSCORE', active, id) then return 2 end
redis.call('ZREM', delayed, id)
-- Wake one idle worker. A token per task while few are pending: one token may start many tasks,
-- and a take that empties the list drops the tokens left (take-8.lua).
if redis.call('RPUSH', pending, id) <= 256 then redis.call('RPUSH', wake, '1') end
return 1
