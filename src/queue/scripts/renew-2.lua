-- Extends the lease of a task that is still ours.
--
-- KEYS[1] active: sorted set of the task ids taken, by the time their lease ends
-- KEYS[2] leases: hash of task id -> the token of its current lease (' parked' after it: take-8.lua)
-- ARGV[1] the task id
-- ARGV[2] the lease token
-- ARGV[3] the lease, in milliseconds from now
--
-- Returns 1 when the lease was extended, 0 when it is not ours any more (it expired and the task
-- was handed out again).

local active, leases = KEYS[1], KEYS[2]
local id, token, leaseMs = ARGV[1], ARGV[2], tonumber(ARGV[3])

-- The token, with ' parked' after it while a task of its (app, owner) waits (take-8.lua).
local held = redis.call('HGET', leases, id)
if held ~= token and held ~= token .. ' parked' then return 0 end
-- The Redis server's clock: workers on machines with skewed clocks agree on leases.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZADD', active, 'XX', now + leaseMs, id)
return 1
