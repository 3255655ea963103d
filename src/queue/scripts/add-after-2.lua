-- Adds a task to run after a delay (a check at a known time), unless it is pending anyway. When
-- it is waiting for a time already, the earlier time stays.
--
-- KEYS[1] delayed: sorted set of the task ids waiting for a time, by that time
-- KEYS[2] dirty: set of the task ids added and not taken since
-- ARGV[1] the task id
-- ARGV[2] the delay, in milliseconds
--
-- Returns 1 when the time was set (or an earlier one kept), 0 when the task is pending.

local delayed, dirty = KEYS[1], KEYS[2]
local id, delayMs = ARGV[1], tonumber(ARGV[2])

if redis.call('SISMEMBER', dirty, id) == 1 then return 0 end
-- The Redis server's clock: workers on machines with skewed clocks agree on times.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZADD', delayed, 'LT', now + delayMs, id)
return 1
