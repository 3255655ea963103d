-- Ends a task's run successfully. Its (app, owner) is free again; the task runs once more when
-- it was added while it ran (it is dirty), else it is done with.
--
-- KEYS[1] pending: list of the task ids waiting to be taken
-- KEYS[2] dirty: set of the task ids added and not taken since
-- KEYS[3] active: sorted set of the task ids taken, by the time their lease ends
-- KEYS[4] leases: hash of task id -> the token of its current lease
-- KEYS[5] wake: list of wake-up tokens idle workers block on
-- KEYS[6] attempts: hash of task id -> failed attempts so far
-- KEYS[7] errors: hash of task id -> the error of its last failed attempt
-- KEYS[8] delayed: sorted set of the task ids waiting for a time (a retry, a check), by that time
-- KEYS[9] dead: hash of task id -> its dead letter (JSON)
-- KEYS[10] busy: hash of (app, owner) tag -> the task id running for it
-- KEYS[11] parked: hash of (app, owner) tag -> a task id waiting for that tag to be free
-- KEYS[12] request ids: hash of task id -> the latest request that asked for it
-- ARGV[1] the task id
-- ARGV[2] the lease token
-- ARGV[3] '1' when the task was taken with a request id, else '' (then none was stored since:
--         a request adding it again would have made it dirty)
--
-- Returns 1 when the run ended, 0 when the lease was not ours any more (it expired and the task
-- was handed out again).

local pending, dirty, active, leases, wake = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local attempts, errors, delayed, dead = KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local busy, parked, requestIds = KEYS[10], KEYS[11], KEYS[12]
local id, token, hadRequestId = ARGV[1], ARGV[2], ARGV[3] == '1'

--- @include "_free.lua"

if redis.call('HGET', leases, id) ~= token then return 0 end
redis.call('ZREM', active, id)
redis.call('HDEL', leases, id)
-- A last error is kept only beside failed attempts (fail-12.lua, promote-12.lua set both).
if redis.call('HDEL', attempts, id) == 1 then redis.call('HDEL', errors, id) end
free(id)
if redis.call('SISMEMBER', dirty, id) == 1 then
  redis.call('RPUSH', pending, id)
  wakeOne()
elseif hadRequestId then
  -- Added again meanwhile, the request id is that of the next run; else it is done with.
  redis.call('HDEL', requestIds, id)
end
return 1
