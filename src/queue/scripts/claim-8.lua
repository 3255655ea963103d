-- Adds a task and, when it is neither pending nor running and its (app, owner) is free, takes it
-- at once under a lease for the caller: what a worker does with a task of its own making (a
-- watch event's reconcile) while it has room to run it. The task never waits in the pending list,
-- so no wake-up token, no take; everything else is as a take leaves it (dirty cleared, active
-- with its lease, the tag busy), so an expired lease hands it out again (promote-12.lua). Any
-- other case is add-6.lua's, to the letter.
--
-- KEYS[1] pending: list of the task ids waiting to be taken
-- KEYS[2] dirty: set of the task ids added and not taken since
-- KEYS[3] active: sorted set of the task ids taken, by the time their lease ends
-- KEYS[4] leases: hash of task id -> the token of its current lease
-- KEYS[5] wake: list of wake-up tokens idle workers block on
-- KEYS[6] busy: hash of (app, owner) tag -> the task id running for it
-- KEYS[7] delayed: sorted set of the task ids waiting for a time (a retry, a check), by that time
-- KEYS[8] request ids: hash of task id -> the latest request that asked for it
-- ARGV[1] the task id
-- ARGV[2] the lease, in milliseconds
-- ARGV[3] the lease token (unique)
--
-- Returns {1, request id ('' for none), 1 when it may have failed attempts (it was waiting out a
-- retry's backoff) else 0} when the caller holds the task now, else {0, what add-6.lua returns}:
-- 1 pending now, 0 pending already, 2 being processed (it runs again after).

local pending, dirty, active, leases, wake, busy, delayed, requestIds = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local id, leaseMs, token = ARGV[1], tonumber(ARGV[2]), ARGV[3]

if redis.call('SISMEMBER', dirty, id) == 1 then return {0, 0} end
-- The (app, owner) part of the id ("reconcile:syncthing:alice" -> "syncthing:alice").
local at = string.find(id, ':', 1, true)
local tag = at and string.sub(id, at + 1) or id
if redis.call('HSETNX', busy, tag, id) == 0 then
  -- This task or another of its tag runs: add-6.lua (no request id: a worker's own task).
  redis.call('SADD', dirty, id)
  if redis.call('ZSCORE', active, id) then return {0, 2} end
  redis.call('ZREM', delayed, id)
  if redis.call('RPUSH', pending, id) <= 256 then redis.call('RPUSH', wake, '1') end
  return {0, 1}
end
-- The Redis server's clock: workers on machines with skewed clocks agree on leases.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZADD', active, now + leaseMs, id)
redis.call('HSET', leases, id, token)
-- Waiting out a retry's backoff (or a check's time), it runs now, with the request that asked for
-- it (if any). Out of the delayed set, it has no failed attempts: fail-12.lua and promote-12.lua
-- leave a task with some either there, or dirty.
if redis.call('ZREM', delayed, id) == 1 then return {1, redis.call('HGET', requestIds, id) or '', 1} end
return {1, '', 0}
