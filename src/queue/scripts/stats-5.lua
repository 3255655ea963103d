-- Counts the tasks by state. A task waits in the delayed set for one of two reasons: a failed
-- attempt's backoff (it has failed attempts, which complete-12.lua forgets on success: retrying),
-- or a time set on purpose after a run that succeeded (add-after-2.lua, a terminal's lease
-- running out: scheduled). Only the first is a sign of trouble.
--
-- KEYS[1] pending: list of the task ids waiting to be taken
-- KEYS[2] active: sorted set of the task ids taken, by the time their lease ends
-- KEYS[3] delayed: sorted set of the task ids waiting for a time (a retry, a check), by that time
-- KEYS[4] attempts: hash of task id -> failed attempts so far
-- KEYS[5] dead: hash of task id -> its dead letter (JSON)
--
-- Returns {pending, active, retrying, scheduled, dead}.

local pending, active, delayed, attempts, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

-- The failing tasks are few next to the scheduled ones (a check per open terminal): walk those.
local retrying = 0
for _, id in ipairs(redis.call('HKEYS', attempts)) do
  if redis.call('ZSCORE', delayed, id) then retrying = retrying + 1 end
end
local waiting = redis.call('ZCARD', delayed)
return {redis.call('LLEN', pending), redis.call('ZCARD', active), retrying, waiting - retrying, redis.call('HLEN', dead)}
