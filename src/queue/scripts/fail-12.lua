-- Records a failed attempt of a task's run. Its (app, owner) is free again; the task runs again
-- at once when it was added while it ran, else after an exponential backoff with jitter, or it
-- becomes a dead letter once it is out of attempts.
--
-- KEYS[1] pending: list of the task ids waiting to be taken
-- KEYS[2] dirty: set of the task ids added and not taken since
-- KEYS[3] active: sorted set of the task ids taken, by the time their lease ends
-- KEYS[4] leases: hash of task id -> the token of its current lease (' parked' after it: take-8.lua)
-- KEYS[5] wake: list of wake-up tokens idle workers block on
-- KEYS[6] attempts: hash of task id -> failed attempts so far
-- KEYS[7] errors: hash of task id -> the error of its last failed attempt
-- KEYS[8] delayed: sorted set of the task ids waiting for a time (a retry, a check), by that time
-- KEYS[9] dead: hash of task id -> its dead letter (JSON)
-- KEYS[10] busy: hash of (app, owner) tag -> the task id running for it
-- KEYS[11] parked: hash of (app, owner) tag -> a task id waiting for that tag to be free
-- KEYS[12] request ids: hash of task id -> the latest request that asked for it
-- ARGV[1] the most attempts a task gets
-- ARGV[2] the first backoff, in milliseconds
-- ARGV[3] the longest backoff, in milliseconds
-- ARGV[4] jitter, in [0, 1): the backoff is scaled by 0.5 + 0.5 * jitter
-- ARGV[5] the task id
-- ARGV[6] the lease token
-- ARGV[7] the error
--
-- Returns 0 when the lease was not ours any more (lease lost), 1 when the task is pending again
-- (requeued), 2 when it became a dead letter (dead), 3 when it waits for its backoff (delayed).

local pending, dirty, active, leases, wake = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local attempts, errors, delayed, dead = KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local busy, parked, requestIds = KEYS[10], KEYS[11], KEYS[12]
local maxAttempts, backoffBaseMs, backoffMaxMs, jitter = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local id, token, err = ARGV[5], ARGV[6], ARGV[7]

-- The token, with ' parked' after it while a task of its (app, owner) waits (take-8.lua).
local held = redis.call('HGET', leases, id)
if held ~= token and held ~= token .. ' parked' then return 0 end

-- The Redis server's clock: workers on machines with skewed clocks agree on leases and backoffs.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

--- @include "_free.lua"

--- @include "_bury.lua"

redis.call('ZREM', active, id)
redis.call('HDEL', leases, id)
free(id)
local attemptCount = redis.call('HINCRBY', attempts, id, 1)
redis.call('HSET', errors, id, err)
if redis.call('SISMEMBER', dirty, id) == 1 then
  redis.call('RPUSH', pending, id)
  wakeOne()
  return 1
end
if attemptCount >= maxAttempts then
  bury(id, attemptCount, err)
  return 2
end
local delay = math.min(backoffBaseMs * 2 ^ (attemptCount - 1), backoffMaxMs)
redis.call('ZADD', delayed, now + math.floor(delay * (0.5 + 0.5 * jitter)), id)
return 3
