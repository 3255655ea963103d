-- Moves the tasks whose backoff or delay is over back to pending, and hands out again the tasks
-- whose lease expired (their worker died or stalled). An expired lease counts as a failed attempt,
-- so that a task that kills its worker does not loop for ever; a task out of attempts with it
-- becomes a dead letter, unless it was added again meanwhile.
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
-- ARGV[1] the most attempts a task gets
-- ARGV[2] the first backoff, in milliseconds (unused here; the arguments are fail-12.lua's)
-- ARGV[3] the longest backoff, in milliseconds (unused here)
-- ARGV[4] jitter (unused here)
-- ARGV[5] how many tasks of each kind to move at most
--
-- Returns {promoted, expired, buried}: how many delayed tasks became pending, how many expired
-- leases were reaped, and the ids of the reaped tasks that became dead letters.

local pending, dirty, active, leases, wake = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local attempts, errors, delayed, dead = KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local busy, parked, requestIds = KEYS[10], KEYS[11], KEYS[12]
local maxAttempts, batch = tonumber(ARGV[1]), tonumber(ARGV[5])

-- The Redis server's clock: workers on machines with skewed clocks agree on leases and backoffs.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

--- @include "_free.lua"

--- @include "_bury.lua"

local promoted, expired, buried = 0, 0, {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, batch)) do
  redis.call('ZREM', delayed, id)
  if redis.call('SADD', dirty, id) == 1 and not redis.call('ZSCORE', active, id) then
    redis.call('RPUSH', pending, id)
    wakeOne()
  end
  promoted = promoted + 1
end

-- An expired lease counts as a failed attempt (a task that kills its worker must not loop
-- forever), but is handed out again at once: the task itself may be fine.
local function reap(id)
  local err = 'lease expired: the worker processing it stopped renewing (killed or stalled)'
  redis.call('ZREM', active, id)
  redis.call('HDEL', leases, id)
  free(id)
  local attemptCount = redis.call('HINCRBY', attempts, id, 1)
  redis.call('HSET', errors, id, err)
  if attemptCount >= maxAttempts and redis.call('SISMEMBER', dirty, id) == 0 then
    bury(id, attemptCount, err)
    buried[#buried + 1] = id
    return
  end
  redis.call('SADD', dirty, id)
  redis.call('RPUSH', pending, id)
  wakeOne()
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', active, '-inf', now, 'LIMIT', 0, batch)) do
  reap(id)
  expired = expired + 1
end
return {promoted, expired, buried}
