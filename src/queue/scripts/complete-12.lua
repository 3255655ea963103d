-- Ends a task's run successfully. Its (app, owner) is free again; the task runs once more when
-- it was added while it ran (it is dirty), else it is done with. A worker that can run it once
-- more at once (ARGV[5]) keeps it instead, under a fresh lease with a new token (ARGV[6]; a
-- retried call whose first reply was lost finds that lease its own and is told to run it):
-- no pending list, wake-up or take between the two runs
-- (unless a task of its tag is parked: that one goes first).
--
-- KEYS[1] pending: list of the task ids waiting to be taken
-- KEYS[2] dirty: set of the task ids added and not taken since
-- KEYS[3] active: sorted set of the task ids taken, by the time their lease ends
-- KEYS[4] leases: hash of task id -> the token of its current lease (' parked' after it while a
--         task of its (app, owner) is parked: take-8.lua)
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
-- ARGV[4] '1' when the task may have failed attempts to forget, '' when it was taken without
--         any (claim-8.lua says so)
-- ARGV[5] the lease, in milliseconds, for running it once more at once; '' (or none): never
-- ARGV[6] the token of that lease
--
-- Returns 1 when the run ended, 0 when the lease was not ours any more (it expired and the task
-- was handed out again), or {2, request id ('' for none)} when the caller runs it once more now.

local pending, dirty, active, leases, wake = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local attempts, errors, delayed, dead = KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local busy, parked, requestIds = KEYS[10], KEYS[11], KEYS[12]
local id, token, hadRequestId, mayHaveAttempts = ARGV[1], ARGV[2], ARGV[3] == '1', ARGV[4] ~= ''
local rerunMs, rerunToken = tonumber(ARGV[5] or ''), ARGV[6]

--- @include "_free.lua"

local held = redis.call('HGET', leases, id)
-- A retried call whose first reply was lost, after that one kept the task for its rerun.
if rerunToken and rerunToken ~= '' and (held == rerunToken or held == rerunToken .. ' parked') then
  return {2, redis.call('HGET', requestIds, id) or ''}
end
if held ~= token and held ~= token .. ' parked' then return 0 end
-- A last error is kept only beside failed attempts (fail-12.lua, promote-12.lua set both).
if mayHaveAttempts and redis.call('HDEL', attempts, id) == 1 then redis.call('HDEL', errors, id) end
local tag = tagOf(id)
-- A task parked behind this one marked its lease (take-8.lua).
local waiting = held ~= token and redis.call('HGET', parked, tag)
local dirtyNow = nil
if rerunMs and not waiting then
  -- Once more at once, by the caller: taken again as take-8.lua would, the tag still its own.
  if redis.call('SREM', dirty, id) == 1 then
    local time = redis.call('TIME')
    redis.call('ZADD', active, tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) + rerunMs, id)
    redis.call('HSET', leases, id, rerunToken)
    return {2, redis.call('HGET', requestIds, id) or ''}
  end
  dirtyNow = false
end
redis.call('ZREM', active, id)
redis.call('HDEL', leases, id)
-- free(id) of _free.lua, with the parked task read above.
redis.call('HDEL', busy, tag)
if waiting then
  redis.call('HDEL', parked, tag)
  redis.call('RPUSH', pending, waiting)
  wakeOne()
end
if dirtyNow == nil then dirtyNow = redis.call('SISMEMBER', dirty, id) == 1 end
if dirtyNow then
  redis.call('RPUSH', pending, id)
  wakeOne()
elseif hadRequestId then
  -- Added again meanwhile, the request id is that of the next run; else it is done with.
  redis.call('HDEL', requestIds, id)
end
return 1
